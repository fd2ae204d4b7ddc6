"""Bad requests are answered before any job exists, with the error table's codes and every violation listed."""

from __future__ import annotations

import grpc
import pytest
from trl_harness import PREFERENCES, TEXT, request, rows, tiny, trl_service

from forgeway.core.errors import from_rpc_error
from forgeway.v1 import capabilities_pb2, common_pb2, jobs_pb2, train_pb2

pytestmark = pytest.mark.trl

M = train_pb2


@pytest.fixture(scope="module")
async def trainer(tmp_path_factory):
    async with trl_service(tmp_path_factory.mktemp("trl-validation")) as service:
        yield service


async def rejected(trainer, req: train_pb2.TrainRequest):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await trainer.train(req)
    return from_rpc_error(caught.value)


async def test_capabilities_list_methods_tasks_peft_and_a_hardware_profile(trainer):
    caps = await trainer.backend.Capabilities(capabilities_pb2.CapabilitiesRequest())
    assert caps.backend == "trl" and caps.availability.available
    assert set(caps.training.methods) == set(range(1, 15)) and len(caps.training.tasks) == 3
    assert caps.training.lora and common_pb2.QUANTIZATION_4BIT_NF4 in caps.training.quantizations
    assert M.EXPORT_FORMAT_GGUF in caps.training.export_formats
    assert caps.hardware.profile == "cpu" and "batch size 2" in caps.hardware.recommendation
    assert [r.hyperparameters.batch_size for r in caps.hardware.recommendations] == [2, 2, 2]
    assert "trl" in caps.library_versions and "forgeway.v1.JobService/WatchJob" in caps.rpcs


async def test_every_impossible_hyperparameter_is_listed(trainer):
    req = request()
    req.hyperparameters.batch_size = 0
    req.hyperparameters.learning_rate = 0
    req.lora.r = 999
    req.dataset.percent = 150
    error = await rejected(trainer, req)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    fields = {f for f, _ in error.field_violations}
    assert {"hyperparameters.batch_size", "hyperparameters.learning_rate", "lora.r", "dataset.percent"} <= fields


async def test_unknown_method_and_knobs_a_method_does_not_take(trainer):
    error = await rejected(trainer, request(method=42))
    assert error.field_violations[0][0] == "method" and "grpo" in error.field_violations[0][1]
    error = await rejected(trainer, request(method_params=M.MethodParams(beta=0.1, num_generations=4)))
    assert {f for f, _ in error.field_violations} == {"method_params.beta", "method_params.num_generations"}
    error = await rejected(trainer, request(M.TRAINING_METHOD_DPO, rows(PREFERENCES),
                                            method_params=M.MethodParams(loss_type="nonsense")))
    assert "nonsense" in error.message and "sigmoid" in error.message


async def test_unknown_reward_names_the_allowed_ones(trainer):
    params = M.MethodParams(num_generations=2, reward_functions=[M.RewardFunction(name="vibes")])
    error = await rejected(trainer, request(M.TRAINING_METHOD_GRPO, rows([{"prompt": "hi"}] * 4),
                                            method_params=params))
    field, why = error.field_violations[0]
    assert field == "method_params.reward_functions[0].name" and "vibes" in why and "json_valid" in why


async def test_missing_columns_name_what_the_method_needs(trainer):
    error = await rejected(trainer, request(M.TRAINING_METHOD_DPO, rows(TEXT)))
    field, why = error.field_violations[0]
    assert field == "dataset.columns" and "chosen" in why and "rejected" in why and "text" in why


async def test_an_empty_value_names_its_column_and_row(trainer):
    bad = [dict(p) for p in PREFERENCES]
    bad[2]["rejected"] = "  "
    error = await rejected(trainer, request(M.TRAINING_METHOD_DPO, rows(bad)))
    assert error.field_violations[0] == ("dataset.rows[2].rejected", "missing or empty")


async def test_a_mapping_from_a_missing_column_names_it(trainer):
    source = rows(TEXT)
    source.column_mapping["body"] = "text"
    error = await rejected(trainer, request(dataset=source))
    assert error.field_violations[0][0] == "dataset.column_mapping" and "'body'" in error.field_violations[0][1]


async def test_too_few_rows(trainer):
    error = await rejected(trainer, request(dataset=rows(TEXT[:1])))
    assert error.field_violations[0][0] == "dataset.rows" and "at least 2" in error.message


async def test_ppo_is_rejected_naming_the_nearest_methods():
    from forgeway.core.errors import InvalidArgument
    from forgeway.core.enums import METHOD

    with pytest.raises(InvalidArgument) as caught:
        METHOD.value("PPO")
    assert "removed" in caught.value.message and "grpo" in caught.value.message and "rloo" in caught.value.message


async def test_paths_outside_the_allowed_roots_are_permission_denied(trainer, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "data.jsonl"
    outside.write_text('{"text": "a"}\n{"text": "b"}\n')
    error = await rejected(trainer, request(dataset=M.DatasetSource(path=str(outside))))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    error = await rejected(trainer, request(base_model="/etc"))
    assert error.code == grpc.StatusCode.PERMISSION_DENIED


async def test_a_missing_base_model_is_not_found(trainer):
    error = await rejected(trainer, request(base_model="nobody/no-such-model"))
    assert error.code == grpc.StatusCode.NOT_FOUND and "no-such-model" in error.message
    error = await rejected(trainer, request(base_model=str(tiny("llama").parent / "missing")))
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_unsupported_precision_and_exports_are_rejected_not_ignored(trainer):
    req = request()
    req.hyperparameters.precision = M.PRECISION_FP16
    error = await rejected(trainer, req)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.error_info.reason == "UNSUPPORTED"
    error = await rejected(trainer, request(lora=False, output=M.TrainOutput(formats=[M.EXPORT_FORMAT_ADAPTER])))
    assert error.field_violations[0][0] == "output.formats"


async def test_an_offline_hub_dataset_fails_before_any_job(trainer):
    error = await rejected(trainer, request(dataset=M.DatasetSource(hub_name="someone/some-data")))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and "someone/some-data" in error.message


async def test_no_job_was_created_by_any_rejected_request(trainer):
    assert not (await trainer.jobs.ListJobs(jobs_pb2.ListJobsRequest())).jobs
