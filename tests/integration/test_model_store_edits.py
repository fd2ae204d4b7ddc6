"""ModelService.DeleteModel and ExportModel through a real gateway: trl (which edits the store), hf and llama.cpp
sharing one FORGEWAY_HOME; the exported GGUF is loaded by the llama.cpp service and generates."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import grpc
import pytest

from forgeway.client import APIError, Client
from forgeway.core.modelstore import ModelStore
from forgeway.testing.gateway import gateway_settings, start_gateway, stop_now
from forgeway.testing.stacks import InProcessStack

pytestmark = [pytest.mark.slow, pytest.mark.trl, pytest.mark.hf, pytest.mark.llamacpp]

ADMIN, READER = "sk-store-admin", "sk-store-reader"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("store-edits")
    home = root / "home"
    ModelStore.write_metadata(build_tiny_llama(home / "models" / "tiny", seed=0), task="text-generation",
                              description="tiny model for the store tests", provider="huggingface", backend="trl",
                              method="sft", created="2026-01-02T03:04:05Z")

    def trl():
        from forgeway.services.trl.service import TRLService
        from forgeway.services.trl.settings import TRLSettings

        return TRLService(TRLSettings(home=home, host="127.0.0.1", port=0, metrics_port=-1, log_level="WARNING"))

    def hf():
        from forgeway.services.hf.service import HFService
        from forgeway.services.hf.settings import HFSettings

        return HFService(HFSettings(home=home, host="127.0.0.1", port=0, metrics_port=-1, torch_threads=1))

    def llamacpp():
        from forgeway.services.llamacpp.service import LlamaCppService
        from forgeway.services.llamacpp.settings import LlamaCppSettings

        return LlamaCppService(LlamaCppSettings(home=home, host="127.0.0.1", port=0, metrics_port=-1))

    with InProcessStack(trl, hf, llamacpp, root=root) as running:
        yield running


@pytest.fixture(scope="module")
def sdk(stack):
    with Client(stack.target) as client:
        yield client


def code_of(raised: pytest.ExceptionInfo) -> grpc.StatusCode:
    return raised.value.code


def test_bad_names_and_unknown_models_are_refused(sdk, stack):
    with pytest.raises(APIError) as bad:
        sdk.models.delete("../tiny")
    assert code_of(bad) == grpc.StatusCode.INVALID_ARGUMENT and "name" in dict(bad.value.field_violations)
    with pytest.raises(APIError) as missing:
        sdk.models.delete("no-such-model")
    assert code_of(missing) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(APIError) as missing_export:
        sdk.models.export("no-such-model")
    assert code_of(missing_export) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(APIError) as outtype:
        sdk.models.export("tiny", outtype="q2")
    assert code_of(outtype) == grpc.StatusCode.INVALID_ARGUMENT
    assert "options.outtype" in dict(outtype.value.field_violations)
    with pytest.raises(APIError) as fmt:
        sdk.models.export("tiny", "merged")
    assert code_of(fmt) == grpc.StatusCode.INVALID_ARGUMENT and "format" in dict(fmt.value.field_violations)
    assert (stack.root / "home" / "models" / "tiny" / "config.json").is_file()


def test_export_to_gguf_then_llamacpp_serves_it(sdk, stack):
    models = stack.root / "home" / "models"
    exported = sdk.models.export("tiny", output_name="tiny-q8", outtype="q8_0")
    assert exported.model.name == "tiny-q8" and exported.model.quantization == "gguf" and not exported.model.loaded
    assert Path(exported.path) == models / "tiny-q8" and exported.size_bytes > 0
    assert sorted(p.name for p in (models / "tiny-q8").iterdir()) == ["forgeway.json", "model.gguf"]
    metadata = json.loads((models / "tiny-q8" / "forgeway.json").read_text())
    assert metadata["format"] == "gguf" and metadata["exported_from"] == "tiny" and metadata["gguf_outtype"] == "q8_0"
    assert metadata["method"] == "sft" and metadata["provider"] == "huggingface"  # provenance carried over
    assert not [p.name for p in models.iterdir() if p.name.startswith(".")]  # no scratch folder left behind
    with pytest.raises(APIError) as taken:
        sdk.models.export("tiny", output_name="tiny-q8")
    assert code_of(taken) == grpc.StatusCode.FAILED_PRECONDITION and "already exists" in str(taken.value)

    loaded = sdk.models.load("tiny-q8", backend="llamacpp", options={"n_ctx": 256, "n_threads": 1})
    assert loaded.backend == "llamacpp" and loaded.loaded
    result = sdk.generate("tiny-q8", prompt="once upon a time", max_tokens=4, temperature=0)
    assert result.served_by.startswith("llamacpp/") and result.usage.completion_tokens > 0

    with pytest.raises(APIError) as busy:
        sdk.models.delete("tiny-q8")
    assert code_of(busy) == grpc.StatusCode.FAILED_PRECONDITION
    assert "tiny-q8 on llamacpp" in str(busy.value) and (models / "tiny-q8" / "model.gguf").is_file()
    sdk.models.unload("tiny-q8")
    sdk.models.delete("tiny-q8")
    assert not (models / "tiny-q8").exists()
    with pytest.raises(APIError) as gone:
        sdk.models.delete("tiny-q8")
    assert code_of(gone) == grpc.StatusCode.NOT_FOUND


def test_delete_is_refused_while_hf_serves_it_then_allowed_after_unload(sdk, stack):
    sdk.generate("tiny", prompt="hello", max_tokens=2, backend="hf")  # hf loads the store entry on demand
    with pytest.raises(APIError) as busy:
        sdk.models.delete("tiny")
    assert code_of(busy) == grpc.StatusCode.FAILED_PRECONDITION and "tiny on hf" in str(busy.value)
    sdk.models.unload("tiny")
    sdk.models.delete("tiny")
    assert not (stack.root / "home" / "models" / "tiny").exists()
    assert "tiny" not in [m.name for m in sdk.models.list()]


def test_only_a_training_key_may_edit_the_store(stack):
    def key(name: str, secret: str, **extra) -> dict:
        return {"name": name, "sha256": hashlib.sha256(secret.encode()).hexdigest(), **extra}

    settings = gateway_settings(stack.addresses, api_keys=[key("admin", ADMIN), key("reader", READER, train=False)])
    gateway = stack.loop.run(start_gateway(settings))
    try:
        with Client(f"127.0.0.1:{gateway.port}", api_key=READER) as reader:
            with pytest.raises(APIError) as denied:
                reader.models.delete("tiny")
            assert code_of(denied) == grpc.StatusCode.PERMISSION_DENIED
            with pytest.raises(APIError) as denied_export:
                reader.models.export("tiny")
            assert code_of(denied_export) == grpc.StatusCode.PERMISSION_DENIED
        with Client(f"127.0.0.1:{gateway.port}", api_key=ADMIN) as admin, pytest.raises(APIError) as missing:
            admin.models.delete("never-there")
        assert code_of(missing) == grpc.StatusCode.NOT_FOUND
    finally:
        stack.loop.run(stop_now(gateway))
