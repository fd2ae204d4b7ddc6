"""Launchers without training: the launch protocol through the job folder (jobfolder.py), the follower that reads it
into the job's history, which launcher a trainer's settings choose, and the `accelerate launch` command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from forgeway.core.errors import Unavailable
from forgeway.services.training import jobfolder
from forgeway.services.training.engine import JobCancelled, TrainingEngine, TrainingFeatures, TrainingSettings
from forgeway.services.training.jobfolder import CANCEL, EVENTS, EventFollower, WorkerFailed
from forgeway.services.training.jobs import JobStore
from forgeway.services.training.launchers import AccelerateLauncher, InProcessLauncher
from forgeway.services.training.runner import RunningJob, choose_launcher
from forgeway.services.training.spec import TrainSpec
from forgeway.services.training.worker import FileJobContext, rank
from forgeway.v1 import train_pb2

REQUEST = train_pb2.TrainRequest(base_model="m", method=train_pb2.TRAINING_METHOD_SFT,
                                 dataset=train_pb2.DatasetSource(path="/data/rows.jsonl"))


class Stub(TrainingEngine):
    """The smallest trainer there is: launchers need only its kind and settings."""

    kind = "stub"

    def availability(self):
        return True, "ready"

    def features(self):
        return TrainingFeatures(methods=["sft"], tasks=[])

    def validate(self, spec):
        pass

    def run(self, spec, job):
        raise NotImplementedError


def engine(tmp_path: Path, **settings) -> Stub:
    return Stub(TrainingSettings(home=tmp_path, port=0, metrics_port=-1, **settings))


@pytest.fixture
def job(tmp_path) -> RunningJob:
    store = JobStore(tmp_path / "jobs.db")
    created = store.create(REQUEST, "stub", "sft")
    yield RunningJob(created.id, store, tmp_path)
    store.close()


def history(job: RunningJob) -> list[tuple[str, object]]:
    return [(e.WhichOneof("kind"), getattr(e, e.WhichOneof("kind"))) for e in job.jobs.events(job.job_id)][1:]


def test_rank_zero_reports_other_ranks_only_their_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank() == 1
    monkeypatch.setenv("RANK", "0")
    assert rank() == 0
    other = FileJobContext("job-1", tmp_path, writer=False)
    other.progress(step=1, loss=2.0)
    other.log("hello")
    assert not (tmp_path / EVENTS).exists()
    other.write("error", message="rank 1: out of memory")
    main = FileJobContext("job-1", tmp_path)
    main.checkpoint(3, tmp_path / "checkpoint-3")
    assert [json.loads(line) for line in (tmp_path / EVENTS).read_text().splitlines()] == [
        {"error": {"message": "rank 1: out of memory"}},
        {"checkpoint": {"step": 3, "path": str(tmp_path / "checkpoint-3")}},
    ]


def test_a_worker_stops_on_the_cancel_file_or_a_signal(tmp_path):
    context = FileJobContext("job-1", tmp_path)
    assert not context.should_stop
    (tmp_path / CANCEL).touch()
    assert context.should_stop
    (tmp_path / CANCEL).unlink()
    context.stop_requested.set()
    assert context.should_stop


def test_a_fresh_launch_clears_what_an_earlier_one_left(tmp_path):
    (tmp_path / EVENTS).write_text('{"cancelled": {"step": 1}}\n')
    (tmp_path / CANCEL).touch()
    jobfolder.prepare(tmp_path, "trl", "job-1", REQUEST, {"eval_fraction": 0.1}, tmp_path / "checkpoint-4")
    assert not (tmp_path / EVENTS).exists() and not (tmp_path / CANCEL).exists()
    assert train_pb2.TrainRequest.FromString((tmp_path / "request.binpb").read_bytes()) == REQUEST
    launch = json.loads((tmp_path / "launch.json").read_text())
    assert launch == {"service": "trl", "job_id": "job-1", "settings": {"eval_fraction": 0.1},
                      "resume_from": str(tmp_path / "checkpoint-4")}
    read = jobfolder.read_launch(tmp_path)  # as the worker reads it back
    assert (read.service, read.job_id, read.resume_from, read.request) == ("trl", "job-1", tmp_path / "checkpoint-4",
                                                                          REQUEST)


def test_the_follower_relays_complete_lines_once_and_remembers_how_far_it_read(job):
    worker = FileJobContext(job.job_id, job.job_dir)
    worker.log("loading")
    worker.progress(step=1, total_steps=4, loss=2.5, metrics={"samples_per_second": 3.0})
    worker.checkpoint(1, job.job_dir / "checkpoints" / "checkpoint-1")
    with open(job.job_dir / EVENTS, "a") as events:
        events.write('{"artifact": {"model_name": "m-gguf", "pa')  # a line still being written
    offsets = job.job_dir / "events.offset"
    follower = EventFollower(job, offset_file=offsets)
    assert follower.poll() is None
    assert [kind for kind, _ in history(job)] == ["log", "progress", "checkpoint"]
    progress = history(job)[1][1]
    assert (progress.step, progress.total_steps, progress.loss, dict(progress.metrics)) == (1, 4, 2.5,
                                                                                           {"samples_per_second": 3.0})
    assert (follower.step, follower.checkpoint) == (1, job.job_dir / "checkpoints" / "checkpoint-1")
    with open(job.job_dir / EVENTS, "a") as events:
        events.write('th": "/m", "format": "gguf"}}\n')
    worker.write("result", model_name="m", path="/models/m", format="adapter", metrics={"train_loss": 1.5})
    resumed = EventFollower(job, offset_file=offsets)  # a restarted trainer re-attaching
    assert resumed.poll() == ("result", {"model_name": "m", "path": "/models/m", "format": "adapter",
                                         "metrics": {"train_loss": 1.5}})
    assert [kind for kind, _ in history(job)] == ["log", "progress", "checkpoint", "artifact"]
    trained = resumed.outcome()
    assert (trained.model_name, trained.path, trained.format, trained.metrics) == ("m", Path("/models/m"), "adapter",
                                                                                   {"train_loss": 1.5})


@pytest.mark.parametrize(("final", "cancel", "raised", "text"), [
    ({"cancelled": {"step": 7, "checkpoint": "/c/checkpoint-7"}}, True, JobCancelled, "cancelled at step 7"),
    ({"cancelled": {"step": 7, "checkpoint": None}}, False, WorkerFailed, "stopped from outside at step 7"),
    ({"error": {"message": "dataset: row 3 has no text"}}, False, WorkerFailed, "dataset: row 3 has no text"),
    (None, False, WorkerFailed, "ended without a result"),
])
def test_the_final_line_ends_the_job_as_an_in_process_run_would(job, final, cancel, raised, text):
    if final:
        (job.job_dir / EVENTS).write_text(json.dumps(final) + "\n")
    if cancel:
        job.cancel_requested.set()
    follower = EventFollower(job)
    follower.poll()
    with pytest.raises(raised, match=text) as caught:
        follower.outcome()
    if raised is JobCancelled:
        assert (caught.value.step, caught.value.checkpoint) == (7, Path("/c/checkpoint-7"))


def test_settings_choose_the_launcher(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert isinstance(choose_launcher(engine(tmp_path)), InProcessLauncher)  # auto, no GPU here
    assert choose_launcher(engine(tmp_path, launcher="accelerate")).name == "accelerate"
    api = object()  # in a pod, the in-cluster API client
    assert choose_launcher(engine(tmp_path, launcher="kubernetes-job"), api).name == "kubernetes-job"
    assert choose_launcher(engine(tmp_path, launcher="kubernetes-job", job_nodes=2), api).name == "pytorchjob"
    assert choose_launcher(engine(tmp_path, launcher="pytorchjob"), api).name == "pytorchjob"
    with pytest.raises(Unavailable, match="need to run in a pod"):  # here: the trainer would not start, saying why
        choose_launcher(engine(tmp_path, launcher="kubernetes-job"))
    with pytest.raises(ValidationError, match="launcher"):
        TrainingSettings(launcher="slurm")
    with pytest.raises(ValidationError, match="job_nodes"):
        TrainingSettings(job_nodes=0)


def spec(precision: int = train_pb2.PRECISION_UNSPECIFIED) -> TrainSpec:
    request = train_pb2.TrainRequest()
    request.CopyFrom(REQUEST)
    request.hyperparameters.precision = precision
    return TrainSpec.from_proto(request)


def test_the_accelerate_command_line(tmp_path, job):
    from accelerate.commands.launch import launch_command_parser

    config = tmp_path / "fsdp.yaml"
    config.write_text("distributed_type: FSDP\n")
    launcher = AccelerateLauncher(engine(tmp_path, accelerate_config=config, accelerate_processes=4))
    command, env = launcher.command(spec(train_pb2.PRECISION_FP32), job)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[-7:] == ["-m", "forgeway.cli", "train-worker", "--service", "stub", "--job-dir", str(job.job_dir)]
    parsed = launch_command_parser().parse_args(command[3:])  # accelerate's own parser takes every flag
    assert (parsed.num_processes, parsed.config_file, parsed.mixed_precision) == (4, str(config), "no")
    assert (parsed.training_script, parsed.module, parsed.main_process_port) == ("forgeway.cli", True, 0)
    assert env["ACCELERATE_USE_CPU"] == "true"  # no CUDA here: the processes train on CPU over gloo
    assert history(job)[-1][1].text == "launching 4 process(es) with accelerate launch on CPU (gloo)"

    missing = AccelerateLauncher(engine(tmp_path, accelerate_config=tmp_path / "absent.yaml", accelerate_processes=2))
    command, _ = missing.command(spec(), job)
    parsed = launch_command_parser().parse_args(command[3:])
    assert parsed.multi_gpu and parsed.config_file is None and parsed.mixed_precision == "no"
    assert any(kind == "log" and entry.level == "warning" and "absent.yaml not found" in entry.text
               for kind, entry in history(job))

