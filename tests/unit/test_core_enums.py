"""The core's enum tables: every proto value named once, and the services, the SDK and the shim all reading them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from forgeway.client import InvalidArgumentError
from forgeway.client.convert import capabilities, model
from forgeway.client.requests import load_request, train_request
from forgeway.core import enums
from forgeway.core.errors import InvalidArgument
from forgeway.gateway.http.schemas_tuning import METHODS, FineTuningJobRequest, Method
from forgeway.services.training.spec import TrainSpec
from forgeway.v1 import (
    capabilities_pb2, common_pb2, datasets_pb2, generate_pb2, jobs_pb2, models_pb2, train_pb2,
)

TABLES = [
    (enums.TASK, common_pb2.Task), (enums.QUANTIZATION, common_pb2.Quantization),
    (enums.METHOD, train_pb2.TrainingMethod), (enums.BACKEND, train_pb2.TrainingBackend),
    (enums.PRECISION, train_pb2.Precision), (enums.EXPORT_FORMAT, train_pb2.ExportFormat),
    (enums.JOB_STATE, jobs_pb2.JobState), (enums.FINISH_REASON, generate_pb2.FinishReason),
    (enums.DATASET_FORMAT, datasets_pb2.DatasetFormat),
]


@pytest.mark.parametrize(("table", "enum"), TABLES, ids=[table.field for table, _ in TABLES])
def test_every_proto_value_has_one_name_that_maps_back(table, enum):
    values = [v for v in enum.values() if v]
    assert sorted(v for v in table.to_name if v) == sorted(values)  # a new proto value needs its row here
    for value in values:
        assert table.known(value) and table.value(table.name(value)) == value


def test_lookups_ignore_case_and_dashes_and_take_aliases():
    assert enums.METHOD.value("Online-DPO") == train_pb2.TRAINING_METHOD_ONLINE_DPO
    assert enums.METHOD.value("supervised") == train_pb2.TRAINING_METHOD_SFT
    assert enums.QUANTIZATION.value("4BIT") == common_pb2.QUANTIZATION_4BIT_NF4
    assert enums.JOB_STATE.value("canceled") == jobs_pb2.JOB_STATE_CANCELLED
    assert enums.TASK.get("translation") is None


def test_unknown_removed_and_missing_names_are_invalid_naming_the_field():
    with pytest.raises(InvalidArgument) as unknown:
        enums.BACKEND.value("vllm")
    assert unknown.value.field == "backend" and unknown.value.violations[0][1].endswith("allowed: auto, trl, unsloth")
    with pytest.raises(InvalidArgument) as removed:
        enums.METHOD.value("PPO", "method.type")
    assert removed.value.field == "method.type" and "grpo" in removed.value.message
    assert enums.METHOD.why_removed("p-p-o") is None and "rloo" in enums.METHOD.why_removed(" Ppo ")
    with pytest.raises(InvalidArgument, match="required"):
        enums.METHOD.value("")
    assert enums.BACKEND.value("") == train_pb2.TRAINING_BACKEND_UNSPECIFIED  # a table with a default fills it in


def train(**fields) -> train_pb2.TrainRequest:
    fields = {"method": train_pb2.TRAINING_METHOD_SFT, **fields}
    return train_pb2.TrainRequest(base_model="m", dataset=train_pb2.DatasetSource(path="d.jsonl"), **fields)


def test_train_spec_names_values_from_the_tables():
    spec = TrainSpec.from_proto(train(backend=train_pb2.TRAINING_BACKEND_UNSLOTH, output=train_pb2.TrainOutput(
        formats=[train_pb2.EXPORT_FORMAT_GGUF]), hyperparameters=train_pb2.Hyperparameters(
        precision=train_pb2.PRECISION_BF16)))
    assert (spec.method, spec.backend, spec.export_formats, spec.precision, spec.quantization) == (
        "sft", "unsloth", ("gguf",), "bf16", "none")


@pytest.mark.parametrize("value", [common_pb2.QUANTIZATION_GGUF, 99])
def test_train_spec_refuses_quantizations_nothing_trains_in(value):
    with pytest.raises(InvalidArgument) as error:
        TrainSpec.from_proto(train(quantization=train_pb2.QuantizationParams(quantization=value)))
    assert dict(error.value.violations) == {"quantization.quantization": "allowed for training: fp4, int8, nf4, none"}


def test_train_spec_lists_every_bad_enum_at_once():
    with pytest.raises(InvalidArgument) as error:
        TrainSpec.from_proto(train(method=0, backend=9, output=train_pb2.TrainOutput(formats=[7])))
    violations = dict(error.value.violations)
    assert violations["method"].startswith("unknown method 0; allowed: sft, dpo")
    assert violations["backend"] == "allowed: auto, trl, unsloth"
    assert violations["output.formats"] == "allowed: adapter, merged, gguf"


def test_sdk_builds_requests_from_the_tables():
    request = train_request("m", "d.jsonl", method="supervised", precision="BF16", quantization="4bit", lora=True)
    assert request.method == train_pb2.TRAINING_METHOD_SFT
    assert request.hyperparameters.precision == train_pb2.PRECISION_BF16
    assert request.quantization.quantization == common_pb2.QUANTIZATION_4BIT_NF4
    assert not train_request("m", "d.jsonl", quantization="none").HasField("quantization")
    assert load_request("n", "/m", "", "qa", "8bit", "", None).task == common_pb2.TASK_EXTRACTIVE_QUESTION_ANSWERING
    with pytest.raises(InvalidArgumentError) as error:
        train_request("m", "d.jsonl", backend="vllm")
    assert dict(error.value.field_violations) == {"backend": "unknown value 'vllm'; allowed: auto, trl, unsloth"}


def test_sdk_names_wire_values_and_leaves_unspecified_empty():
    assert model(models_pb2.ModelInfo(name="m")).quantization == ""
    assert model(models_pb2.ModelInfo(name="m", quantization=common_pb2.QUANTIZATION_NONE)).quantization == "none"
    training = capabilities(capabilities_pb2.CapabilitiesResponse(training=capabilities_pb2.TrainingFeatures(
        methods=[train_pb2.TRAINING_METHOD_ONLINE_DPO], quantizations=[common_pb2.QUANTIZATION_8BIT],
        export_formats=[train_pb2.EXPORT_FORMAT_MERGED]))).training
    assert (training.methods, training.quantizations, training.export_formats) == (("online_dpo",), ("int8",),
                                                                                  ("merged",))


def test_shim_schema_takes_the_tables_names():
    assert set(METHODS) == {"supervised", *enums.METHOD.names} and set(METHODS) <= set(Method.model_fields)
    body = {"model": "m", "training_file": "ds-0123456789abcdef"}
    request = FineTuningJobRequest.model_validate({**body, "backend": "unsloth", "quantization": "fp4",
                                                   "task": "summarization", "export": ["merged"]})
    assert (request.backend, request.quantization, request.task, request.export) == (
        "unsloth", "fp4", "summarization", ["merged"])
    for bad in ({"backend": "vllm"}, {"quantization": "gguf"}, {"export": ["onnx"]}):
        with pytest.raises(ValidationError):
            FineTuningJobRequest.model_validate({**body, **bad})
    with pytest.raises(ValidationError, match="TRL removed PPO"):
        FineTuningJobRequest.model_validate({**body, "method": {"type": "PPO"}})
