"""CreateJob with validate_only, through the gateway to a real TRL trainer: the same checks and errors as creating
the job (fields, dataset rows, base model), the trainer's advice, and no job."""

from __future__ import annotations

import grpc
import pytest
from trl_harness import TEXT, request, rows, trl_service

from forgeway.core.errors import from_rpc_error
from forgeway.testing import gateway_settings, start_gateway, stop_now
from forgeway.v1 import backend_pb2_grpc, jobs_pb2, jobs_pb2_grpc, train_pb2

pytestmark = pytest.mark.trl


@pytest.fixture(scope="module")
async def gateway(tmp_path_factory):
    async with trl_service(tmp_path_factory.mktemp("trl-validate-only")) as trainer:
        running = await start_gateway(gateway_settings([trainer.address]))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
                yield backend_pb2_grpc.BackendServiceStub(channel), jobs_pb2_grpc.JobServiceStub(channel)
        finally:
            await stop_now(running)


async def check(backend, train: train_pb2.TrainRequest) -> train_pb2.CreateJobResponse:
    return await backend.CreateJob(train_pb2.CreateJobRequest(train=train, validate_only=True), timeout=60)


async def rejected(backend, train: train_pb2.TrainRequest):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await check(backend, train)
    return from_rpc_error(caught.value)


async def test_a_good_request_answers_no_job(gateway):
    backend, _ = gateway
    response = await check(backend, request(backend=train_pb2.TRAINING_BACKEND_TRL))
    assert not response.HasField("job") and list(response.advice) == []


async def test_risky_settings_come_back_as_advice(gateway):
    backend, _ = gateway
    req = request(backend=train_pb2.TRAINING_BACKEND_TRL)
    req.hyperparameters.batch_size = 16  # more than ModelForge advises on a cpu machine
    advice = list((await check(backend, req)).advice)
    assert len(advice) == 1 and advice[0].startswith("hyperparameters.batch_size: 16 may be too large")


async def test_every_field_violation_is_listed(gateway):
    backend, _ = gateway
    req = request(backend=train_pb2.TRAINING_BACKEND_TRL)
    req.hyperparameters.learning_rate = 2
    req.lora.dropout = 1.5
    error = await rejected(backend, req)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in error.field_violations} == {"hyperparameters.learning_rate", "lora.dropout"}


async def test_a_bad_row_is_named_with_its_column(gateway):
    backend, _ = gateway
    bad = [*TEXT[:3], {"text": "  "}, *TEXT[3:]]
    error = await rejected(backend, request(dataset=rows(bad), backend=train_pb2.TRAINING_BACKEND_TRL))
    assert error.field_violations == [("dataset.rows[3].text", "missing or empty")]


async def test_an_unknown_base_model_is_not_found(gateway):
    backend, _ = gateway
    error = await rejected(backend, request(base_model="no-such-model", backend=train_pb2.TRAINING_BACKEND_TRL))
    assert error.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
    assert "no-such-model" in error.message


async def test_no_job_was_created(gateway):
    _, jobs = gateway
    assert not (await jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs
