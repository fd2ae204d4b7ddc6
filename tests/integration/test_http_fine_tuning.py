"""OpenAI's fine-tuning API end to end, through the official `openai` client: upload a jsonl, start a job, follow it,
then chat with the tuned model, all at the gateway's HTTP port, with real trl and hf services sharing one home."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import openai
import pytest

from forgeway.testing import ServiceProcess, free_port
from forgeway.v1 import backend_pb2_grpc, generate_pb2

pytestmark = [pytest.mark.trl, pytest.mark.hf, pytest.mark.slow]

EXAMPLES = [{"messages": [{"role": "user", "content": f"Where did cat {i} sit?"},
                          {"role": "assistant", "content": "On the mat."}]} for i in range(10)]  # the trainer's minimum


def wait_for(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[openai.OpenAI, Path, str]]:
    """trl and hf on one FORGEWAY_HOME, a gateway in front of both, and its OpenAI HTTP API. The gateway's periodic
    Capabilities refresh is an hour: whatever it learns during the tests, it learns from the calls themselves."""
    from forgeway.testing import build_tiny_llama

    home = tmp_path_factory.mktemp("http-tuning") / "home"
    base = build_tiny_llama(home / "base" / "tiny")
    with ServiceProcess("trl", "--torch-threads", "1", "--grace-seconds", "1", home=home, timeout=180) as trl, \
            ServiceProcess("hf", "--model", str(base), "--model-name", "tiny", "--torch-threads", "1",
                          "--grace-seconds", "1", home=home, timeout=180) as hf:
        http_port = free_port("127.0.0.1")
        env = {"FORGEWAY_BACKENDS": json.dumps({"trl": trl.address, "hf": hf.address}),
               "FORGEWAY_CAPABILITIES_REFRESH_SECONDS": "3600"}
        with ServiceProcess("gateway", "--http-port", str(http_port), "--grace-seconds", "1", home=home, env=env,
                           timeout=60) as gateway:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key="k", max_retries=0)
            wait_for(lambda: _ready(client), 60, "the gateway's HTTP API")
            yield client, base, gateway.address


def _ready(client: openai.OpenAI) -> bool:
    try:
        return any(m.id == "tiny" for m in client.models.list())
    except openai.APIError:
        return False


def test_an_unknown_model_is_not_found_with_a_trainer_in_the_pool(stack):
    """make up's pool (an inference backend and a trainer): 404 over HTTP, NOT_FOUND over gRPC, not 501."""
    client, _, address = stack
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found" and "tiny" in caught.value.body["message"]
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as rpc:
            backend_pb2_grpc.BackendServiceStub(channel).Generate(
                generate_pb2.GenerateRequest(model="no-such-model", prompt="hi"), timeout=30)
    assert rpc.value.code() == grpc.StatusCode.NOT_FOUND, rpc.value.details()


def test_fine_tuning_job_from_upload_to_tuned_model(stack):
    client, base, _ = stack
    upload = client.files.create(file=("cats.jsonl", "".join(json.dumps(e) + "\n" for e in EXAMPLES).encode()),
                                 purpose="fine-tune")
    assert upload.bytes > 0 and upload.purpose == "fine-tune" and upload.model_extra["rows"] == len(EXAMPLES)
    assert upload.id in [f.id for f in client.files.list()]
    assert client.files.retrieve(upload.id).model_extra["sha256"] == upload.model_extra["sha256"]

    job = client.fine_tuning.jobs.create(
        model=str(base), training_file=upload.id, suffix="shim", seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 2, "n_epochs": 1}}},
        extra_body={"backend": "trl"},
    )
    assert job.status in ("validating_files", "queued", "running") and job.training_file == upload.id
    done = wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job.id)).status
                    in ("succeeded", "failed", "cancelled") and j, 600, "the job to finish")
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model and done.fine_tuned_model.startswith("ft-tiny-shim-")
    # The moment the job says succeeded, its model answers through the same endpoint: no waiting for a refresh.
    reply = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=6,
                                           messages=[{"role": "user", "content": "Where did cat 3 sit?"}])
    assert reply.model == done.fine_tuned_model and reply.usage.completion_tokens > 0
    assert job.id in [j.id for j in client.fine_tuning.jobs.list()]

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert any(e.type == "metrics" for e in events)
    assert any(done.fine_tuned_model in e.message for e in events)
    assert [int(e.id.rsplit("-", 1)[1]) for e in events] == sorted((int(e.id.rsplit("-", 1)[1]) for e in events),
                                                                   reverse=True)
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(job.id)

    assert done.fine_tuned_model in [m.id for m in client.models.list()]
