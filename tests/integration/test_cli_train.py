"""`forgeway train` and `forgeway jobs` as subprocesses against the real TRL trainer behind a real gateway."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from forgeway.client import Client
from forgeway.testing import one_line_error, run_cli, trainer_stack

pytestmark = [pytest.mark.trl, pytest.mark.slow]
ROWS = [{"text": f"the cat number {i} sat on the mat and looked at the dog."} for i in range(6)]
FAST = ("--batch-size", "2", "--max-seq-length", "32", "--learning-rate", "1e-3", "--lora-r", "4")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("cli-training")
    build_tiny_llama(root / "tiny", seed=0)
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    with trainer_stack(root) as running:
        yield running


def cli(stack, *args: str):
    return run_cli(*args, "--target", stack.target, timeout=300)


def test_train_uploads_shows_progress_and_exits_0(stack):
    result = cli(stack, "train", str(stack.root / "tiny"), "--upload", str(stack.root / "train.jsonl"),
                 "--max-steps", "3", "--output-name", "cli-model", *FAST)
    assert result.returncode == 0, result.stderr
    assert "uploaded" in result.stderr and "(6 rows)" in result.stderr
    assert "3/3 steps" in result.stderr and "succeeded" in result.stderr and "loss" in result.stderr
    assert "model cli-model (adapter)" in result.stderr
    assert "fallback from unsloth to trl: unsloth unavailable" in result.stderr  # auto, with no unsloth behind it
    (job,) = [j for j in Client(stack.target).jobs.list() if j.artifact and j.artifact.model_name == "cli-model"]
    assert job.state == "succeeded"


def test_json_events_then_detach_and_reattach(stack):
    events = [json.loads(line) for line in cli(stack, "train", str(stack.root / "tiny"), "--dataset",
                                               str(stack.root / "train.jsonl"), "--max-steps", "2", "--json",
                                               *FAST).stdout.splitlines()]
    assert events[0]["kind"] == "state" and events[0]["state"] == "queued"
    assert events[-1]["state"] == "succeeded" and [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    detached = cli(stack, "train", str(stack.root / "tiny"), "-d", str(stack.root / "train.jsonl"), "--max-steps", "4",
                   "--detach", *FAST)
    job_id = detached.stdout.strip()
    assert detached.returncode == 0 and job_id.startswith("job-") and f"jobs watch {job_id}" in detached.stderr
    watched = cli(stack, "jobs", "watch", job_id)
    assert watched.returncode == 0 and "4/4 steps" in watched.stderr and f"{job_id}: succeeded" in watched.stderr
    shown = json.loads(cli(stack, "jobs", "show", job_id, "--json").stdout)
    assert (shown["id"], shown["state"], shown["method"], shown["backend"]) == (job_id, "succeeded", "sft", "trl")
    after = [json.loads(line)
             for line in cli(stack, "jobs", "watch", job_id, "--after", "3", "--json").stdout.splitlines()]
    assert after[0]["sequence"] == 4 and after[-1]["state"] == "succeeded"
    past_the_end = cli(stack, "jobs", "watch", job_id, "--after", str(shown["last_sequence"]), "--json")
    assert past_the_end.returncode == 0 and past_the_end.stdout == ""  # nothing new, and the job succeeded
    listing = cli(stack, "jobs", "list", "--state", "succeeded")
    assert listing.returncode == 0 and job_id in listing.stdout


def test_cancel_and_a_failed_job_exit_1(stack):
    job_id = cli(stack, "train", str(stack.root / "tiny"), "-d", str(stack.root / "train.jsonl"), "--max-steps", "400",
                 "--detach", *FAST).stdout.strip()
    cancel = cli(stack, "jobs", "cancel", job_id)
    assert cancel.returncode == 0 and cancel.stdout.startswith(f"cancel requested: {job_id}")
    watched = cli(stack, "jobs", "watch", job_id)
    assert watched.returncode == 1 and f"{job_id}: cancelled" in watched.stderr
    failed = cli(stack, "train", str(stack.root), "-d", str(stack.root / "train.jsonl"), "--max-steps", "2", *FAST)
    assert failed.returncode == 1
    (line,) = [line for line in failed.stderr.splitlines() if ": failed (" in line]
    assert line.endswith(")")  # the trainer's error, whole, on one line


def test_bad_training_requests_are_one_line(stack):
    no_data = cli(stack, "train", str(stack.root / "tiny"))
    assert no_data.returncode == 1 and "dataset: give --dataset" in one_line_error(no_data)
    method = cli(stack, "train", str(stack.root / "tiny"), "-d", "x.jsonl", "--method", "ppo")
    assert method.returncode == 1 and "invalid argument: method: 'ppo': TRL removed PPO" in one_line_error(method)
    columns = cli(stack, "train", str(stack.root / "tiny"), "-d", str(stack.root / "train.jsonl"), "--method", "dpo")
    assert columns.returncode == 1 and "dataset.columns" in one_line_error(columns)
    outside = cli(stack, "train", "/etc", "-d", str(stack.root / "train.jsonl"))
    assert outside.returncode == 1 and "outside the allowed roots" in one_line_error(outside)
    unknown = cli(stack, "jobs", "show", "job-nope")
    assert unknown.returncode == 1 and "not found" in one_line_error(unknown)
    bad_flag = cli(stack, "train", "m", "--export", "onnx")
    assert bad_flag.returncode == 2 and "invalid choice: 'onnx'" in one_line_error(bad_flag)


def test_ctrl_c_detaches_and_the_job_keeps_training(stack):
    command = [sys.executable, "-m", "forgeway.cli", "train", str(stack.root / "tiny"), "-d",
               str(stack.root / "train.jsonl"), "--max-steps", "400", "--target", stack.target, *FAST]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if ": running" in line:
            break
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(seen) + err
    job_id = seen[0].split(":")[0]
    assert f"detached from {job_id}; it keeps running. Re-attach: forgeway jobs watch {job_id}" in err
    assert "Traceback" not in err
    sdk = Client(stack.target)
    assert sdk.jobs.get(job_id).state == "running"
    sdk.jobs.cancel(job_id)
    assert sdk.job(job_id).wait().state == "cancelled"


def test_dry_run_checks_the_request_and_creates_no_job(stack):
    before = {j.id for j in Client(stack.target).jobs.list()}
    tiny, data = str(stack.root / "tiny"), str(stack.root / "train.jsonl")
    good = cli(stack, "train", tiny, "-d", data, "--max-steps", "2", "--dry-run", *FAST)
    assert good.returncode == 0 and good.stdout.startswith("valid: the trainer would start this job"), good.stderr
    risky = json.loads(cli(stack, "train", tiny, "-d", data, "--max-steps", "2", "--dry-run", "--json", *FAST,
                           "--batch-size", "8").stdout)
    assert risky["valid"] and any(a.startswith("hyperparameters.batch_size: 8") for a in risky["advice"]), risky
    bad = cli(stack, "train", tiny, "-d", data, "--dry-run", "--learning-rate", "5")
    assert bad.returncode == 1 and "hyperparameters.learning_rate" in one_line_error(bad)
    assert {j.id for j in Client(stack.target).jobs.list()} == before


def test_the_async_client_validates_the_same_way(stack):
    import asyncio

    from forgeway.client import AsyncClient, InvalidArgumentError

    async def validate(**options):
        async with AsyncClient(stack.target) as client:
            return await client.jobs.validate(str(stack.root / "tiny"), str(stack.root / "train.jsonl"), max_steps=2,
                                              **options)

    assert asyncio.run(validate(batch_size=2)) == []
    with pytest.raises(InvalidArgumentError) as refused:
        asyncio.run(validate(learning_rate=5.0))
    assert "hyperparameters.learning_rate" in dict(refused.value.field_violations)


def test_an_alignTune_algorithm_with_its_knobs_from_the_command_line(stack):
    tiny = str(stack.root / "tiny")
    prompts = stack.root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Tell me about cat {i}."}) + "\n" for i in range(6)))
    fast = ("--batch-size", "2", "--learning-rate", "1e-3", "--lora-r", "4", "--max-completion-length", "8")
    good = cli(stack, "train", tiny, "-d", str(prompts), "--method", "gbmpo", "--knob", "gbmpo.divergence=probl2kl",
               "--knob", "gbmpo.divergence_coefficient=0.001", "--reward", "length:20", "--max-steps", "1",
               "--json", *fast)
    assert good.returncode == 0, good.stderr
    job = Client(stack.target).jobs.get(json.loads(good.stdout.splitlines()[0])["job_id"])
    assert job.method == "gbmpo" and job.state == "succeeded"
    bad = cli(stack, "train", tiny, "-d", str(prompts), "--method", "gbmpo", "--knob", "gbmpo.divergence=l3",
              "--dry-run", *fast)
    assert bad.returncode == 1 and "method_params.gbmpo.divergence" in one_line_error(bad)
