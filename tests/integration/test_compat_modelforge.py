"""ModelForge's /finetune/detect answer from the Capabilities of a real gateway (echo or the TRL trainer behind it)."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from forgeway.client import Client
from forgeway.compat import modelforge
from forgeway.core.generation import Task
from forgeway.core.profiles import advice
from forgeway.server.hardware import detect as detect_here
from forgeway.testing import ServiceProcess
from forgeway.server.ports import free_port

KEYS = {"status_code", "profile", "task", "gpu_name", "gpu_total_memory_gb", "ram_total_gb", "available_diskspace_gb",
        "cpu_cores", "model_recommendation", "possible_options"}


@pytest.fixture(scope="module")
def gateway():
    with ServiceProcess("echo", "--model-name", "tiny-chat") as echo:
        env = {"FORGEWAY_BACKENDS": json.dumps({"echo": echo.address})}
        with ServiceProcess("gateway", "--http-port", "-1", env=env) as process:
            yield process


def test_detect_has_modelforges_shape(gateway):
    answer = modelforge.detect("text-generation", client=Client(gateway.address))
    assert KEYS <= set(answer)
    assert answer["status_code"] == 200 and answer["task"] == "text-generation"
    machine = detect_here()  # the gateway runs on this machine: no trainer behind it, so its own hardware is read
    assert answer["profile"] == machine.profile and answer["device_type"] == machine.device
    if machine.device == "cpu":
        assert answer["profile"] == "cpu" and answer["gpu_name"] is None and answer["gpu_total_memory_gb"] == 0
    assert answer["ram_total_gb"] > 0 and answer["cpu_cores"] >= 1 and answer["recommendation"]
    assert answer["available_diskspace_gb"] > 0
    curated = advice(machine.profile).recommendation(Task.TEXT_GENERATION)
    assert answer["possible_options"] == list(curated.alternatives) and answer["model_recommendation"] == curated.model
    summarization = modelforge.detect("summarization", target=gateway.address)
    assert summarization["possible_options"] == list(advice(machine.profile).recommendation(Task.SUMMARIZATION)
                                                     .alternatives)
    assert [p["available"] for p in answer["providers"]] == [False, False] and answer["available_providers"] == []
    with pytest.raises(ValueError, match="Invalid task"):
        modelforge.detect("image-classification", target=gateway.address)


def test_the_route_answers_json_and_form_posts(gateway):
    app = FastAPI()
    app.include_router(modelforge.router(target=gateway.address))
    http = TestClient(app)
    by_json = http.post("/api/finetune/detect", json={"task": "text-generation"})
    assert by_json.status_code == 200
    assert by_json.json()["model_recommendation"] == advice(detect_here().profile).recommendation(Task.TEXT_GENERATION).model
    by_form = http.post("/finetune/detect", data={"task": "text-generation"})
    assert by_form.status_code == 200 and KEYS <= set(by_form.json())
    assert http.post("/finetune/detect", json={"task": "nope"}).status_code == 400
    down = FastAPI()
    down.include_router(modelforge.router(Client(f"127.0.0.1:{free_port('127.0.0.1')}", retry=0)))
    assert TestClient(down).post("/finetune/detect", json={}).status_code == 503


@pytest.mark.trl
def test_detect_reads_the_trainers_machine_behind_the_gateway(tmp_path):
    from forgeway.testing import trainer_stack

    with trainer_stack(tmp_path) as stack:
        answer = modelforge.detect("text-generation", target=stack.target)
    assert answer["backend"] == "trl" and answer["profile"] == detect_here().profile and answer["cpu_cores"] >= 1
