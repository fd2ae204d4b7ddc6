"""Training through the SDK against the real TRL trainer behind a real gateway: upload, train, events, detach and
re-attach, wait, cancel, fallback, typed errors, and the asyncio twin."""

from __future__ import annotations

import json

import pytest

from forgeway.client import (
    AsyncClient, Client, DeadlineExceededError, InvalidArgumentError, JobFailedError, NotFoundError, Retry,
    UnavailableError,
)
from forgeway.testing import trainer_stack

pytestmark = [pytest.mark.trl, pytest.mark.slow]
ROWS = [{"text": f"the cat number {i} sat on the mat and looked at the dog."} for i in range(6)]
FAST = {"batch_size": 2, "max_seq_length": 32, "learning_rate": 1e-3, "lora": {"r": 4, "alpha": 8}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("client-training")
    build_tiny_llama(root / "tiny", seed=0)
    (root / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    with trainer_stack(root) as running:
        yield running


@pytest.fixture
def client(stack):
    with Client(stack.target, timeout=60) as sdk:
        yield sdk


def tiny(stack) -> str:
    return str(stack.root / "tiny")


def test_upload_then_train_streams_every_event_to_an_artifact(stack, client):
    dataset = client.upload_dataset(stack.root / "train.jsonl")
    assert (dataset.rows, dataset.format, dataset.filename) == (6, "jsonl", "train.jsonl")
    assert client.datasets.get(dataset.id) == dataset and dataset.id in [d.id for d in client.datasets.list()]
    job = client.train(tiny(stack), dataset, max_steps=3, output_name="client-sft", **FAST)
    events = list(job.events())
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == "state" and events[0].state == "queued" and events[0].job_id == job.id
    assert events[-1].terminal and job.final_state == "succeeded"
    progress = [e.progress for e in events if e.kind == "progress"]
    assert progress[-1].step == progress[-1].total_steps == 3
    assert any(p.loss is not None and p.loss > 0 for p in progress)
    (artifact,) = [e.artifact for e in events if e.kind == "artifact"]
    assert artifact.model_name == "client-sft" and artifact.format == "adapter"
    record = job.get()
    assert (record.state, record.method, record.backend, record.artifact) == ("succeeded", "sft", "trl", artifact)
    assert record.last_sequence == events[-1].sequence
    assert job.id in [j.id for j in client.jobs.list(state="succeeded")]


def test_detach_and_reattach_by_job_id_misses_nothing(stack, client):
    job = client.train(tiny(stack), ROWS, max_steps=8, **FAST)
    head = []
    for event in job.events():
        head.append(event)
        if event.kind == "progress":
            break
    job.detach()  # the job keeps training
    again = Client(stack.target).job(job.id, after=head[-1].sequence)
    tail = list(again.events())
    events = head + tail
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert again.final_state == "succeeded" and again.wait(check=True).state == "succeeded"
    replay = list(client.jobs.watch(job.id))  # the whole history, again
    assert [(e.sequence, e.kind) for e in replay] == [(e.sequence, e.kind) for e in events]


def test_cancel_wait_and_a_deadline(stack, client):
    job = client.train(tiny(stack), ROWS, max_steps=400, **FAST)
    with pytest.raises(DeadlineExceededError):
        job.wait(timeout=1)  # still training: the job is left running
    assert job.get().state in ("queued", "running")
    job.cancel()
    with pytest.raises(JobFailedError) as failed:
        job.wait(check=True)
    assert failed.value.job.state == "cancelled"
    assert client.jobs.get(job.id).state == "cancelled"


def test_a_job_that_fails_is_a_failed_job_not_an_rpc_error(stack, client):
    job = client.train(str(stack.root), ROWS, max_steps=2, **FAST)  # a folder, but no model in it
    record = job.wait()
    assert record.state == "failed" and record.error
    with pytest.raises(JobFailedError, match="failed"):
        job.wait(check=True)


def test_fallback_to_trl_and_typed_refusals(stack, client):
    job = client.train(tiny(stack), ROWS, max_steps=1, backend="unsloth", **FAST)
    events = list(job.events())
    (fallback,) = [e.fallback for e in events if e.kind == "fallback"]
    assert (fallback.requested, fallback.used) == ("unsloth", "trl") and "unsloth" in fallback.reason
    assert job.final_state == "succeeded" and job.get().backend == "trl"
    with Client(stack.target, retry=Retry(attempts=1)) as no_retry, pytest.raises(UnavailableError) as refused:
        no_retry.train(tiny(stack), ROWS, backend="unsloth", allow_fallback=False)
    assert "fallback to trl is disabled" in str(refused.value)
    with pytest.raises(InvalidArgumentError) as columns:
        client.train(tiny(stack), [{"x": 1}, {"x": 2}], method="dpo")
    assert "dataset.columns" in dict(columns.value.field_violations)
    with pytest.raises(InvalidArgumentError) as batch:
        client.train(tiny(stack), ROWS, batch_size=0)
    assert dict(batch.value.field_violations) == {"hyperparameters.batch_size": "must be at least 1"}
    with pytest.raises(NotFoundError):
        client.train(tiny(stack), "ds-0000000000000000")
    with pytest.raises(NotFoundError):
        client.jobs.get("job-does-not-exist")


async def test_async_client_trains_too(stack):
    async with AsyncClient(stack.target) as client:
        job = await client.train(tiny(stack), ROWS, max_steps=2, **FAST)
        kinds = [event.kind async for event in job.events()]
        assert kinds[0] == "state" and "progress" in kinds and "artifact" in kinds
        record = await job.wait(check=True)
        assert record.state == "succeeded" and record.id in [j.id for j in await client.jobs.list()]
        watched = [e.sequence async for e in client.jobs.watch(job.id, after=2)]
        assert watched == list(range(3, record.last_sequence + 1))
