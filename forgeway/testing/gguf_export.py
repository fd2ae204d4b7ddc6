"""Write a llama.cpp GGUF from a Hugging Face Llama directory (safetensors + tokenizer.json).

Only numpy and the ``gguf`` package are needed: no torch, so a llama.cpp service can
call it too. It covers the models this package builds (Llama architecture, byte-level
BPE tokenizer); it is not a general replacement for llama.cpp's convert_hf_to_gguf.py.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from forgeway.testing.chat_template import plain_chat_template

_FILE_TYPES = {
    "f32": (gguf.LlamaFileType.ALL_F32, np.float32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, np.float16),
}
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def build_tiny_gguf(model_dir: str | Path, out_path: str | Path, dtype: str = "f32") -> Path:
    """Export the Llama model in ``model_dir`` to ``out_path`` as an F32 or F16 GGUF."""
    if dtype not in _FILE_TYPES:
        raise ValueError(f"dtype must be one of {sorted(_FILE_TYPES)}, not {dtype!r}")
    model_dir, out_path = Path(model_dir), Path(out_path)
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ValueError(f"only llama models can be exported, not {config.get('model_type')!r}")
    file_type, np_dtype = _FILE_TYPES[dtype]

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(out_path.name + ".partial")
    writer = gguf.GGUFWriter(tmp_path, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(model_dir.name)
    writer.add_file_type(file_type)
    _add_hparams(writer, config)
    _add_tokenizer(writer, model_dir, config["vocab_size"])
    for name, array in _gguf_tensors(model_dir, config):
        writer.add_tensor(name, array.astype(np_dtype if array.ndim > 1 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp_path.replace(out_path)
    return out_path


def _add_hparams(writer: gguf.GGUFWriter, config: dict[str, Any]) -> None:
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope scaling {rope.get('rope_type')!r} is not supported")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_vocab_size(config["vocab_size"])


def _add_tokenizer(writer: gguf.GGUFWriter, model_dir: Path, vocab_size: int) -> None:
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    model = tokenizer["model"]
    if model["type"] != "BPE":
        raise ValueError(f"only byte-level BPE tokenizers can be exported, not {model['type']!r}")

    vocab: dict[str, int] = dict(model["vocab"])
    special = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    added = {t["content"]: t["id"] for t in tokenizer.get("added_tokens", [])}
    vocab.update(added)
    by_id = {i: t for t, i in vocab.items()}
    if sorted(by_id) != list(range(len(by_id))) or len(by_id) > vocab_size:
        raise ValueError("tokenizer ids are not contiguous or exceed the model's vocab_size")
    tokens = [by_id[i] for i in range(len(by_id))]
    types = [
        gguf.TokenType.CONTROL
        if t in special
        else gguf.TokenType.USER_DEFINED
        if t in added
        else gguf.TokenType.NORMAL
        for t in tokens
    ]
    for i in range(len(tokens), vocab_size):  # embedding rows past the tokenizer, as in convert_hf_to_gguf
        tokens.append(f"[PAD{i}]")
        types.append(gguf.TokenType.UNUSED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

    writer.add_tokenizer_model("gpt2")
    # llama.cpp's "gpt-2" pre-tokenizer is the GPT-2 split regex, the one ByteLevel(use_regex=True) uses.
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (("bos_token", writer.add_bos_token_id), ("eos_token", writer.add_eos_token_id),
                     ("pad_token", writer.add_pad_token_id)):
        content = tok_config.get(key)
        if isinstance(content, dict):
            content = content.get("content")
        if content in vocab:
            add(vocab[content])
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    template = _chat_template(model_dir, tok_config)
    if template:
        writer.add_chat_template(plain_chat_template(template))


def _chat_template(model_dir: Path, tok_config: dict[str, Any]) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    template = tok_config.get("chat_template")
    return template if isinstance(template, str) else None


def _gguf_tensors(model_dir: Path, config: dict[str, Any]):
    """Yield (gguf name, array) in a stable order, Q and K permuted for llama.cpp's rotary layout."""
    n_head = config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads") or n_head
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    tensors = _read_safetensors(model_dir)
    for hf_name in sorted(tensors, key=_tensor_order):
        if hf_name.endswith("rotary_emb.inv_freq"):
            continue
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"no GGUF name for tensor {hf_name!r}")
        array = tensors[hf_name]
        if hf_name.endswith("q_proj.weight"):
            array = _permute(array, n_head)
        elif hf_name.endswith("k_proj.weight"):
            array = _permute(array, n_head_kv)
        yield name, np.ascontiguousarray(array)


def _tensor_order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    layer = int(parts[2]) if len(parts) > 2 and parts[1] == "layers" and parts[2].isdigit() else -1
    return layer, name


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half Q/K rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf's permute)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _read_safetensors(model_dir: Path) -> dict[str, np.ndarray]:
    """Every tensor of every *.safetensors file in ``model_dir``, as float32 numpy arrays."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    tensors: dict[str, np.ndarray] = {}
    for path in files:
        data = path.read_bytes()
        (header_len,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + header_len])
        body = memoryview(data)[8 + header_len :]
        for name, info in header.items():
            if name == "__metadata__":
                continue
            np_dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
            if np_dtype is None:
                raise ValueError(f"tensor {name!r} has unsupported dtype {info['dtype']}")
            start, end = info["data_offsets"]
            array = np.frombuffer(body[start:end], dtype=np.dtype(np_dtype).newbyteorder("<"))
            if info["dtype"] == "BF16":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            tensors[name] = array.astype(np.float32).reshape(info["shape"])
    return tensors
