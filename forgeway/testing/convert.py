"""llama.cpp's own convert_hf_to_gguf.py, from the llama.cpp tree that the pinned llama-cpp-python sdist vendors, run on
checkpoints tests build: the GGUFs users get from llama.cpp for what the service's exporter does not write (BERT
encoders and cross-encoders). Needs torch and transformers (in the converter's process only)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

# What the converter needs of the llama.cpp tree: itself, its per-architecture modules and its own gguf-py.
CONVERTER_FILES = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")

# Runs the converter as its command line does, with one change: a tokenizer it does not recognise (it hashes how a
# tokenizer splits a sample text and looks the hash up in a table of published models, which a tokenizer trained here is
# not in) gets the pre-tokenizer name given, where the converter would stop.
_DRIVER = """
import sys
source, pre = sys.argv[1], sys.argv[2]
sys.path.insert(0, source)
sys.argv = [source + "/convert_hf_to_gguf.py", *sys.argv[3:]]
import convert_hf_to_gguf
from conversion.base import TextModel
recognise = TextModel.get_vocab_base_pre
def vocab_base_pre(self, tokenizer):
    try:
        return recognise(self, tokenizer)
    except NotImplementedError:
        return pre
TextModel.get_vocab_base_pre = vocab_base_pre
convert_hf_to_gguf.main()
"""


def llama_cpp_source() -> Path:
    """A llama.cpp tree holding convert_hf_to_gguf.py: FORGEWAY_LLAMA_CPP_SOURCE, else the converter's files cached
    (under XDG_CACHE_HOME/forgeway) from the llama-cpp-python sdist, fetched once with pip as `make venv` fetches it
    to build llama-server."""
    if configured := os.environ.get("FORGEWAY_LLAMA_CPP_SOURCE"):
        return Path(configured)
    version = importlib.metadata.version("llama_cpp_python")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "forgeway" / f"llama.cpp-{version}"
    if (cache / "convert_hf_to_gguf.py").exists():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent) as tmp:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d", tmp,
                               f"llama-cpp-python=={version}"], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"cannot fetch the llama-cpp-python {version} sdist: {done.stderr[-2000:]}")
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        staging = Path(tmp) / "llama.cpp"
        with tarfile.open(next(Path(tmp).glob("*.tar.gz"))) as sdist:
            members = [m for m in sdist.getmembers()
                       if m.name.startswith(prefix) and m.name[len(prefix):].startswith(CONVERTER_FILES)]
            for member in members:
                member.name = member.name[len(prefix):]
            sdist.extractall(staging, members=members, filter="data")
        try:
            staging.rename(cache)  # whole or not at all, should another process fetch it at the same time
        except OSError:
            if not (cache / "convert_hf_to_gguf.py").exists():
                raise
    return cache


def convert_hf_to_gguf(model_dir: str | Path, out_path: str | Path, outtype: str = "f32",
                       pre: str = "default") -> Path:
    """Convert the transformers checkpoint in ``model_dir`` into ``out_path`` with llama.cpp's converter (in a
    subprocess, its own gguf-py first on the path). An unrecognised tokenizer is written with the pre-tokenizer ``pre``
    (llama.cpp's "default": its WordPiece tokenizer, BERT's, has no pre-tokenizer variants)."""
    out = Path(out_path)
    command = [sys.executable, "-c", _DRIVER, str(llama_cpp_source()), pre, str(model_dir), "--outfile", str(out),
               "--outtype", outtype]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if done.returncode or not out.exists():
        raise RuntimeError(f"convert_hf_to_gguf.py failed on {model_dir}: {(done.stdout + done.stderr)[-3000:]}")
    return out
