"""OpenAI's fine-tuning API end to end, through the official `openai` client: upload a jsonl, start a job, follow it,
then chat with the tuned model, all at the gateway's HTTP port, with real trl and hf services sharing one home."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from forgeway.gateway.http.testing import free_port, serve_process

pytestmark = [pytest.mark.trl, pytest.mark.hf, pytest.mark.slow]

EXAMPLES = [{"messages": [{"role": "user", "content": f"Where did cat {i} sit?"},
                          {"role": "assistant", "content": "On the mat."}]} for i in range(8)]


def wait_for(probe, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[openai.OpenAI, Path]]:
    """trl and hf on one FORGEWAY_HOME, a gateway in front of both, and its OpenAI HTTP API."""
    from forgeway.testing import build_tiny_llama

    home = tmp_path_factory.mktemp("http-tuning") / "home"
    base = build_tiny_llama(home / "base" / "tiny")
    with serve_process("trl", "--torch-threads", "1", "--grace-seconds", "1", home=home, timeout=180) as trl, \
            serve_process("hf", "--model", str(base), "--model-name", "tiny", "--torch-threads", "1",
                          "--grace-seconds", "1", home=home, timeout=180) as hf:
        http_port = free_port()
        env = {"FORGEWAY_BACKENDS": json.dumps({"trl": trl.address, "hf": hf.address}),
               "FORGEWAY_CAPABILITIES_REFRESH_SECONDS": "1"}
        with serve_process("gateway", "--http-port", str(http_port), "--grace-seconds", "1", home=home, env=env,
                           timeout=60):
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key="k", max_retries=0)
            wait_for(lambda: _ready(client), 60, "the gateway's HTTP API")
            yield client, base


def _ready(client: openai.OpenAI) -> bool:
    try:
        return any(m.id == "tiny" for m in client.models.list())
    except openai.APIError:
        return False


def test_fine_tuning_job_from_upload_to_tuned_model(stack):
    client, base = stack
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
    assert job.id in [j.id for j in client.fine_tuning.jobs.list()]

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert any(e.type == "metrics" for e in events)
    assert any(done.fine_tuned_model in e.message for e in events)
    assert [int(e.id.rsplit("-", 1)[1]) for e in events] == sorted((int(e.id.rsplit("-", 1)[1]) for e in events),
                                                                   reverse=True)
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(job.id)

    wait_for(lambda: any(m.id == done.fine_tuned_model for m in client.models.list()), 60,
             "the gateway to see the tuned model")
    reply = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=6,
                                           messages=[{"role": "user", "content": "Where did cat 3 sit?"}])
    assert reply.model == done.fine_tuned_model and reply.usage.completion_tokens > 0
