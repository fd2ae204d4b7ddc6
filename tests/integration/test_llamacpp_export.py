"""GGUF export round trip: transformers model or LoRA adapter -> GGUF -> llama.cpp, tokens as transformers'."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp extra)")
import gguf  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from forgeway.services.runtime.service import serving
from forgeway.services.llamacpp.settings import LlamaCppSettings  # noqa: E402
from forgeway.services.llamacpp.engine import LlamaCppEngine  # noqa: E402
from forgeway.services.llamacpp.export import export_gguf  # noqa: E402
from forgeway.server.server import RunningServer, start_server  # noqa: E402
from forgeway.testing import build_tiny_llama  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, generate_pb2  # noqa: E402

pytestmark = [pytest.mark.llamacpp, pytest.mark.hf]

PROMPTS = ["The quick brown fox", "Once upon a time there was", "The river carried the small boat past the old mill"]
CHAT = [{"role": "user", "content": "Where does the river go?"}]
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("export") / "tiny", seed=0)


@pytest.fixture(scope="module")
def hf(tiny: Path):
    return AutoModelForCausalLM.from_pretrained(tiny).eval(), AutoTokenizer.from_pretrained(tiny)


def hf_greedy(hf, input_ids: list[int]) -> str:
    model, tokenizer = hf
    with torch.no_grad():
        output = model.generate(torch.tensor([input_ids]), max_new_tokens=NEW_TOKENS, do_sample=False)
    return tokenizer.decode(output[0, len(input_ids):], skip_special_tokens=True)


@pytest.fixture(scope="module")
async def server(tiny: Path) -> AsyncIterator[RunningServer]:
    models = []
    for outtype in ("f32", "f16", "q8_0"):
        path = export_gguf(tiny, tiny.parent / f"tiny-{outtype}.gguf", outtype)
        models.append({"name": outtype, "source": str(path), "n_ctx": 256, "n_threads": 1})
    settings = LlamaCppSettings(host="127.0.0.1", port=0, metrics_port=-1, home=tiny.parent, models=models)
    running = await start_server(serving(LlamaCppEngine(settings)))
    await running.startup
    assert running.service.ready, running.service.failure
    yield running
    await running.drain(0)


@pytest.fixture
async def backend(server: RunningServer) -> AsyncIterator[backend_pb2_grpc.BackendServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield backend_pb2_grpc.BackendServiceStub(channel)


@pytest.mark.parametrize("outtype", ["f32", "f16"])
async def test_served_gguf_generates_what_transformers_generates(backend, hf, outtype):
    _, tokenizer = hf
    sampling = generate_pb2.SamplingParams(max_tokens=NEW_TOKENS)
    for prompt in PROMPTS:
        req = generate_pb2.GenerateRequest(model=outtype, prompt=prompt, sampling=sampling)
        reply = await backend.Generate(req, timeout=30)
        assert reply.choices[0].text == hf_greedy(hf, tokenizer(prompt)["input_ids"]), prompt
        streamed = [m async for m in backend.GenerateStream(req, timeout=30)]
        assert "".join(m.delta.text for m in streamed[:-1]) == reply.choices[0].text
    # llama.cpp always gives the template its thinking switch; unset, the service sends it off
    chat_ids = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, enable_thinking=False, tokenize=True,
                                             return_dict=True)
    messages = [generate_pb2.Message(**m) for m in CHAT]
    reply = await backend.Generate(generate_pb2.GenerateRequest(model=outtype, messages=messages, sampling=sampling,
                                                                logprobs=True), timeout=30)
    assert reply.usage.prompt_tokens == len(chat_ids["input_ids"])
    # The same tokens: compared as bytes, because a random model writes invalid UTF-8 and llama.cpp's chat path
    # replaces it with U+FFFD differently from transformers' decoder.
    generated = b"".join(lp.token_bytes for lp in reply.choices[0].logprobs).decode("utf-8", errors="replace")
    assert generated == hf_greedy(hf, chat_ids["input_ids"])


def test_q8_0_export_quantizes_the_matrices(tiny: Path, server: RunningServer):
    f16, q8 = tiny.parent / "tiny-f16.gguf", tiny.parent / "tiny-q8_0.gguf"
    assert q8.stat().st_size < 0.7 * f16.stat().st_size
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(q8).tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert {m.name for m in server.service.models()} >= {"q8_0"}


def _tensors(path: Path) -> dict[str, np.ndarray]:
    return {t.name: np.array(t.data) for t in gguf.GGUFReader(path).tensors}


def test_a_lora_adapter_is_merged_like_peft_merge_and_unload(tiny: Path, tmp_path: Path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny), config)
    peft_model.save_pretrained(tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny / name, tmp_path / "merged" / name)

    from_adapter = _tensors(export_gguf(tmp_path / "adapter", tmp_path / "adapter.gguf", "f32"))
    from_merged = _tensors(export_gguf(tmp_path / "merged", tmp_path / "merged.gguf", "f32"))
    base = _tensors(export_gguf(tiny, tmp_path / "base.gguf", "f32"))
    assert from_adapter.keys() == from_merged.keys()
    for name in from_merged:
        np.testing.assert_allclose(from_adapter[name], from_merged[name], atol=1e-6, err_msg=name)
    assert not np.allclose(from_adapter["blk.1.attn_q.weight"], base["blk.1.attn_q.weight"])
    np.testing.assert_array_equal(from_adapter["blk.1.attn_k.weight"], base["blk.1.attn_k.weight"])


def test_llama3_rope_scaling_exports_rope_factors_that_match_transformers(tiny: Path, tmp_path: Path):
    import llama_cpp

    scaled = tmp_path / "llama3-rope"
    shutil.copytree(tiny, scaled)
    config = json.loads((scaled / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    (scaled / "config.json").write_text(json.dumps(config))
    path = export_gguf(scaled, tmp_path / "llama3.gguf", "f32")
    assert "rope_freqs.weight" in _tensors(path)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(scaled).eval(), AutoTokenizer.from_pretrained(scaled)
    prompt = " ".join(PROMPTS) * 2  # long enough for positions where the scaled frequencies matter
    ids = tokenizer(prompt)["input_ids"]
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=1, verbose=False)
    try:
        got = []
        for token in llm.generate(ids, temp=0.0):
            got.append(token)
            if len(got) == NEW_TOKENS:
                break
    finally:
        llm.close()
    with torch.no_grad():
        expected = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False)[0, len(ids):]
    assert got == expected.tolist()


def test_the_command_line_exports_and_reports_errors(tiny: Path, tmp_path: Path):
    command = [sys.executable, "-m", "forgeway.services.llamacpp.export"]
    out = subprocess.run([*command, str(tiny), str(tmp_path / "cli.gguf"), "--outtype", "f16"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "cli.gguf") and (tmp_path / "cli.gguf").stat().st_size > 0
    missing = subprocess.run([*command, str(tmp_path / "nothing"), str(tmp_path / "x.gguf")], capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "nothing" in missing.stderr
    other = tmp_path / "gpt2"
    shutil.copytree(tiny, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "gpt2"}))
    refused = subprocess.run([*command, str(other), str(tmp_path / "y.gguf")], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 1 and "Llama-family" in refused.stderr
    assert not (tmp_path / "y.gguf").exists() and not list(tmp_path.glob("*.partial"))
