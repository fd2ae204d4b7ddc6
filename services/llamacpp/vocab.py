"""Writes a byte-level BPE tokenizer (tokenizer.json), its special tokens and chat template into GGUF metadata."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import gguf

# llama.cpp pre-tokenizer names, by the split regex a tokenizer.json declares (convert_hf_to_gguf.py's table, abridged).
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")
_SPLIT_PRE = {LLAMA3_REGEX: "llama-bpe", QWEN2_REGEX: "qwen2"}
_GENERATION_TAG = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


def pre_tokenizer_name(pre: dict[str, Any] | None) -> str:
    """The llama.cpp pre-tokenizer matching tokenizer.json's pre_tokenizer; ValueError when none does."""
    steps = (pre or {}).get("pretokenizers") if (pre or {}).get("type") == "Sequence" else [pre or {}]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds[:1] == ["Split"] and kinds[-1] == "ByteLevel" and not steps[-1].get("use_regex", True):
        name = _SPLIT_PRE.get(steps[0].get("pattern", {}).get("Regex", ""))
        if name:
            return name
    raise ValueError(f"unrecognised pre-tokenizer {json.dumps(pre)[:200]}; pass the llama.cpp name with --pre")


def plain_chat_template(template: str) -> str:
    """A chat template without transformers' {% generation %} tags, which llama.cpp's Jinja does not know."""
    return _GENERATION_TAG.sub("", template)


def chat_template(folder: Path, tok_config: dict[str, Any]) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    return template if isinstance(template, str) else None


def _token_text(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def add_bpe_vocab(writer: gguf.GGUFWriter, folder: Path, n_vocab: int, model_config: dict[str, Any],
                  pre: str | None = None) -> None:
    """Token list, types, merges, special token ids, add-BOS flag and chat template, for `n_vocab` embedding rows."""
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    config_path = folder / "tokenizer_config.json"
    tok_config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    model = tokenizer["model"]
    decoder = (tokenizer.get("decoder") or {}).get("type")
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder != "ByteLevel":
        raise ValueError("only byte-level BPE tokenizers (GPT-2, Llama 3, Qwen, SmolLM style) can be exported; "
                         "convert SentencePiece models with llama.cpp's convert_hf_to_gguf.py")
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["content"]: t for t in tokenizer.get("added_tokens", [])}
    vocab.update({content: t["id"] for content, t in added.items()})
    by_id = {i: t for t, i in vocab.items()}
    if max(by_id) >= n_vocab:
        raise ValueError(f"the tokenizer has id {max(by_id)} but the model has only {n_vocab} embedding rows")
    tokens, types = [], []
    for i in range(n_vocab):
        text = by_id.get(i)
        if text is None:  # embedding rows past the tokenizer (padded vocab)
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(text)
        if text in added:
            types.append(gguf.TokenType.CONTROL if added[text].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre or pre_tokenizer_name(tokenizer.get("pre_tokenizer")))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model["merges"]])

    ids = {}
    for kind in ("bos", "eos", "unk", "pad"):
        text = _token_text(tok_config.get(f"{kind}_token"))
        if text in vocab:
            ids[kind] = vocab[text]
        elif isinstance(model_config.get(f"{kind}_token_id"), int):
            ids[kind] = model_config[f"{kind}_token_id"]
    for kind, token_id in ids.items():
        getattr(writer, f"add_{kind}_token_id")(token_id)
    writer.add_add_bos_token(_adds_bos(tokenizer, tok_config, ids.get("bos")))
    writer.add_add_eos_token(bool(tok_config.get("add_eos_token", False)))
    template = chat_template(folder, tok_config)
    if template:
        writer.add_chat_template(plain_chat_template(template))


def _adds_bos(tokenizer: dict[str, Any], tok_config: dict[str, Any], bos: int | None) -> bool:
    """Whether encoding prepends BOS: tokenizer_config says so, or the post-processor template starts with it."""
    if "add_bos_token" in tok_config:
        return bool(tok_config["add_bos_token"])
    post = tokenizer.get("post_processor") or {}
    steps = post.get("processors", []) if post.get("type") == "Sequence" else [post]
    for step in steps:
        if step.get("type") == "TemplateProcessing" and step.get("single"):
            first = step["single"][0]
            special = first.get("SpecialToken", {}).get("id")
            return special is not None and bos is not None and step.get("special_tokens", {}).get(special, {}).get(
                "ids", [None])[0] == bos
    return False
