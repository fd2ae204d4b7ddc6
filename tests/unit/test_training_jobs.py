"""JobStore: strictly increasing sequence numbers under concurrent writers, history reads, durable reopening."""

from __future__ import annotations

import threading

import pytest
from google.protobuf import struct_pb2

from forgeway.services.training.jobs import JobStore
from forgeway.v1 import jobs_pb2, train_pb2


def test_concurrent_appends_get_gapless_increasing_sequences(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    job = store.create(train_pb2.TrainRequest(base_model="m"), "trl", "sft")

    def write(worker: int) -> None:
        for step in range(50):
            store.append(job.id, progress=jobs_pb2.Progress(step=step, metrics={"worker": worker}))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = store.events(job.id)
    assert [e.sequence for e in events] == list(range(1, 202))
    assert [e.sequence for e in store.events(job.id, after=190)] == list(range(191, 202))
    assert store.get(job.id).last_sequence == 201
    store.append(job.id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_FAILED, message="boom"))
    store.close()
    reopened = JobStore(tmp_path / "jobs.db")
    again = reopened.get(job.id)
    assert again.state == jobs_pb2.JOB_STATE_FAILED and again.error == "boom" and again.last_sequence == 202
    assert reopened.unfinished() == []
    assert reopened.request(job.id).base_model == "m"


def test_a_job_records_its_dataset_and_the_hyperparameters_asked_for(tmp_path):
    store = JobStore(tmp_path / "jobs.db")
    request = train_pb2.TrainRequest(
        base_model="m", dataset=train_pb2.DatasetSource(dataset_id="ds-0123456789abcdef"),
        eval_dataset=train_pb2.DatasetSource(path="/data/eval.jsonl"),
        hyperparameters=train_pb2.Hyperparameters(epochs=2, learning_rate=1e-4))
    job = store.create(request, "trl", "sft")
    again = JobStore(tmp_path / "jobs.db").get(job.id)  # durable, as read by another process
    assert (again.dataset, again.eval_dataset) == ("ds-0123456789abcdef", "/data/eval.jsonl")
    assert again.epochs == 2 and again.learning_rate == pytest.approx(1e-4)
    assert not again.HasField("batch_size") and not again.HasField("seed")
    row = struct_pb2.Struct()
    row.update({"text": "a"})
    inline = store.create(train_pb2.TrainRequest(base_model="m", dataset=train_pb2.DatasetSource(
        inline=train_pb2.InlineRows(rows=[row]))), "trl", "sft")
    assert inline.dataset == "inline" and inline.eval_dataset == ""
