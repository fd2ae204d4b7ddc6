"""Training outside the trainer's process: `accelerate launch` (CPU processes over gloo) through the real trl service
over gRPC, and the `forgeway train-worker` command alone with its file-based job context."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from trl_harness import assert_succeeded, final_state, request, settings, trl_service

from forgeway.services.training.jobfolder import CANCEL, EVENTS, prepare
from forgeway.services.training.worker import EXIT_CANCELLED, EXIT_FAILED
from forgeway.v1 import jobs_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]

MULTI_GPU = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base" / "training" / "accelerate" / "multi-gpu.yaml"


def kinds(events, kind: str) -> list:
    return [getattr(e, kind) for e in events if e.WhichOneof("kind") == kind]


def lines(job_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (job_dir / EVENTS).read_text().splitlines()]


async def test_two_processes_train_data_parallel_and_report_through_the_service(tmp_path):
    async with trl_service(tmp_path, launcher="accelerate", accelerate_processes=2,
                           accelerate_config=MULTI_GPU) as trainer:
        assert trainer.server.service.runner.launcher.name == "accelerate"
        events = await trainer.train(request(steps=2))
    artifact = assert_succeeded(events)
    logs = [line.text for line in kinds(events, "log")]
    assert "launching 2 process(es) with accelerate launch on CPU (gloo)" in logs
    assert any(text.startswith("training 2 steps") for text in logs)  # the engine's own lines, relayed
    progress = kinds(events, "progress")
    assert [p.step for p in progress if p.HasField("loss")] == [1, 2]
    # two ranks, batch 2 each: 6 rows are one epoch after 2 steps (one process would be at 2/3)
    assert progress[-1].epoch == pytest.approx(1.0)
    assert (Path(artifact.path) / "adapter_config.json").is_file()
    metadata = json.loads((Path(artifact.path) / "forgeway.json").read_text())
    assert metadata["job_id"] == events[0].job_id and metadata["method"] == "sft"
    job_dir = tmp_path / "jobs" / events[0].job_id
    assert lines(job_dir)[-1]["result"]["path"] == artifact.path


async def test_cancel_stops_every_launched_process_at_the_same_step_with_a_checkpoint(tmp_path):
    # the ranks see the cancel file at different moments; they agree (an all-reduce) or the job would hang
    async with trl_service(tmp_path, launcher="accelerate", accelerate_processes=2,
                           accelerate_config=MULTI_GPU) as trainer:
        call = trainer.backend.Train(request(steps=500))
        head = []
        async for response in call:
            head.append(response.event)
            if response.event.WhichOneof("kind") == "progress":
                break
        call.cancel()
        job_id = head[0].job_id
        await trainer.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id))
        events = head + await trainer.wait(job_id, after=head[-1].sequence)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert final_state(events) == jobs_pb2.JOB_STATE_CANCELLED
    checkpoint = kinds(events, "checkpoint")[-1]
    assert Path(checkpoint.path).is_dir()
    assert checkpoint.step == max(p.step for p in kinds(events, "progress")) < 500
    assert (tmp_path / "jobs" / job_id / CANCEL).exists() and not (tmp_path / "models" / job_id).exists()


def worker(job_dir: Path, service: str = "trl") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forgeway.cli", "train-worker", "--service", service,
                           "--job-dir", str(job_dir)], capture_output=True, text=True, timeout=240)


def test_the_worker_alone_stops_at_its_first_step_when_the_cancel_file_is_there(tmp_path):
    job_dir = tmp_path / "jobs" / "job-alone"
    prepare(job_dir, "trl", "job-alone", request(steps=50), settings(tmp_path).model_dump(mode="json"), None)
    (job_dir / CANCEL).touch()
    done = worker(job_dir)
    assert done.returncode == EXIT_CANCELLED, done.stderr[-2000:]
    events = lines(job_dir)
    (checkpoint,) = [e["checkpoint"] for e in events if "checkpoint" in e]
    assert events[-1] == {"cancelled": {"step": 1, "checkpoint": checkpoint["path"]}}
    assert checkpoint["step"] == 1 and Path(checkpoint["path"]).is_dir()
    assert any("loss" in e.get("progress", {}) for e in events)
    assert not list(tmp_path.glob("jobs.db*"))  # the job database is the trainer service's alone


def test_the_worker_reports_an_unknown_trainer_as_the_jobs_error(tmp_path):
    job_dir = tmp_path / "jobs" / "job-nobody"
    prepare(job_dir, "nobody", "job-nobody", request(steps=1, base_model="none"), {}, None)
    done = worker(job_dir, service="nobody")
    assert done.returncode == EXIT_FAILED
    (event,) = lines(job_dir)
    assert "unknown service 'nobody'" in event["error"]["message"]
