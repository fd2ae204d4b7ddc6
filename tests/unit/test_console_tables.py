"""What the Overview and Models pages put in their tables, from real contract messages."""

from __future__ import annotations

from forgeway.gateway.console.formatting import size
from forgeway.gateway.console.models import AUTO, load_backends, model_rows
from forgeway.gateway.console.overview import endpoint_rows, hardware_rows, profile_advice, recommendation_rows
from forgeway.v1 import capabilities_pb2 as caps_pb2
from forgeway.v1 import common_pb2, jobs_pb2, models_pb2, train_pb2


def endpoint(address: str, kind: str, *, available=True, hardware=True) -> caps_pb2.EndpointStatus:
    caps = caps_pb2.CapabilitiesResponse(
        backend=kind, availability=caps_pb2.Availability(available=available, reason="ready" if available else "no"),
        models=[models_pb2.ModelInfo(name="tiny", loaded=True), models_pb2.ModelInfo(name="big")],
        load=caps_pb2.Load(in_flight=2, queue_depth=5),
        rpcs=["forgeway.v1.ModelService/LoadModel"] if kind == "hf" else [])
    if hardware:
        caps.hardware.CopyFrom(caps_pb2.Hardware(
            device="cuda", accelerator="NVIDIA H200", accelerator_count=2, accelerator_memory_total=141 * 2**30,
            accelerator_memory_free=140 * 2**30, ram_total=64 * 2**30, ram_available=32 * 2**30, cpu_cores=16,
            disk_free=500 * 2**30, profile="high_end", recommendation="anything fits",
            recommendations=[caps_pb2.Recommendation(
                task=common_pb2.TASK_TEXT_GENERATION, model="org/model", alternatives=["org/a", "org/b"],
                hyperparameters=train_pb2.Hyperparameters(batch_size=8),
                quantization=train_pb2.QuantizationParams(quantization=common_pb2.QUANTIZATION_4BIT_NF4))]))
    return caps_pb2.EndpointStatus(address=address, health="SERVING", breaker="closed", capabilities=caps)


def test_endpoint_and_hardware_rows():
    caps = caps_pb2.CapabilitiesResponse(endpoints=[endpoint("10.0.0.1:1", "hf"), endpoint("10.0.0.2:1", "trl",
                                                                                             available=False,
                                                                                             hardware=False)])
    assert endpoint_rows(caps) == [
        ["10.0.0.1:1", "hf", "SERVING", "yes", "ready", "closed", 2, 5, "tiny, big (not loaded)"],
        ["10.0.0.2:1", "trl", "SERVING", "no", "no", "closed", 2, 5, "tiny, big (not loaded)"],
    ]
    assert hardware_rows(caps) == [["10.0.0.1:1", "cuda", "NVIDIA H200 x2", "140.0 GiB / 141.0 GiB",
                                    "32.0 GiB / 64.0 GiB", 16, "500.0 GiB", "high_end"]]
    assert profile_advice(caps) == "- **high_end** (10.0.0.1:1): anything fits"


def test_one_recommendation_row_per_distinct_advice_naming_its_endpoints():
    caps = caps_pb2.CapabilitiesResponse(endpoints=[endpoint("a:1", "hf"), endpoint("b:1", "trl")])
    assert recommendation_rows(caps) == [["a:1, b:1", "high_end", "text-generation", "org/model", "org/a, org/b",
                                          "batch_size=8", "", "nf4"]]


def test_model_rows_take_method_dataset_and_metrics_from_the_job_that_wrote_the_model():
    trained = models_pb2.ModelInfo(name="mine", task=common_pb2.TASK_TEXT_GENERATION, loaded=False, backend="hf",
                                   base_model="tiny", provider="huggingface", trained_by="trl")
    job = jobs_pb2.Job(id="job-1", state=jobs_pb2.JOB_STATE_SUCCEEDED, method="sft", dataset="ds-1",
                       artifact=jobs_pb2.Artifact(model_name="mine"),
                       progress=jobs_pb2.Progress(loss=1.25, metrics={"eval_loss": 1.5}))
    failed = jobs_pb2.Job(id="job-2", state=jobs_pb2.JOB_STATE_FAILED, method="dpo",
                          artifact=jobs_pb2.Artifact(model_name="other"))
    rows = model_rows([trained, models_pb2.ModelInfo(name="other")], [job, failed])
    assert rows[0][:10] == ["mine", "text-generation", "no", "hf", "tiny", "sft", "huggingface", "trl", "ds-1",
                            "eval_loss=1.5, loss=1.25"]
    assert rows[1][5] == "" and rows[1][8] == ""  # a failed job wrote nothing


def test_load_backends_are_the_kinds_serving_load_model():
    caps = caps_pb2.CapabilitiesResponse(endpoints=[endpoint("a:1", "hf"), endpoint("b:1", "trl")])
    assert load_backends(caps) == [AUTO, "hf"]


def test_sizes():
    assert [size(0), size(512), size(1536), size(3 * 2**30)] == ["", "512 B", "1.5 KiB", "3.0 GiB"]
