"""The GGUF of a tiny model runs in llama.cpp and agrees with transformers token for token."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from forgeway.demo.build import build_demo_model
from forgeway.testing import build_tiny_gguf, build_tiny_llama

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the llamacpp extra)")

pytestmark = pytest.mark.llamacpp

PROMPTS = [
    "The smith opens the workshop",
    "Rain falls on the roof. In winter",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
]
SAMPLE = "The smith's 12 hooks cost 3.50 coins!\n\n  Snow\tfell ☃ <|im_start|>assistant\nYes.<|im_end|>"
NEW_TOKENS = 16


def _llama(path: Path):
    return llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=2, seed=0, verbose=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    model_dir = build_tiny_llama(tmp_path_factory.mktemp("parity") / "tiny-llama", seed=0)
    return model_dir, build_tiny_gguf(model_dir, model_dir / "model.gguf")


@pytest.fixture(scope="module")
def briefly_trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 4-layer demo shape after a few optimizer steps: peaked logits, realistic weights."""
    return build_demo_model(tmp_path_factory.mktemp("parity") / "demo", max_seconds=60, max_steps=30)


def _hf_greedy(model, tokenizer, prompt: str) -> list[int]:
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    return output[0, inputs["input_ids"].shape[1] :].tolist()


def _llamacpp_greedy(llm, prompt: str, stop_ids: set[int]) -> list[int]:
    """Greedy tokens, ending like transformers' generate: after a stop token or NEW_TOKENS tokens."""
    tokens: list[int] = []
    for token in llm.generate(llm.tokenize(prompt.encode(), add_bos=False, special=True), top_k=1, temp=0.0):
        tokens.append(token)
        if token in stop_ids or len(tokens) == NEW_TOKENS:
            break
    return tokens


def _assert_parity(model_dir: Path, gguf_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    stop_ids = set(model.generation_config.eos_token_id)
    llm = _llama(gguf_path)
    try:
        assert llm.tokenize(SAMPLE.encode(), add_bos=False, special=True) == tokenizer(SAMPLE)["input_ids"]
        for prompt in PROMPTS:
            assert _llamacpp_greedy(llm, prompt, stop_ids) == _hf_greedy(model, tokenizer, prompt), prompt
    finally:
        llm.close()


def test_tiny_gguf_greedy_tokens_match_transformers(tiny: tuple[Path, Path]) -> None:
    _assert_parity(*tiny)


def test_trained_demo_gguf_greedy_tokens_match_transformers(briefly_trained: Path) -> None:
    _assert_parity(briefly_trained, briefly_trained / "model.gguf")


def test_gguf_chat_completion_renders_chatml_and_stops_like_transformers(briefly_trained: Path) -> None:
    messages = [{"role": "user", "content": "Hello"}]
    tokenizer = AutoTokenizer.from_pretrained(briefly_trained)
    model = AutoModelForCausalLM.from_pretrained(briefly_trained)
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    generated = model.generate(**inputs, max_new_tokens=32, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    stopped = generated[-1].item() in model.generation_config.eos_token_id

    llm = _llama(briefly_trained / "model.gguf")
    try:
        reply = llm.create_chat_completion(messages=messages, max_tokens=32, temperature=0.0)
    finally:
        llm.close()
    choice = reply["choices"][0]

    assert reply["usage"]["prompt_tokens"] == inputs["input_ids"].shape[1]
    assert choice["message"]["content"] == tokenizer.decode(generated, skip_special_tokens=True)
    assert choice["finish_reason"] == ("stop" if stopped else "length")


def test_f16_gguf_loads_and_generates(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    model_dir, _ = tiny
    llm = _llama(build_tiny_gguf(model_dir, tmp_path / "tiny.f16.gguf", dtype="f16"))
    try:
        assert len(_llamacpp_greedy(llm, "The smith", stop_ids=set())) == NEW_TOKENS
    finally:
        llm.close()
