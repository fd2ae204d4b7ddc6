"""Which tokenizers the GGUF exporter accepts, and how it names their pre-tokenizer for llama.cpp."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gguf", reason="the gguf package is not installed (the llamacpp extra)")

from forgeway.services.llamacpp.vocab import (  # noqa: E402
    LLAMA3_REGEX, QWEN2_REGEX, add_bpe_vocab, plain_chat_template, pre_tokenizer_name,
)


def _split_then_bytes(regex: str) -> dict:
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ]}


@pytest.mark.parametrize(("pre", "name"), [
    ({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}, "gpt-2"),
    (_split_then_bytes(LLAMA3_REGEX), "llama-bpe"),
    (_split_then_bytes(QWEN2_REGEX), "qwen2"),
    ({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                            {"type": "ByteLevel", "use_regex": True}]}, "smollm"),
])
def test_known_pre_tokenizers_get_their_llama_cpp_name(pre, name):
    assert pre_tokenizer_name(pre) == name


def test_an_unknown_pre_tokenizer_asks_for_the_name():
    with pytest.raises(ValueError, match="--pre"):
        pre_tokenizer_name(_split_then_bytes(r"\w+"))


def test_sentencepiece_style_tokenizers_are_refused_with_the_alternative(tmp_path):
    (tmp_path / "tokenizer.json").write_text(json.dumps({
        "model": {"type": "BPE", "byte_fallback": True, "vocab": {"a": 0}, "merges": []},
        "decoder": {"type": "Sequence", "decoders": []},
    }))
    with pytest.raises(ValueError, match="convert_hf_to_gguf"):
        add_bpe_vocab(None, tmp_path, 1, {})


def test_generation_tags_are_stripped_from_chat_templates():
    template = "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}"
    assert plain_chat_template(template) == "{% for m in messages %}{{ m.content }}{% endfor %}"
