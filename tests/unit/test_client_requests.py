"""The SDK's request builders, conversions, retry policy and local errors (no server needed)."""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest
from google.protobuf import duration_pb2, json_format
from google.rpc import error_details_pb2

from forgeway.client import DatasetSource, InvalidArgumentError, LoRA, Retry, UnavailableError
from forgeway.client.connection import Connection
from forgeway.client.convert import backend_rows, capabilities, job, job_event
from forgeway.client.errors import NotFoundError, UnsupportedError, error_class
from forgeway.client.requests import generate_request, load_request, train_request
from forgeway.client.uploads import CHUNK_BYTES, Upload
from forgeway.v1 import capabilities_pb2, common_pb2, jobs_pb2, models_pb2, train_pb2


def violations(error: InvalidArgumentError) -> dict[str, str]:
    return dict(error.field_violations)


def test_generate_request_maps_every_option_onto_the_contract():
    request = generate_request(
        "m", "hi", n=2, max_tokens=5, temperature=0.0, top_p=0.9, top_k=4, seed=7, stop="END",
        json_schema={"type": "object"}, logprobs=True, top_logprobs=3, adapter="a", backend="hf", priority=2)
    assert request.prompt == "hi" and request.n == 2 and request.backend == "hf" and request.priority == 2
    assert request.sampling.HasField("temperature") and request.sampling.temperature == 0.0
    assert not request.sampling.HasField("min_p")  # unset stays unset: the backend's default applies
    assert list(request.sampling.stop) == ["END"] and request.sampling.seed == 7
    assert json.loads(request.structured_output.json_schema) == {"type": "object"}
    chat = generate_request("m", messages=[{"role": "user", "content": "a"}, ("assistant", "b")])
    assert [(m.role, m.content) for m in chat.messages] == [("user", "a"), ("assistant", "b")]
    qa = generate_request("m", context="The cat sat.", question="Where?", task="extractive-question-answering")
    assert qa.question_answer.context == "The cat sat." and qa.task == common_pb2.TASK_EXTRACTIVE_QUESTION_ANSWERING


def test_local_errors_carry_field_violations_like_the_servers():
    with pytest.raises(InvalidArgumentError) as missing:
        generate_request("", "hi")
    assert violations(missing.value) == {"model": "required"}
    assert missing.value.code == grpc.StatusCode.INVALID_ARGUMENT and missing.value.http_status == 400
    with pytest.raises(InvalidArgumentError) as bad_task:
        generate_request("m", "hi", task="translation")
    assert "task" in violations(bad_task.value)
    with pytest.raises(InvalidArgumentError) as bad_message:
        generate_request("m", messages=["just text"])
    assert "messages" in violations(bad_message.value)


def test_train_request_from_keyword_arguments():
    request = train_request(
        "tiny", [{"text": "a"}, {"text": "b"}], method="online-dpo", epochs=1.5, batch_size=2, learning_rate=1e-3,
        lora=True, quantization="nf4", double_quant=True, beta=0.2, num_generations=4,
        reward_functions=["length:200", ("json_valid", 0.5)], export=["adapter", "gguf"], backend="unsloth",
        allow_fallback=False, output_name="mine", max_samples=10, column_mapping={"q": "prompt"})
    assert request.method == train_pb2.TRAINING_METHOD_ONLINE_DPO
    assert len(request.dataset.inline.rows) == 2 and request.dataset.max_samples == 10
    assert dict(request.dataset.column_mapping) == {"q": "prompt"}
    assert request.hyperparameters.epochs == 1.5 and not request.hyperparameters.HasField("max_steps")
    assert (request.lora.r, request.lora.alpha) == (16, 32)
    assert request.quantization.quantization == common_pb2.QUANTIZATION_4BIT_NF4 and request.quantization.double_quant
    assert [(r.name, r.weight) for r in request.method_params.reward_functions] == [("length:200", 0.0),
                                                                                  ("json_valid", 0.5)]
    assert list(request.output.formats) == [train_pb2.EXPORT_FORMAT_ADAPTER, train_pb2.EXPORT_FORMAT_GGUF]
    assert request.backend == train_pb2.TRAINING_BACKEND_UNSLOTH and request.HasField("allow_fallback")
    assert not request.allow_fallback and request.output.model_name == "mine"
    assert train_request("m", "ds-0123456789abcdef", lora=LoRA(r=4, alpha=8)).lora.r == 4


@pytest.mark.parametrize(("options", "field"), [
    ({"method": "sft2"}, "method"), ({"backend": "vllm"}, "backend"), ({"quantization": "3bit"}, "quantization"),
    ({"export": ["onnx"]}, "output.formats"), ({"precision": "fp8"}, "precision"),
])
def test_train_request_rejects_unknown_names_listing_the_allowed_ones(options, field):
    with pytest.raises(InvalidArgumentError) as error:
        train_request("m", "data.jsonl", **options)
    assert field in violations(error.value) and "allowed" in violations(error.value)[field]


def test_dataset_shorthands():
    assert DatasetSource.of("ds-0123456789abcdef").dataset_id == "ds-0123456789abcdef"
    assert DatasetSource.of("/data/train.jsonl").path == "/data/train.jsonl"
    assert DatasetSource.of("train.csv").path == "train.csv"
    assert DatasetSource.of("tatsu-lab/alpaca").hub_name == "tatsu-lab/alpaca"
    assert DatasetSource.of([{"text": "x"}]).rows == [{"text": "x"}]
    with pytest.raises(InvalidArgumentError):
        DatasetSource(path="a", hub_name="b").to_proto()


def test_load_request_routes_by_backend_option():
    request = load_request("tiny", "/m/tiny.gguf", "llamacpp", None, "gguf", "", {"n_ctx": 256, "verbose": False})
    assert dict(request.options) == {"n_ctx": "256", "verbose": "false", "backend": "llamacpp"}
    assert request.quantization == common_pb2.QUANTIZATION_GGUF


def test_upload_header_is_the_files_size_and_sha256(tmp_path):
    data = b"x" * (CHUNK_BYTES + 10)
    (tmp_path / "d.jsonl").write_bytes(data)
    upload = Upload.of(tmp_path / "d.jsonl", None, "", "fine-tune")
    header = upload.header()
    assert header.size_bytes == len(data) and header.sha256 == hashlib.sha256(data).hexdigest()
    parts = list(upload.parts(header))
    assert parts[0].header.filename == "d.jsonl" and [len(p.chunk) for p in parts[1:]] == [CHUNK_BYTES, 10]
    with pytest.raises(InvalidArgumentError):
        Upload.of(b"rows", None, "", "fine-tune")  # bytes need a file name


def test_retry_only_unavailable_within_attempts_and_deadline():
    policy = Retry(attempts=3, initial_backoff=0.1, jitter=0)
    unavailable = UnavailableError("down")
    assert policy.delay(0, unavailable, None) == pytest.approx(0.1)
    assert policy.delay(1, unavailable, None) == pytest.approx(0.2)
    assert policy.delay(2, unavailable, None) is None  # the third try was the last
    assert policy.delay(0, NotFoundError("x"), None) is None
    assert policy.delay(0, unavailable, deadline=0.0) is None  # no time left
    told = UnavailableError("busy", details=[error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=3))])
    assert told.retry_after == 3 and policy.delay(0, told, None) == pytest.approx(3)  # the server's delay wins
    patient = Retry(attempts=10, initial_backoff=4, jitter=0, budget=5)
    assert patient.delay(0, unavailable, None, waited=0) == 4 and patient.delay(1, unavailable, None, waited=4) is None


def test_connection_resolves_arguments_then_environment(monkeypatch):
    monkeypatch.setenv("FORGEWAY_TARGET", "gw:1234")
    monkeypatch.setenv("FORGEWAY_API_KEY", "k")
    from_env = Connection.resolve(None, None, None, 5, None)
    assert from_env.target == "gw:1234" and from_env.metadata == (("authorization", "Bearer k"),)
    explicit = Connection.resolve("other:1", "", True, None, 0)
    assert explicit.target == "other:1" and explicit.metadata == () and explicit.tls is not None
    assert explicit.retry.attempts == 1


def test_error_classes_follow_the_table():
    assert error_class(grpc.StatusCode.INVALID_ARGUMENT, "UNSUPPORTED") is UnsupportedError
    assert issubclass(UnsupportedError, InvalidArgumentError)
    assert error_class(grpc.StatusCode.NOT_FOUND) is NotFoundError
    assert error_class(grpc.StatusCode.DATA_LOSS).__name__ == "InternalError"


def test_conversions_use_lowercase_names_and_one_row_per_backend():
    assert job(jobs_pb2.Job(id="j", state=jobs_pb2.JOB_STATE_SUCCEEDED)).state == "succeeded"
    assert job(jobs_pb2.Job(id="j")).state == ""
    assert job(jobs_pb2.Job(id="j", suffix="cats")).suffix == "cats"  # what an OpenAI client asked for, read back
    event = job_event(jobs_pb2.JobEvent(job_id="j", sequence=3, progress=jobs_pb2.Progress(step=2, total_steps=4,
                                                                                          loss=1.5)))
    assert (event.kind, event.progress.step, event.progress.loss, event.progress.eta_seconds) == ("progress", 2, 1.5,
                                                                                                 None)
    done = job_event(jobs_pb2.JobEvent(job_id="j", sequence=4, state=jobs_pb2.StateChange(
        state=jobs_pb2.JOB_STATE_FAILED, message="boom")))
    assert done.terminal and done.state == "failed" and done.message == "boom"
    trainer = capabilities_pb2.CapabilitiesResponse(
        backend="trl", availability=capabilities_pb2.Availability(available=True),
        training=capabilities_pb2.TrainingFeatures(methods=[train_pb2.TRAINING_METHOD_SFT]),
        models=[models_pb2.ModelInfo(name="m", task=common_pb2.TASK_SUMMARIZATION)])
    gateway = capabilities_pb2.CapabilitiesResponse(backend="gateway", endpoints=[
        capabilities_pb2.EndpointStatus(address="a:1", health="SERVING", breaker="closed", capabilities=trainer)])
    rows = backend_rows(capabilities(gateway))
    assert [(r.address, r.backend, r.available, r.methods, r.models) for r in rows] == [
        ("a:1", "trl", True, ("sft",), ("m",))]
    assert capabilities(trainer).models[0].task == "summarization"
    assert json_format.MessageToDict(gateway)  # the fixture itself is a valid message


def test_standing_refusals_are_not_retried():
    """A trainer refused with fallback disabled stays refused: the SDK raises at once instead of backing off."""
    retry = Retry(attempts=5)
    passing = UnavailableError("backend restarting", reason="UNAVAILABLE")
    standing = UnavailableError("unsloth unavailable; fallback to trl is disabled", reason="TRAINER_UNAVAILABLE")
    assert retry.delay(0, passing, deadline=None) is not None
    assert retry.delay(0, standing, deadline=None) is None


def test_ppo_is_refused_naming_the_nearest_methods():
    from forgeway.client.requests import train_request

    with pytest.raises(InvalidArgumentError) as refused:
        train_request("tiny", [{"text": "a"}], method="ppo")
    assert "TRL removed PPO" in str(refused.value) and "grpo" in str(refused.value)
    assert "method" in dict(refused.value.field_violations)
