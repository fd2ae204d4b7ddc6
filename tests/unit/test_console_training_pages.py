"""The Train and Jobs pages' logic without a browser: providers and recommendations from a gateway's Capabilities,
the form as a TrainRequest, violations by section, and a job drawn from its events."""

from __future__ import annotations

from forgeway.core.profiles import advice, recommendation_to_proto
from forgeway.gateway.console.jobview import JobView, duration
from forgeway.gateway.console.trainform import (
    TrainForm, base_models, methods_for, providers, recommendation, recommended_settings, split_violations,
)
from forgeway.v1 import capabilities_pb2 as caps_pb2
from forgeway.v1 import common_pb2, jobs_pb2, models_pb2, train_pb2


def gateway_capabilities(trl_available: bool = True) -> caps_pb2.CapabilitiesResponse:
    hardware = caps_pb2.Hardware(device="cpu", profile="cpu", recommendation="CPU only",
                                 recommendations=[recommendation_to_proto(r) for r in advice("cpu").recommendations])
    trl = caps_pb2.CapabilitiesResponse(
        backend="trl", availability=caps_pb2.Availability(available=trl_available, reason="starting"),
        training=caps_pb2.TrainingFeatures(methods=[train_pb2.TRAINING_METHOD_SFT, train_pb2.TRAINING_METHOD_DPO],
                                           quantizations=[common_pb2.QUANTIZATION_4BIT_NF4]),
        hardware=hardware)
    return caps_pb2.CapabilitiesResponse(
        backend="gateway",
        endpoints=[caps_pb2.EndpointStatus(address="127.0.0.1:1", health="SERVING", breaker="closed", capabilities=trl)],
        models=[models_pb2.ModelInfo(name="tiny", task=common_pb2.TASK_TEXT_GENERATION),
                models_pb2.ModelInfo(name="tiny-t5", task=common_pb2.TASK_SUMMARIZATION)])


def test_providers_say_why_one_is_unavailable_and_where_it_falls_back():
    found = providers(gateway_capabilities())
    assert found["huggingface"].available and found["huggingface"].methods == ("sft", "dpo")
    assert found["huggingface"].quantizations == ("nf4",)
    unsloth = found["unsloth"]
    assert not unsloth.available and unsloth.reason == "no unsloth trainer behind this gateway"
    assert "falls back to trl" in unsloth.describe()
    down = providers(gateway_capabilities(trl_available=False))["huggingface"]
    assert not down.available and down.reason == "127.0.0.1:1: starting"


def test_tasks_other_than_text_generation_train_with_sft_only():
    hf = providers(gateway_capabilities())["huggingface"]
    assert methods_for(hf, "text-generation") == ["sft", "dpo"]
    assert methods_for(hf, "summarization") == ["sft"]


def test_the_recommended_model_comes_first_then_the_store_models_of_the_task():
    caps = gateway_capabilities()
    rec = recommendation(providers(caps)["huggingface"].hardware, "text-generation")
    names = base_models(rec, caps, "text-generation")
    assert names[0] == rec.model and names[-1] == "tiny" and "tiny-t5" not in names
    assert base_models(recommendation(None, "summarization"), caps, "summarization") == ["tiny-t5"]


def test_settings_are_prefilled_from_the_recommendation():
    rec = recommendation(providers(gateway_capabilities())["huggingface"].hardware, "text-generation")
    settings = recommended_settings(rec)
    expected = advice("cpu").recommendation(advice("cpu").recommendations[0].task).settings
    assert settings["batch_size"] == expected.batch_size and settings["lora_r"] == expected.lora_r
    assert settings["learning_rate"] == expected.learning_rate and settings["quantization"] == "none"
    assert settings["use_lora"] and settings["max_steps"] is None


def test_the_form_is_the_train_request_it_stands_for():
    form = TrainForm("summarization", "sft", "huggingface", " tiny-t5 ",
                     {"max_steps": 5, "batch_size": 2, "learning_rate": 0.001, "lora_r": 4, "lora_alpha": None},
                     use_lora=True, quantization="nf4", dataset_id="ds-0123456789abcdef", model_name="mine")
    req = form.request()
    assert req.base_model == "tiny-t5" and req.task == common_pb2.TASK_SUMMARIZATION
    assert req.method == train_pb2.TRAINING_METHOD_SFT and req.backend == train_pb2.TRAINING_BACKEND_TRL
    assert req.hyperparameters.max_steps == 5 and abs(req.hyperparameters.learning_rate - 0.001) < 1e-9
    assert not req.hyperparameters.HasField("epochs") and req.lora.r == 4 and req.lora.alpha == 0
    assert req.quantization.quantization == common_pb2.QUANTIZATION_4BIT_NF4
    assert req.dataset.dataset_id == "ds-0123456789abcdef" and req.output.model_name == "mine"
    assert TrainForm("text-generation", "sft", "unsloth", "m", {}, use_lora=False).request().backend == \
        train_pb2.TRAINING_BACKEND_UNSLOTH


def test_values_the_wire_cannot_carry_are_named_by_field():
    form = TrainForm("text-generation", "sft", "huggingface", "m", {"batch_size": -1, "max_steps": 2.5})
    req = form.request()
    assert [f for f, _ in form.problems] == ["hyperparameters.max_steps", "hyperparameters.batch_size"]
    assert not req.hyperparameters.HasField("batch_size")


def test_violations_are_split_and_the_missing_dataset_waits_for_an_upload():
    violations = [("lora.r", "must be in [1, 256]"), ("dataset.source", "one of ... is required"),
                  ("dataset.rows[3].completion", "missing or empty")]
    assert split_violations(violations, has_dataset=False) == (
        ["lora.r: must be in [1, 256]"], ["dataset.rows[3].completion: missing or empty"])
    assert split_violations(violations, has_dataset=True)[1][0] == "dataset.source: one of ... is required"


def event(sequence: int, **kind) -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(job_id="job-1", sequence=sequence, **kind)


def test_a_job_view_grows_with_its_events_and_skips_repeats():
    view = JobView(jobs_pb2.Job(id="job-1", state=jobs_pb2.JOB_STATE_QUEUED, method="sft", base_model="tiny",
                                backend="trl"))
    view.apply(event(1, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_RUNNING)))
    view.apply(event(0, fallback=jobs_pb2.Fallback(requested="unsloth", used="trl", reason="no GPU")))
    for step in (1, 2):
        view.apply(event(step + 1, progress=jobs_pb2.Progress(
            step=step, total_steps=4, loss=2.0 / step, learning_rate=1e-3, eta_seconds=65,
            metrics={"eval_loss": 1.5, "mean_token_accuracy": 0.1})))
    view.apply(event(3, progress=jobs_pb2.Progress(step=9, total_steps=4, loss=0.0)))  # a repeat: skipped
    view.apply(event(4, checkpoint=jobs_pb2.Checkpoint(step=2, path="/ckpt/2")))
    assert view.points == 2 and list(view.frame("loss")["loss"]) == [2.0, 1.0]
    assert view.frame("grad_norm").empty and str(view.frame("grad_norm")["step"].dtype) == "int64"
    assert list(view.eval_frame()["metric"]) == ["eval_loss", "eval_loss"]
    assert view.fallbacks == ["asked for unsloth, trained on trl: no GPU"] and view.checkpoints == ["step 2: /ckpt/2"]
    summary = view.summary()
    assert "running" in summary and "Step 2 of 4 (50%)" in summary and "ETA 1m 05s" in summary
    view.apply(event(5, artifact=jobs_pb2.Artifact(model_name="mine")))
    view.apply(event(6, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_SUCCEEDED, message="succeeded")))
    assert view.succeeded and view.finished and view.model_name == "mine"
    assert "ETA" not in view.summary() and "Trained model: `mine`" in view.summary()


def test_a_failed_job_shows_its_error():
    view = JobView(jobs_pb2.Job(id="job-2", state=jobs_pb2.JOB_STATE_RUNNING))
    view.apply(event(1, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_FAILED, message="out of memory")))
    assert view.finished and not view.succeeded and "Error: out of memory" in view.summary()
    assert view.logs[-1].endswith("[state] failed: out of memory")


def test_durations_read_as_hours_minutes_seconds():
    assert [duration(s) for s in (4.4, 65, 3725)] == ["4s", "1m 05s", "1h 02m 05s"]
