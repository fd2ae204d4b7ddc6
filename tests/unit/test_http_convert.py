"""The shim's conversions: OpenAI bodies -> GenerateRequest / TrainRequest, contract replies -> OpenAI objects."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from forgeway.gateway.http import convert, convert_tuning
from forgeway.gateway.http.schemas import ChatCompletionRequest, CompletionRequest
from forgeway.gateway.http.schemas_tuning import FineTuningJobRequest
from forgeway.v1 import generate_pb2, jobs_pb2, train_pb2


def chat(**extra) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    return ChatCompletionRequest.model_validate(body)


def test_chat_body_maps_every_parameter():
    body = chat(max_completion_tokens=7, temperature=0.5, top_p=0.9, n=3, stop="END", seed=-1, presence_penalty=0.5,
                frequency_penalty=-0.5, logprobs=True, top_logprobs=2, top_k=4, min_p=0.1, repetition_penalty=1.1,
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
                adapter="a", backend="hf", priority=2, user="u")
    request = convert.chat_request(body)
    s = request.sampling
    assert (request.model, request.n, request.adapter, request.backend, request.priority) == ("m", 3, "a", "hf", 2)
    assert [(m.role, m.content) for m in request.messages] == [("user", "hi")]
    assert (s.max_tokens, s.top_k, list(s.stop)) == (7, 4, ["END"])
    assert s.temperature == pytest.approx(0.5) and s.min_p == pytest.approx(0.1)
    assert s.seed == 2**64 - 1  # signed OpenAI seeds map one-to-one onto the contract's unsigned ones
    assert request.logprobs and request.top_logprobs == 2
    assert json.loads(request.structured_output.json_schema) == {"type": "object"}


def test_unset_sampling_stays_unset():
    s = convert.chat_request(chat()).sampling
    assert not any(s.HasField(f) for f in ("max_tokens", "temperature", "top_p", "seed", "presence_penalty"))


def test_text_parts_are_joined_and_json_object_is_structured():
    body = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
                response_format={"type": "json_object"})
    request = convert.chat_request(body)
    assert request.messages[0].content == "ab" and request.structured_output.json_object


def test_completion_prompts_become_one_request_each_with_openai_defaults():
    body = CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"], "logprobs": 2, "n": 2})
    requests = convert.completion_requests(body)
    assert [r.prompt for r in requests] == ["a", "b"]
    assert all(r.sampling.max_tokens == 16 and r.logprobs and r.top_logprobs == 2 and r.n == 2 for r in requests)


@pytest.mark.parametrize(("body", "param"), [
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"logit_bias": {"1": 2}}, "logit_bias"),
    ({"audio": {"voice": "x"}}, "audio"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]}, "content"),
    ({"messages": [{"role": "user", "content": "x", "name": "bob"}]}, "name"),
])
def test_unsupported_parameters_are_rejected_by_name(body, param):
    with pytest.raises(ValidationError) as info:
        chat(**body)
    error = info.value.errors()[0]
    assert error["type"] == "unsupported_parameter" and error["ctx"]["param"] == param


def test_neutral_values_of_unsupported_parameters_are_accepted_and_change_nothing():
    neutral = chat(functions=None, store=False, logit_bias={}, modalities=["text"], function_call=None)
    assert convert.chat_request(neutral) == convert.chat_request(chat())


def test_completion_rejects_echo_suffix_and_best_of_above_n():
    for extra, param in (({"echo": True}, "echo"), ({"suffix": "x"}, "suffix"), ({"best_of": 3}, "best_of"),
                         ({"prompt": [1, 2]}, "prompt")):
        with pytest.raises(ValidationError) as info:
            CompletionRequest.model_validate({"model": "m", "prompt": "p", **extra})
        assert info.value.errors()[0]["ctx"]["param"] == param


def test_contract_fields_read_as_openai_parameters():
    param_of = convert.param_mapper(chat(max_completion_tokens=3))
    assert param_of("sampling.max_tokens") == "max_completion_tokens"
    assert param_of("sampling.temperature") == "temperature"
    assert param_of("multiple_choices") == "n"
    assert param_of("json_schema") == "response_format"
    assert param_of("structured_output.json_schema") == "response_format"
    assert param_of("prompt") == "messages"
    assert param_of("messages[1].role") == "messages[1].role"
    completions = convert.param_mapper(CompletionRequest(model="m", prompt="p"))
    assert completions("top_logprobs") == "logprobs" and completions("prompt") == "prompt"


def test_responses_take_openai_shape():
    response = generate_pb2.GenerateResponse(
        model="m", served_by="echo/1", usage=generate_pb2.Usage(prompt_tokens=2, completion_tokens=3),
        choices=[generate_pb2.Choice(index=0, text="ab", finish_reason=generate_pb2.FINISH_REASON_STOP_SEQUENCE,
                                     logprobs=[generate_pb2.TokenLogprob(token="a", logprob=-0.5, top_logprobs=[
                                         generate_pb2.TopLogprob(token="b", logprob=-1.0)])])],
    )
    body = convert.chat_completion(response, "chatcmpl-1", 5)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"] == {"role": "assistant", "content": "ab",
                                                                       "refusal": None}
    assert choice["logprobs"]["content"][0]["top_logprobs"][0]["token"] == "b"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    text = convert.text_completion([response, response], 1, "cmpl-1", 5)
    assert [c["index"] for c in text["choices"]] == [0, 1] and text["usage"]["total_tokens"] == 10
    assert text["choices"][0]["logprobs"] == {"tokens": ["a"], "token_logprobs": [-0.5],
                                              "top_logprobs": [{"b": -1.0}], "text_offset": [0]}


def test_fine_tuning_job_maps_onto_train_request():
    body = FineTuningJobRequest.model_validate({
        "model": "org/base", "training_file": "ds-1", "validation_file": "ds-2", "suffix": "mine", "seed": 3,
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2, "batch_size": "auto",
                                                              "learning_rate_multiplier": 2}}},
        "backend": "trl", "allow_fallback": False, "lora": {"r": 8}, "export": ["gguf"],
    })
    request = convert_tuning.train_request(body, base_learning_rate=1e-5)
    assert request.base_model == "org/base" and request.method == train_pb2.TRAINING_METHOD_DPO
    assert request.dataset.dataset_id == "ds-1" and request.eval_dataset.dataset_id == "ds-2"
    assert request.hyperparameters.epochs == 2 and not request.hyperparameters.HasField("batch_size")
    assert request.hyperparameters.learning_rate == pytest.approx(2e-5) and request.hyperparameters.seed == 3
    assert request.method_params.beta == pytest.approx(0.2)
    assert request.backend == train_pb2.TRAINING_BACKEND_TRL and request.allow_fallback is False
    assert request.lora.r == 8 and list(request.output.formats) == [train_pb2.EXPORT_FORMAT_GGUF]
    assert request.output.model_name.startswith("ft-base-mine-")


def test_fine_tuning_rejects_reinforcement_and_mismatched_method_blocks():
    with pytest.raises(ValidationError) as info:
        FineTuningJobRequest.model_validate({"model": "m", "training_file": "f", "method": {"type": "reinforcement"}})
    assert info.value.errors()[0]["type"] == "unsupported_parameter"
    with pytest.raises(ValidationError):
        FineTuningJobRequest.model_validate({"model": "m", "training_file": "f",
                                             "method": {"type": "dpo", "supervised": {}}})


def test_ppo_is_refused_naming_the_nearest_methods():
    with pytest.raises(ValidationError) as info:
        FineTuningJobRequest.model_validate({"model": "m", "training_file": "f", "method": {"type": "ppo"}})
    error = info.value.errors()[0]
    assert error["type"] == "invalid_parameter" and error["ctx"]["param"] == "method.type"
    assert "TRL removed PPO" in error["msg"] and "grpo" in error["msg"]


def test_train_fields_read_as_job_parameters():
    assert convert_tuning.train_param("base_model") == "model"
    assert convert_tuning.train_param("dataset.dataset_id") == "training_file"
    assert convert_tuning.train_param("hyperparameters.epochs") == "hyperparameters.n_epochs"
    assert convert_tuning.train_param("method_params.beta") == "hyperparameters.beta"


@pytest.mark.parametrize(("state", "status"), [
    (jobs_pb2.JOB_STATE_QUEUED, "queued"), (jobs_pb2.JOB_STATE_RUNNING, "running"),
    (jobs_pb2.JOB_STATE_SUCCEEDED, "succeeded"), (jobs_pb2.JOB_STATE_FAILED, "failed"),
    (jobs_pb2.JOB_STATE_CANCELLED, "cancelled"), (jobs_pb2.JOB_STATE_UNSPECIFIED, "validating_files"),
])
def test_job_states_map_to_openai_statuses(state, status):
    job = jobs_pb2.Job(id="job-1", state=state, method="sft", error="boom",
                       artifact=jobs_pb2.Artifact(model_name="tuned"))
    body = convert_tuning.job_object(job, 2e-5)
    assert body["status"] == status and body["fine_tuned_model"] == "tuned" and body["method"] == {"type": "supervised"}
    assert (body["error"] is not None) == (status == "failed")
    assert (body["finished_at"] is not None) == (status in ("succeeded", "failed", "cancelled"))


def test_a_jobs_dataset_and_asked_hyperparameters_read_back_in_openai_shape():
    job = jobs_pb2.Job(id="job-1", method="dpo", dataset="ds-0123456789abcdef", epochs=2, learning_rate=4e-5, seed=7)
    body = convert_tuning.job_object(job, 2e-5)
    assert body["training_file"] == "ds-0123456789abcdef" and body["validation_file"] is None and body["seed"] == 7
    assert body["hyperparameters"]["n_epochs"] == 2 and body["hyperparameters"]["batch_size"] is None
    assert body["hyperparameters"]["learning_rate_multiplier"] == pytest.approx(2.0)


def test_job_events_become_messages_and_metrics():
    progress = jobs_pb2.JobEvent(job_id="job-1", sequence=4,
                                 progress=jobs_pb2.Progress(step=2, total_steps=9, loss=1.5))
    body = convert_tuning.event_object(progress)
    assert body["type"] == "metrics" and body["data"]["train_loss"] == 1.5 and body["id"] == "ftevent-job-1-4"
    assert convert_tuning.sequence_of(body["id"], "job-1") == 4
    fallback = jobs_pb2.JobEvent(job_id="job-1", sequence=1,
                                 fallback=jobs_pb2.Fallback(requested="unsloth", used="trl", reason="no CUDA"))
    assert convert_tuning.event_object(fallback)["level"] == "warn"


@pytest.mark.parametrize("reason, openai_reason, own", [
    (generate_pb2.FINISH_REASON_STOP, "stop", "stop"),
    (generate_pb2.FINISH_REASON_STOP_SEQUENCE, "stop", "stop_sequence"),
    (generate_pb2.FINISH_REASON_LENGTH, "length", "length"),
    (generate_pb2.FINISH_REASON_CANCELLED, "stop", "cancelled"),
    (generate_pb2.FINISH_REASON_ERROR, "stop", "error"),
])
def test_finish_reasons_are_openais_with_forgeways_own_beside(reason, openai_reason, own):
    response = generate_pb2.GenerateResponse(model="m", choices=[generate_pb2.Choice(text="t", finish_reason=reason)])
    choice = convert.chat_completion(response, "chatcmpl-1", 0)["choices"][0]
    assert choice["finish_reason"] == openai_reason and choice["forgeway_finish_reason"] == own
    text = convert.text_completion([response], 1, "cmpl-1", 0)["choices"][0]
    assert text["finish_reason"] == openai_reason and text["forgeway_finish_reason"] == own


def test_an_aligntune_algorithm_and_its_knobs_map_onto_method_params():
    body = FineTuningJobRequest.model_validate({
        "model": "m", "training_file": "ds-0123456789abcdef",
        "method": {"type": "gbmpo", "gbmpo": {"hyperparameters": {
            "gbmpo": {"divergence": "probl2kl", "divergence_coefficient": 0.001}, "beta": 0.02}}}})
    request = convert_tuning.train_request(body, base_learning_rate=1e-5)
    assert request.method == train_pb2.TRAINING_METHOD_GBMPO
    assert request.method_params.gbmpo.divergence == "probl2kl"
    assert request.method_params.gbmpo.divergence_coefficient == pytest.approx(0.001)
    assert not request.method_params.HasField("pace")
    with pytest.raises(ValidationError, match="method.pace.hyperparameters\n  unknown knob 'rho_minimum'"):
        FineTuningJobRequest.model_validate({
            "model": "m", "training_file": "ds-0123456789abcdef",
            "method": {"type": "pace", "pace": {"hyperparameters": {"pace": {"rho_minimum": 0.9}}}}})
