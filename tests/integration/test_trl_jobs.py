"""Durable jobs over real gRPC: detach and watch-resume, cancel with a checkpoint, queueing, restart recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from trl_harness import assert_succeeded, final_state, request, trl_service

from forgeway.v1 import capabilities_pb2, jobs_pb2, train_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]


def kinds(events, kind: str) -> list:
    return [getattr(e, kind) for e in events if e.WhichOneof("kind") == kind]


async def first_events(call, until) -> list[jobs_pb2.JobEvent]:
    """Read a Train stream until `until(event)` holds, then detach (the job keeps running)."""
    seen = []
    async for response in call:
        seen.append(response.event)
        if until(response.event):
            break
    call.cancel()
    return seen


def is_progress(event) -> bool:
    return event.WhichOneof("kind") == "progress"


async def test_detach_then_watch_from_a_sequence_number_has_no_gap_or_duplicate(tmp_path):
    async with trl_service(tmp_path) as trainer:
        head = await first_events(trainer.backend.Train(request(steps=6)), is_progress)
        job_id, last = head[0].job_id, head[-1].sequence
        tail = await trainer.wait(job_id, after=last)
        events = head + tail
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        assert_succeeded(events)
        replay = await trainer.wait(job_id, after=0)  # the whole history, again, identical
        assert [e.SerializeToString() for e in replay] == [e.SerializeToString() for e in events]
        listed = (await trainer.jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs
        assert [j.id for j in listed] == [job_id] and listed[0].state == jobs_pb2.JOB_STATE_SUCCEEDED
        job = (await trainer.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))).job
        assert job.last_sequence == events[-1].sequence and job.artifact.model_name == job_id
        progress = kinds(events, "progress")
        assert progress[-1].total_steps == 6 and any(p.HasField("eta_seconds") for p in progress)
        assert any(p.HasField("learning_rate") and p.HasField("grad_norm") for p in progress)


async def test_cancel_stops_at_the_next_step_and_keeps_a_checkpoint(tmp_path):
    async with trl_service(tmp_path) as trainer:
        head = await first_events(trainer.backend.Train(request(steps=500)), is_progress)
        job_id = head[0].job_id
        cancelled = await trainer.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id))
        assert cancelled.job.id == job_id
        events = head + await trainer.wait(job_id, after=head[-1].sequence)
        assert final_state(events) == jobs_pb2.JOB_STATE_CANCELLED
        checkpoints = kinds(events, "checkpoint")
        assert checkpoints and Path(checkpoints[-1].path).is_dir()
        steps = [p.step for p in kinds(events, "progress")]
        assert checkpoints[-1].step == max(steps) < 500
        assert not (trainer.home / "models" / job_id).exists()
        with pytest.raises(grpc.aio.AioRpcError) as again:  # a finished job cannot be cancelled again
            await trainer.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id))
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert again.value.details() == f"job {job_id} already ended (JOB_STATE_CANCELLED)"


async def test_one_job_at_a_time_others_queue_with_their_position(tmp_path):
    async with trl_service(tmp_path) as trainer:
        first = await first_events(trainer.backend.Train(request(steps=4)), is_progress)
        second = await first_events(trainer.backend.Train(request(steps=2)),
                                    lambda e: e.WhichOneof("kind") == "state" and "position" in e.state.message)
        assert second[-1].state.message == "queued (position 1)"
        capabilities = await trainer.backend.Capabilities(capabilities_pb2.CapabilitiesRequest())
        assert (capabilities.load.in_flight, capabilities.load.queue_depth) == (1, 1)  # one running, one waiting
        done_first = await trainer.wait(first[0].job_id)
        done_second = await trainer.wait(second[0].job_id)
        assert_succeeded(done_first), assert_succeeded(done_second)
        ended_first = done_first[-1].time.ToNanoseconds()
        started_second = next(e for e in done_second if e.WhichOneof("kind") == "state"
                              and e.state.state == jobs_pb2.JOB_STATE_RUNNING).time.ToNanoseconds()
        assert started_second >= ended_first


RESTART_STEPS = 400


async def test_a_restarted_service_resumes_interrupted_jobs_from_their_checkpoint(tmp_path):
    async with trl_service(tmp_path) as trainer:
        head = await first_events(trainer.backend.Train(request(steps=RESTART_STEPS)), is_progress)
        queued = await first_events(trainer.backend.Train(request(steps=2)),
                                    lambda e: e.WhichOneof("kind") == "state")
        job_id, waiting_id = head[0].job_id, queued[0].job_id
    # Leaving the block drains the service while the first job is running (its first step reported, hundreds to
    # go): the job stops at its next step with a checkpoint, and the queued one never starts.
    async with trl_service(tmp_path) as restarted:
        events = await restarted.wait(job_id)
        waited = await restarted.wait(waiting_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    logs = [line.text for line in kinds(events, "log")]
    assert any("interrupted by shutdown" in t for t in logs), "precondition: the drain landed before the job ended"
    checkpoint = kinds(events, "checkpoint")[0]
    assert any(f"resuming from checkpoint {checkpoint.path}" in t for t in logs)
    assert any(t == f"resuming from checkpoint-{checkpoint.step}" for t in logs)
    assert_succeeded(events)
    after = events.index(next(e for e in events if e.WhichOneof("kind") == "log" and "interrupted by a restart" in e.log.text))
    resumed_steps = [e.progress.step for e in events[after:] if is_progress(e)]
    assert resumed_steps[0] == checkpoint.step + 1 and resumed_steps[-1] == RESTART_STEPS
    states = [s.state for s in kinds(waited, "state")]
    assert states.count(jobs_pb2.JOB_STATE_RUNNING) == 1 and states[-1] == jobs_pb2.JOB_STATE_SUCCEEDED


async def test_a_job_keeps_training_while_no_client_watches(tmp_path):
    async with trl_service(tmp_path) as trainer:
        head = await first_events(trainer.backend.Train(request(steps=3)), lambda e: True)
        for _ in range(600):
            job = (await trainer.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=head[0].job_id))).job
            if job.state == jobs_pb2.JOB_STATE_SUCCEEDED:
                break
            await asyncio.sleep(0.1)
        assert job.state == jobs_pb2.JOB_STATE_SUCCEEDED and job.progress.step == 3
        # the history went on without a watcher: every step, the loss, and the artifact in the store
        rest = await trainer.wait(job.id, after=head[-1].sequence)
        artifact = assert_succeeded(head + rest)
        assert [p.step for p in kinds(rest, "progress")][:3] == [1, 2, 3]
        assert job.artifact.model_name == artifact.model_name == job.id


async def test_an_eval_fraction_is_carved_and_evaluated_at_an_interval(tmp_path):
    async with trl_service(tmp_path, eval_fraction=0.34, eval_steps=1) as trainer:
        events = await trainer.train(request(steps=2))
    assert_succeeded(events)
    evals = [p for p in kinds(events, "progress") if "eval_loss" in p.metrics]
    assert len(evals) >= 3 and all("eval_perplexity" in p.metrics for p in evals)  # steps 1, 2, and the end
    assert any("carved" in line.text for line in kinds(events, "log"))


async def test_a_job_that_fails_is_failed_with_its_error_and_leaves_the_store_intact(tmp_path):
    async with trl_service(tmp_path) as trainer:
        output = train_pb2.TrainOutput(model_name="same-name")
        first = await first_events(trainer.backend.Train(request(steps=3, output=output)), lambda e: True)
        second = await first_events(trainer.backend.Train(request(steps=3, output=output)), lambda e: True)
        assert_succeeded(await trainer.wait(first[0].job_id))
        events = await trainer.wait(second[0].job_id)
        job = (await trainer.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=second[0].job_id))).job
    assert final_state(events) == jobs_pb2.JOB_STATE_FAILED and "already exists" in job.error
    models = trainer.home / "models"
    assert sorted(p.name for p in models.iterdir()) == ["same-name"]  # no partial folder left behind
