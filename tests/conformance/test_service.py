"""What every BackendService reports and how it refuses: capabilities, health, and the error table."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.v1 import backend_pb2, generate_pb2, train_pb2

from .calls import generate_request, rpc_error, stream_error

SERVICE = backend_pb2.DESCRIPTOR.services_by_name["BackendService"]
INPUT_FIELDS = {"prompt", "messages", "summarize", "question_answer"}


async def test_capabilities_shape(endpoint, capabilities):
    caps = capabilities
    assert caps.backend == endpoint.backend
    assert caps.version
    assert caps.instance_id
    assert caps.HasField("availability") and caps.availability.available, caps.availability.reason
    names = {m.name for m in caps.models} | {a for m in caps.models for a in m.aliases}
    assert caps.models and endpoint.model in names, f"{endpoint.model!r} not among {sorted(names)}"
    for rpc in ("Capabilities", "Generate", *(["GenerateStream"] if caps.generation.streaming else [])):
        assert f"forgeway.v1.BackendService/{rpc}" in caps.rpcs, caps.rpcs
    assert all(r.startswith("forgeway.v1.") and "/" in r for r in caps.rpcs), caps.rpcs
    assert caps.HasField("generation") and caps.generation.streaming
    assert caps.hardware.cpu_cores > 0
    assert caps.hardware.ram_total > 0 and caps.hardware.device
    assert caps.HasField("load")


@pytest.mark.parametrize("service", ["", SERVICE.full_name])
async def test_health_is_serving(channel, service):
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_rpcs_not_listed_are_unimplemented(backend, capabilities):
    unlisted = [m.name for m in SERVICE.methods if f"{SERVICE.full_name}/{m.name}" not in capabilities.rpcs]
    if "Train" not in unlisted:
        pytest.skip("every BackendService RPC is listed")
    error = await stream_error(backend.Train(train_pb2.TrainRequest(), timeout=10))
    assert error.code == grpc.StatusCode.UNIMPLEMENTED, f"{error.code.name}: {error.message}"
    if "CreateJob" in unlisted:
        error = await rpc_error(backend.CreateJob(train_pb2.CreateJobRequest(), timeout=10))
        assert error.code == grpc.StatusCode.UNIMPLEMENTED, f"{error.code.name}: {error.message}"


@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream"])
async def test_unknown_model_is_not_found(endpoint, backend, rpc):
    request = generate_request(endpoint, max_tokens=4, model="no-such-model-conformance")
    if rpc == "Generate":
        error = await rpc_error(backend.Generate(request, timeout=10))
    else:
        error = await stream_error(backend.GenerateStream(request, timeout=10))
    assert error.code == grpc.StatusCode.NOT_FOUND, f"{error.code.name}: {error.message}"
    assert error.error_info is not None and error.error_info.reason.endswith("NOT_FOUND"), error.error_info
    assert "no-such-model-conformance" in error.message


# Each feature a GenerationFeatures flag names, and how a request asks for it.
def _ask_logprobs(r): r.logprobs = True
def _ask_grammar(r): r.structured_output.grammar = 'root ::= "yes" | "no"'
def _ask_json_schema(r): r.structured_output.json_schema = '{"type": "object"}'
def _ask_adapter(r): r.adapter = "conformance-adapter"
def _ask_choices(r): r.n = 2
def _ask_seed(r): r.sampling.seed = 7
def _ask_stop(r): r.sampling.stop.append("\n\n")
def _ask_tools(r):
    r.ClearField("prompt")
    r.messages.add(role="user", content="What is the weather in Paris?")
    r.tools.add(function=generate_pb2.FunctionDefinition(name="get_weather", parameters='{"type": "object"}'))
def _ask_reasoning(r): r.thinking = False


FLAG_FEATURES = {
    "logprobs": _ask_logprobs, "grammar": _ask_grammar, "json_schema": _ask_json_schema, "adapters": _ask_adapter,
    "multiple_choices": _ask_choices, "seed": _ask_seed, "stop": _ask_stop, "tools": _ask_tools,
    "reasoning": _ask_reasoning,
}  # fmt: skip
SAMPLING_VALUES = {
    "temperature": 0.7, "top_p": 0.9, "top_k": 5, "min_p": 0.1,
    "repetition_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": 0.5,
}  # fmt: skip


def unsupported_requests(endpoint, generation) -> dict[str, generate_pb2.GenerateRequest]:
    """One request per feature the Capabilities do not list."""
    requests = {}
    for feature, ask in FLAG_FEATURES.items():
        if not getattr(generation, feature):
            request = generate_request(endpoint, max_tokens=4)
            ask(request)
            requests[feature] = request
    for param, value in SAMPLING_VALUES.items():
        if param not in generation.sampling_params:
            request = generate_request(endpoint, max_tokens=4)
            setattr(request.sampling, param, value)
            requests[param] = request
    return requests


async def test_unsupported_features_are_rejected_never_ignored(endpoint, backend, capabilities):
    requests = unsupported_requests(endpoint, capabilities.generation)
    if not requests:
        pytest.skip(f"{endpoint.name} lists every generation feature the contract has")
    for feature, request in requests.items():
        error = await rpc_error(backend.Generate(request, timeout=10))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, f"{feature}: {error.code.name}: {error.message}"
        assert error.error_info is not None and error.error_info.reason == "UNSUPPORTED", (feature, error.error_info)
        assert error.error_info.metadata["feature"] == feature
        streamed = await stream_error(backend.GenerateStream(request, timeout=10))
        assert streamed.code == grpc.StatusCode.INVALID_ARGUMENT and streamed.reason == "UNSUPPORTED", feature


@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream"])
async def test_missing_input_names_the_field(endpoint, backend, rpc):
    request = generate_pb2.GenerateRequest(model=endpoint.model)
    if rpc == "Generate":
        error = await rpc_error(backend.Generate(request, timeout=10))
    else:
        error = await stream_error(backend.GenerateStream(request, timeout=10))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, f"{error.code.name}: {error.message}"
    fields = {f for f, _ in error.field_violations}
    assert fields & INPUT_FIELDS, f"BadRequest field violations {error.field_violations} name no input field"


async def test_out_of_range_field_names_the_field(endpoint, backend):
    request = generate_request(endpoint, max_tokens=4)
    request.sampling.top_p = 1.5
    error = await rpc_error(backend.Generate(request, timeout=10))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, f"{error.code.name}: {error.message}"
    assert "sampling.top_p" in {f for f, _ in error.field_violations}, error.field_violations
