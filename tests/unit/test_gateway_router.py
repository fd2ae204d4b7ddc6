"""Router: capability filter, health, breaker and load, with the reason for every endpoint it leaves out."""

from __future__ import annotations

from collections import Counter

import grpc
import pytest

from forgeway.gateway.endpoint import Endpoint, EndpointSpec, channel_options
from forgeway.gateway.router import GENERATE, Router
from forgeway.gateway.settings import BreakerConfig, GatewaySettings
from forgeway.gateway.training import plan_training
from forgeway.core.errors import (
    InvalidArgument, NotFound, ResourceExhausted, Unavailable, Unimplemented, Unsupported,
)
from forgeway.core.generation import GenerationRequest
from forgeway.v1 import capabilities_pb2, common_pb2, generate_pb2, models_pb2, train_pb2

ALL_RPCS = [f"forgeway.v1.BackendService/{m}" for m in ("Capabilities", "Generate", "GenerateStream", "Train")]


def caps(kind: str, *models: models_pb2.ModelInfo, logprobs: bool = False, queue: int = 0, methods=(),
         available: bool = True) -> capabilities_pb2.CapabilitiesResponse:
    return capabilities_pb2.CapabilitiesResponse(
        backend=kind, rpcs=ALL_RPCS, models=models,
        availability=capabilities_pb2.Availability(available=available, reason="ready" if available else "no CUDA"),
        generation=capabilities_pb2.GenerationFeatures(streaming=True, logprobs=logprobs, stop=True, adapters=True),
        training=capabilities_pb2.TrainingFeatures(methods=methods),
        load=capabilities_pb2.Load(queue_depth=queue),
    )


def model(name: str, adapters=(), task=common_pb2.TASK_TEXT_GENERATION, chat=True) -> models_pb2.ModelInfo:
    return models_pb2.ModelInfo(name=name, adapters=adapters, task=task, chat=chat, loaded=True)


def endpoint(key: str, answer: capabilities_pb2.CapabilitiesResponse | None, health: str = "SERVING") -> Endpoint:
    spec = EndpointSpec(key, f"127.0.0.1:{abs(hash(key)) % 50000 + 1000}", key)
    e = Endpoint(spec, BreakerConfig(failure_threshold=1), channel_options(1 << 20, 30), 5.0, 1.0)
    if answer is not None:
        e.update(answer)
    e.health = health
    return e


def request(**fields) -> GenerationRequest:
    fields.setdefault("prompt", "hi")
    return GenerationRequest.from_proto(generate_pb2.GenerateRequest(**fields))


async def test_routes_by_model_feature_and_backend_hint():
    a = endpoint("a", caps("echo", model("small")))
    b = endpoint("b", caps("hf", model("small"), model("big"), logprobs=True))
    router = Router([a, b], GatewaySettings())
    assert {r.endpoint.key for r in router.plan(request(model="big"))} == {"b"}
    assert [r.endpoint.key for r in router.plan(request(model="small", logprobs=True))] == ["b"]
    assert [r.endpoint.key for r in router.plan(request(model="small", backend="echo"))] == ["a"]
    with pytest.raises(NotFound, match="known: big, small"):
        router.plan(request(model="huge"))
    with pytest.raises(InvalidArgument, match="model 'small' is served by echo, not 'llamacpp'") as caught:
        router.plan(request(model="small", backend="llamacpp"))
    assert caught.value.field == "backend"
    with pytest.raises(Unsupported, match="grammar") as unsupported:
        router.plan(request(model="small", structured_output=generate_pb2.StructuredOutput(grammar="root ::= x")))
    message = unsupported.value.message
    # the first endpoint's reason once, as the message, then the others' reasons by endpoint
    assert message.count("grammar is not supported by the echo backend") == 1, message
    assert "(b: grammar is not supported by the hf" in message, message


async def test_task_and_chat_template_are_capabilities():
    s = endpoint("s", caps("hf", model("summ", task=common_pb2.TASK_SUMMARIZATION, chat=False)))
    router = Router([s], GatewaySettings())
    assert router.pick(request(model="summ", prompt=None, summarize=generate_pb2.SummarizeInput(document="d")))
    with pytest.raises(InvalidArgument, match="serves summarization") as caught:
        router.plan(request(model="summ"))
    assert caught.value.field == "task"


async def test_a_task_input_goes_only_to_endpoints_serving_the_model_with_that_task():
    summ = endpoint("s", caps("hf", model("m", task=common_pb2.TASK_SUMMARIZATION, chat=False)))
    qa = endpoint("q", caps("hf", model("m", task=common_pb2.TASK_EXTRACTIVE_QUESTION_ANSWERING, chat=False)))
    text = endpoint("t", caps("echo", model("m")))
    router = Router([summ, qa, text], GatewaySettings())
    document = generate_pb2.SummarizeInput(document="a long text")
    question = generate_pb2.QuestionAnswerInput(context="the cat sat", question="who sat?")
    for _ in range(8):  # load scoring picks among candidates: only the task's endpoint is ever one
        assert [r.endpoint.key for r in router.plan(request(model="m", prompt=None, summarize=document))] == ["s"]
        assert [r.endpoint.key for r in router.plan(request(model="m", prompt=None, question_answer=question))] == ["q"]
        assert [r.endpoint.key for r in router.plan(request(model="m"))] == ["t"]


async def test_unhealthy_and_broken_endpoints_are_listed_with_reasons():
    down = endpoint("down", caps("echo", model("m")), health="NOT_SERVING")
    broken = endpoint("broken", caps("echo", model("m")))
    broken.breaker.record_failure()  # threshold 1: open
    never = endpoint("never", None, health="UNKNOWN")
    with pytest.raises(Unavailable) as caught:
        Router([down, broken, never], GatewaySettings()).plan(request(model="m"))
    message = caught.value.message
    assert "down: health NOT_SERVING" in message and "broken: circuit breaker open" in message
    assert "never: no capabilities yet" in message
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE and caught.value.retry_after


async def test_busy_endpoints_are_resource_exhausted():
    a = endpoint("a", caps("echo", model("m")))
    a.in_flight = 2
    with pytest.raises(ResourceExhausted, match="a: at its limit of 2"):
        Router([a], GatewaySettings(limits={"endpoint_max_in_flight": 2})).plan(request(model="m"))


async def test_power_of_two_choices_prefers_the_less_loaded_and_the_adapter_holder():
    idle, busy, queued = (endpoint(k, caps("hf", model("m"), queue=5 if k == "queued" else 0))
                          for k in ("idle", "busy", "queued"))
    busy.in_flight = 4
    router = Router([idle, busy, queued], GatewaySettings())
    picks = Counter(router.pick(request(model="m")).endpoint.key for _ in range(200))
    # Two of three random pairs hold the idle one, which then wins; the most loaded (queue 5) never wins a pair.
    assert picks["queued"] == 0 and picks["idle"] > picks["busy"] > 0
    holder = endpoint("holder", caps("hf", model("m", adapters=["lora-a"])))
    holder.in_flight = 3
    router = Router([idle, holder], GatewaySettings())
    plan = router.plan(request(model="m", adapter="lora-a"))
    # Only the holder: the engine behind "idle" would answer NOT_FOUND for the adapter (check_servable, both places).
    assert [r.endpoint.key for r in plan] == ["holder"]
    with pytest.raises(NotFound, match="adapter 'lora-b' not found"):
        router.plan(request(model="m", adapter="lora-b"))


async def test_aliases_and_weighted_groups():
    a = endpoint("a", caps("echo", model("small")))
    b = endpoint("b", caps("echo", model("big")))
    settings = GatewaySettings(model_aliases={"gpt": "mix", "fast": "small"},
                               model_groups={"mix": [{"model": "fast", "weight": 3}, {"model": "big", "weight": 1}]})
    router = Router([a, b], settings)
    assert [(r.endpoint.key, r.model) for r in router.plan(request(model="fast"))] == [("a", "small")]
    firsts = Counter(router.plan(request(model="gpt"))[0].model for _ in range(400))
    assert set(firsts) == {"small", "big"} and firsts["small"] > firsts["big"]
    assert {r.model for r in router.plan(request(model="gpt"))} == {"small", "big"}, "every member is a fallback"


async def test_training_auto_prefers_unsloth_else_trl_with_a_fallback_note():
    trl = endpoint("trl", caps("trl", methods=[train_pb2.TRAINING_METHOD_SFT]))
    unsloth = endpoint("unsloth", caps("unsloth", methods=[train_pb2.TRAINING_METHOD_SFT], available=False),
                       health="NOT_SERVING")
    sft = train_pb2.TrainRequest(base_model="m", method=train_pb2.TRAINING_METHOD_SFT)
    chosen, note = plan_training([trl, unsloth], sft)
    assert [e.key for e in chosen] == ["trl"]
    assert note.requested == "unsloth" and note.used == "trl" and "unsloth: health NOT_SERVING" in note.reason
    strict = train_pb2.TrainRequest(base_model="m", method=train_pb2.TRAINING_METHOD_SFT,
                                    backend=train_pb2.TRAINING_BACKEND_UNSLOTH, allow_fallback=False)
    with pytest.raises(Unavailable, match="unsloth unavailable: .*fallback to trl is disabled"):
        plan_training([trl, unsloth], strict)
    unsloth.health = "SERVING"
    unsloth.update(caps("unsloth", methods=[train_pb2.TRAINING_METHOD_SFT]))
    chosen, note = plan_training([trl, unsloth], sft)
    assert [e.key for e in chosen] == ["unsloth"] and note is None
    dpo = train_pb2.TrainRequest(base_model="m", method=train_pb2.TRAINING_METHOD_DPO,
                                 backend=train_pb2.TRAINING_BACKEND_TRL)
    with pytest.raises(InvalidArgument, match="no trl trainer runs TRAINING_METHOD_DPO"):
        plan_training([trl, unsloth], dpo)


async def test_an_unknown_model_is_not_found_whatever_else_is_in_the_pool():
    """A trainer (no Generate) and an unhealthy trainer beside the inference backend: still NOT_FOUND, not
    UNIMPLEMENTED; a model known only to an unhealthy endpoint is UNAVAILABLE."""
    hf = endpoint("hf", caps("hf", model("demo")))
    trainer_caps = caps("trl", methods=[train_pb2.TRAINING_METHOD_SFT])
    del trainer_caps.rpcs[:]
    trainer_caps.rpcs.extend(["forgeway.v1.BackendService/Capabilities", "forgeway.v1.BackendService/Train"])
    trl = endpoint("trl", trainer_caps)
    sleepy = endpoint("sleepy", trainer_caps, health="NOT_SERVING")
    down = endpoint("down", caps("llamacpp", model("only-here")), health="NOT_SERVING")
    router = Router([hf, trl, sleepy, down], GatewaySettings())
    with pytest.raises(NotFound, match="model 'no-such-model' not found") as caught:
        router.plan(request(model="no-such-model"))
    assert "demo" in caught.value.message and "only-here" in caught.value.message
    with pytest.raises(Unavailable, match="down: health NOT_SERVING"):
        router.plan(request(model="only-here"))
    with pytest.raises(Unimplemented, match="no backend serves"):
        Router([trl], GatewaySettings()).plan(request(model="demo"))


async def test_max_tokens_past_the_context_is_rejected_before_routing():
    hf = endpoint("hf", caps("hf", models_pb2.ModelInfo(name="small", context_length=128, chat=True,
                                                       task=common_pb2.TASK_TEXT_GENERATION)))
    router = Router([hf], GatewaySettings())
    assert router.plan(request(model="small", sampling=generate_pb2.SamplingParams(max_tokens=127)))
    with pytest.raises(InvalidArgument, match="context length 128") as caught:
        router.plan(request(model="small", sampling=generate_pb2.SamplingParams(max_tokens=1_000_000_000)))
    assert caught.value.field == "max_tokens"


async def test_generate_rpc_must_be_served():
    a = endpoint("a", caps("echo", model("m")))
    assert Router([a], GatewaySettings()).pick(request(model="m"), GENERATE).endpoint is a
