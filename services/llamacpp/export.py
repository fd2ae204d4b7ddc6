"""GGUF export of Llama-family transformers checkpoints (adapters merged first), with numpy and `gguf` only.

    python -m forgeway.services.llamacpp.export MODEL_DIR OUT.gguf [--outtype f32|f16|q8_0] [--base DIR]

Covers the Llama architecture with byte-level BPE tokenizers (what Forgeway's trainers produce, and Llama 3,
SmolLM-style models); other models go through llama.cpp's own convert_hf_to_gguf.py. Tensors are converted and
written one at a time, so memory stays near the size of the largest tensor.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from .checkpoint import Checkpoint
from .vocab import add_bpe_vocab

Q = gguf.GGMLQuantizationType
OUTTYPES = {
    "f32": (gguf.LlamaFileType.ALL_F32, Q.F32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, Q.F16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, Q.Q8_0),
}
ARCHITECTURES = ("llama", "mistral")  # same tensors; llama.cpp runs both as "llama"
EMBEDDINGS = "model.embed_tokens.weight"


def export_gguf(model_dir: str | Path, out_path: str | Path, outtype: str = "f16", *, base: str | Path | None = None,
                pre: str | None = None, name: str | None = None) -> Path:
    """Write the model (or LoRA adapter merged into `base`) in `model_dir` to `out_path` as GGUF; returns the path.

    Args:
        model_dir: a transformers model folder, or a PEFT LoRA adapter folder.
        out_path: the .gguf file to write (atomically: a partial file is renamed at the end).
        outtype: f32, f16 or q8_0 for the matrices; norms stay f32.
        base: the adapter's base model folder, when adapter_config.json's path is not local.
        pre: llama.cpp pre-tokenizer name, when the tokenizer's is not recognised.
        name: general.name in the GGUF (default: the folder name).
    """
    if outtype not in OUTTYPES:
        raise ValueError(f"outtype must be one of {', '.join(OUTTYPES)}, not {outtype!r}")
    model_dir, out_path = Path(model_dir), Path(out_path)
    ckpt = Checkpoint(model_dir, Path(base) if base else None)
    config = ckpt.config
    if config.get("model_type") not in ARCHITECTURES:
        raise ValueError(f"only Llama-family models ({', '.join(ARCHITECTURES)}) can be exported, "
                         f"not {config.get('model_type')!r}")
    file_type, qtype = OUTTYPES[outtype]
    plan = list(_plan(ckpt, config, qtype))
    n_vocab = ckpt.shape(EMBEDDINGS)[0]

    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    writer = gguf.GGUFWriter(partial, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    try:
        writer.add_name(name or model_dir.name)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        add_hparams(writer, config, n_vocab)
        add_bpe_vocab(writer, ckpt.tokenizer_dir, n_vocab, config, pre)
        for gguf_name, _, shape, tensor_type in plan:
            if tensor_type in (Q.F32, Q.F16):
                dtype = np.dtype(np.float32 if tensor_type == Q.F32 else np.float16)
                writer.add_tensor_info(gguf_name, shape, dtype, int(np.prod(shape)) * dtype.itemsize)
            else:
                byte_shape = gguf.quant_shape_to_byte_shape(shape, tensor_type)
                writer.add_tensor_info(gguf_name, byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape)),
                                       raw_dtype=tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, load, _, tensor_type in plan:
            writer.write_tensor_data(_encode(load(), tensor_type))
        writer.close()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out_path)
    return out_path


def _rope(config: dict[str, Any]) -> dict[str, Any]:
    """RoPE settings from transformers 5's rope_parameters or the older rope_theta/rope_scaling."""
    rope = dict(config.get("rope_scaling") or {})
    rope.update(config.get("rope_parameters") or {})
    rope.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    rope["rope_type"] = rope.get("rope_type") or rope.get("type") or "default"
    return rope


def add_hparams(writer: gguf.GGUFWriter, config: dict[str, Any], n_vocab: int) -> None:
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    rope = _rope(config)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads") or n_head)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_vocab_size(n_vocab)
    if rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif rope["rope_type"] not in ("default", "llama3"):
        raise ValueError(f"rope scaling {rope['rope_type']!r} is not supported; use llama.cpp's convert_hf_to_gguf.py")


def llama3_rope_factors(config: dict[str, Any]) -> np.ndarray:
    """Per-frequency factors of Llama 3.1's RoPE scaling (convert_hf_to_gguf's LlamaModel, in numpy)."""
    rope = _rope(config)
    dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (float(rope["rope_theta"]) ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_context / low, old_context / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(factors, dtype=np.float32)


def _plan(ckpt: Checkpoint, config: dict[str, Any], qtype: Q) -> Iterator[tuple[str, Any, tuple[int, ...], Q]]:
    """(GGUF name, loader, shape, tensor type) per tensor, blocks in order; Q and K permuted for llama.cpp's RoPE."""
    n_head = config["num_attention_heads"]
    n_head_kv = config.get("num_key_value_heads") or n_head
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    if _rope(config)["rope_type"] == "llama3":
        factors = llama3_rope_factors(config)
        yield gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", lambda: factors, factors.shape, Q.F32
    for hf_name in sorted(ckpt.names(), key=_order):
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for tensor {hf_name!r}")
        heads = n_head if hf_name.endswith("q_proj.weight") else n_head_kv if hf_name.endswith("k_proj.weight") else 0
        shape = ckpt.shape(hf_name)

        def load(hf_name=hf_name, heads=heads):
            array = ckpt.tensor(hf_name)
            return _permute(array, heads) if heads else array

        yield gguf_name, load, shape, _tensor_type(shape, qtype)


def _tensor_type(shape: tuple[int, ...], qtype: Q) -> Q:
    if len(shape) < 2:
        return Q.F32
    if qtype == Q.Q8_0 and shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0] != 0:
        return Q.F16
    return qtype


def _encode(array: np.ndarray, tensor_type: Q) -> np.ndarray:
    if tensor_type == Q.F32:
        return np.ascontiguousarray(array, dtype=np.float32)
    if tensor_type == Q.F16:
        return np.ascontiguousarray(array, dtype=np.float16)
    return gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), tensor_type)


def _order(name: str) -> tuple[int, str]:
    parts = name.split(".")
    layer = int(parts[2]) if len(parts) > 2 and parts[1] == "layers" and parts[2].isdigit() else -1
    return layer, name


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """HF's rotate-half Q/K rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf's LlamaModel.permute)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forgeway export-gguf", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="transformers model folder, or a LoRA adapter folder")
    parser.add_argument("out", type=Path, help="the .gguf file to write")
    parser.add_argument("--outtype", choices=sorted(OUTTYPES), default="f16", help="matrix type (default f16)")
    parser.add_argument("--base", type=Path, help="base model folder of an adapter (default: its adapter_config)")
    parser.add_argument("--pre", help="llama.cpp pre-tokenizer name, if the tokenizer's is not recognised")
    parser.add_argument("--name", help="general.name to record (default: the folder name)")
    args = parser.parse_args(argv)
    try:
        path = export_gguf(args.model_dir, args.out, args.outtype, base=args.base, pre=args.pre, name=args.name)
    except (OSError, ValueError, KeyError) as exc:
        print(f"forgeway export-gguf: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
