"""forgeway.testing builds real tiny models offline and deterministically; forgeway.demo builds the demo model once."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gguf
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
)

from forgeway.demo.build import MARKER, build_demo_model
from forgeway.demo.chat_template import plain_chat_template
from forgeway.testing import (
    build_tiny_gguf,
    build_tiny_llama,
    build_tiny_qa,
    build_tiny_seq2seq,
    build_tokenizer,
)


def _digests(directory: Path) -> dict[str, str]:
    files = sorted(p for p in directory.iterdir() if p.is_file())
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("a") / "tiny-llama", seed=0)


@pytest.fixture(scope="session")
def tiny_gguf(tiny_llama: Path) -> Path:
    return build_tiny_gguf(tiny_llama, tiny_llama.parent / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def tokenizer(tiny_llama: Path):
    return AutoTokenizer.from_pretrained(tiny_llama)


def test_same_seed_gives_identical_files(tiny_llama: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    again = build_tiny_llama(tmp_path / "tiny-llama", seed=0)
    gguf_again = build_tiny_gguf(again, tmp_path / "tiny-llama.gguf")

    assert _digests(again) == _digests(tiny_llama)
    assert gguf_again.read_bytes() == tiny_gguf.read_bytes()


def test_other_seed_gives_other_weights_and_same_tokenizer(tiny_llama: Path, tmp_path: Path) -> None:
    other = build_tiny_llama(tmp_path / "tiny-llama", seed=1)

    digests, reference = _digests(other), _digests(tiny_llama)
    assert digests["model.safetensors"] != reference["model.safetensors"]
    assert digests["tokenizer.json"] == reference["tokenizer.json"]


def test_the_tokenizer_alone_is_the_tiny_llamas_tokenizer(tiny_llama: Path, tmp_path: Path) -> None:
    alone = build_tokenizer(tmp_path / "tokenizer")

    assert (alone / "tokenizer.json").read_bytes() == (tiny_llama / "tokenizer.json").read_bytes()
    assert AutoTokenizer.from_pretrained(alone).chat_template == AutoTokenizer.from_pretrained(tiny_llama).chat_template
    assert not (alone / "model.safetensors").exists()


def test_tokenizer_is_small_byte_level_bpe_with_chatml_specials(tokenizer) -> None:
    assert 512 <= len(tokenizer) <= 1024
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == tokenizer.bos_token == "<|endoftext|>"
    ids = tokenizer("<|im_start|>user\nHello, smith!<|im_end|>")["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[-1] == tokenizer.eos_token_id
    text = "Weather: 12 °C, ☃ and rain."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level: nothing is unknown


def test_chat_template_masks_exactly_the_assistant_turns(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Who lights the forge?"},
        {"role": "assistant", "content": "The smith lights the forge."},
        {"role": "user", "content": "When?"},
        {"role": "assistant", "content": "At dawn."},
    ]
    encoded = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]

    assert len(ids) == len(mask)
    assert tokenizer.decode([t for t, m in zip(ids, mask) if m]) == (
        "The smith lights the forge.<|im_end|>At dawn.<|im_end|>"
    )
    assert tokenizer.decode(ids).startswith("<|im_start|>system\nYou answer briefly.<|im_end|>\n")
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nWho lights the forge?<|im_end|>\n<|im_start|>assistant\n")
    assert "{%- generation" not in plain_chat_template(tokenizer.chat_template)
    assert "{%- generation" in tokenizer.chat_template


def test_tiny_llama_generates_and_stops_on_chat_end(tiny_llama: Path, tokenizer) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    config = model.config

    assert (config.model_type, config.num_hidden_layers) == ("llama", 2)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    inputs = tokenizer("The smith opens the workshop", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_gguf_holds_llama_metadata_and_permuted_attention(tiny_llama: Path, tiny_gguf: Path) -> None:
    reader = gguf.GGUFReader(tiny_gguf)
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {t.name: t for t in reader.tensors}
    weights = load_file(tiny_llama / "model.safetensors")

    assert fields["general.architecture"] == "llama"
    assert fields["llama.block_count"] == 2
    assert fields["llama.attention.head_count_kv"] == 2
    assert fields["llama.rope.dimension_count"] == 16
    assert fields["tokenizer.ggml.model"] == "gpt2"
    assert fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.eos_token_id"] == 2
    assert "{% generation" not in fields["tokenizer.chat_template"]
    assert len(fields["tokenizer.ggml.tokens"]) == 1024
    assert tensors["token_embd.weight"].data.shape == (1024, 64)
    v_gguf, v_hf = tensors["blk.1.attn_v.weight"].data, weights["model.layers.1.self_attn.v_proj.weight"]
    np.testing.assert_array_equal(v_gguf, v_hf)
    q_gguf, q_hf = tensors["blk.0.attn_q.weight"].data, weights["model.layers.0.self_attn.q_proj.weight"]
    assert not np.array_equal(q_gguf, q_hf)
    # Per head, llama.cpp wants rotary pairs interleaved (x0, x8, x1, x9, ...), not split in halves.
    head = q_hf[:16]
    np.testing.assert_array_equal(q_gguf[:16], np.stack([head[:8], head[8:]], axis=1).reshape(16, 64))


def test_gguf_f16_halves_the_matrices(tiny_llama: Path, tiny_gguf: Path, tmp_path: Path) -> None:
    half = build_tiny_gguf(tiny_llama, tmp_path / "tiny.f16.gguf", dtype="f16")
    tensors = {t.name: t for t in gguf.GGUFReader(half).tensors}

    assert tensors["blk.0.ffn_up.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert half.stat().st_size < 0.6 * tiny_gguf.stat().st_size
    with pytest.raises(ValueError, match="dtype"):
        build_tiny_gguf(tiny_llama, tmp_path / "x.gguf", dtype="q4")


def test_seq2seq_loads_with_auto_classes_and_summarizes(tmp_path: Path) -> None:
    model_dir = build_tiny_seq2seq(tmp_path / "t5", seed=0)
    assert _digests(model_dir) == _digests(build_tiny_seq2seq(tmp_path / "again" / "t5", seed=0))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)

    inputs = tokenizer("The smith opens the workshop at dawn. She lights the forge.", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=6)
    summary = tokenizer.decode(output[0], skip_special_tokens=True)

    assert model.config.is_encoder_decoder
    assert summary.strip()
    labels = tokenizer("The smith works.", return_tensors="pt")["input_ids"]
    assert torch.isfinite(model(**inputs, labels=labels).loss)


def test_qa_model_loads_with_auto_classes_and_points_into_the_context(tmp_path: Path) -> None:
    model_dir = build_tiny_qa(tmp_path / "bert-qa", seed=0)
    assert _digests(model_dir) == _digests(build_tiny_qa(tmp_path / "again" / "bert-qa", seed=0))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)

    question, context = "Who lights the forge?", "The smith lights the forge at dawn."
    inputs = tokenizer(question, context, return_tensors="pt", return_offsets_mapping=True)
    offsets = inputs.pop("offset_mapping")[0]
    sequence_ids = inputs.sequence_ids(0)
    with torch.no_grad():
        output = model(**inputs)
    in_context = torch.tensor([s == 1 for s in sequence_ids])
    start = int(output.start_logits[0].masked_fill(~in_context, -1e9).argmax())
    end = int(output.end_logits[0].masked_fill(~in_context, -1e9).argmax())

    assert inputs["token_type_ids"][0].tolist() == [0 if s != 1 else 1 for s in sequence_ids]
    assert sequence_ids.count(None) == 1  # the separator
    assert output.start_logits.shape == inputs["input_ids"].shape
    answer = context[int(offsets[start][0]) : int(offsets[max(start, end)][1])]
    assert answer and answer in context


def test_demo_model_build_is_cached_by_its_marker(tmp_path: Path) -> None:
    out = build_demo_model(tmp_path / "demo", max_seconds=60, max_steps=3)
    files = _digests(out)
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    expected = {"model.safetensors", "model.gguf", "tokenizer.json", "forgeway.json", MARKER}
    assert expected <= set(files)
    assert json.loads((out / MARKER).read_text())["steps"] == 3
    assert build_demo_model(out, max_seconds=60, max_steps=3) == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == written  # nothing rebuilt or rewritten
    assert _digests(out) == files
    # The marker alone is what counts: a folder holding only it is taken as built.
    marked = tmp_path / "marked"
    marked.mkdir()
    (marked / MARKER).write_text("{}")
    assert build_demo_model(marked, max_seconds=60, max_steps=3) == marked
    assert [p.name for p in marked.iterdir()] == [MARKER]
