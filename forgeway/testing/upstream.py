"""llama-cpp-python's OpenAI-compatible server on a GGUF: the openai proxy's upstream in tests and benchmarks.

Needs `pip install 'llama-cpp-python[server]'`. For embeddings and reranking, llama.cpp's own server (the llama-server
binary `make venv` builds) is the upstream instead (start_llama_cpp_server).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from forgeway.server.ports import free_port

# How the proxy must be configured for llama-cpp-python's server: it ignores n and stream usage, takes a JSON
# schema inside a json_object response_format, and takes top_k, min_p, repeat_penalty and grammar as body fields.
# Its chatml-function-calling format fails tool_choice "required" and streams under "auto" (HTTP 500), and rejects
# content null beside tool calls; it has no per-request thinking switch (it ignores chat_template_kwargs).
LLAMA_CPP_SETTINGS = {
    "multiple_choices": False,
    "structured_output": "json_object_schema",
    "extra_body_params": {"top_k": "top_k", "min_p": "min_p", "repetition_penalty": "repeat_penalty",
                          "grammar": "grammar"},
    "tool_choice_required": False,
    "stream_tool_calls": False,
    "null_tool_call_content": False,
    "thinking": "none",
}  # fmt: skip
# The chat format of llama-cpp-python's server that takes tools (a grammar forces a named function's arguments).
TOOLS_CHAT_FORMAT = "chatml-function-calling"


@lru_cache(maxsize=1)
def tiny_model() -> tuple[Path, Path]:
    """The tiny Llama as (GGUF file, tokenizer.json), built once per process (needs torch)."""
    from forgeway.testing.gguf_export import build_tiny_gguf
    from forgeway.testing.llama import build_tiny_llama

    root = Path(tempfile.mkdtemp(prefix="forgeway-openai-upstream-"))
    model_dir = build_tiny_llama(root / "tiny-llama")
    return build_tiny_gguf(model_dir, root / "tiny.gguf"), model_dir / "tokenizer.json"


@dataclass
class LocalUpstream:
    """A running llama-cpp-python server process."""

    process: subprocess.Popen
    port: int
    model: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): it accepts connections and never answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def __enter__(self) -> LocalUpstream:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_llama_server(
    gguf: Path, *, model: str = "tiny", api_key: str | None = None, n_ctx: int = 1024, port: int | None = None,
    timeout: float = 90.0, chat_format: str | None = None,
) -> LocalUpstream:
    """Start `python -m llama_cpp.server` on a loopback port and wait until /v1/models answers.

    chat_format: llama-cpp-python's name for one (TOOLS_CHAT_FORMAT for tools); None: the GGUF's own template.
    """
    port = port or free_port("127.0.0.1")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", model,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--verbose", "False"]  # fmt: skip
    if api_key is not None:
        command += ["--api_key", api_key]
    if chat_format is not None:
        command += ["--chat_format", chat_format]
    return _started("llama_cpp.server", command, port, model, api_key, timeout)


def start_llama_cpp_server(
    gguf: Path, *, model: str = "tiny-embed", task: Literal["embedding", "rerank"] = "embedding",
    api_key: str | None = None, n_ctx: int = 512, port: int | None = None, timeout: float = 90.0,
) -> LocalUpstream:
    """Start llama.cpp's llama-server as an embedding upstream (/v1/embeddings, mean pooling, unit vectors) or a
    rerank one (/rerank, Cohere-shaped), on a loopback port, and wait until /v1/models answers.

    llama-cpp-python's server cannot stand in: it has no pooling setting (a decoder GGUF answers a vector per token),
    takes no token ids, and has no rerank endpoint. One slot: with several, this llama-server build scores some of a
    request's documents differently from the same documents sent one at a time (seen on the tiny GGUF, which has no
    classification head); with one, every score equals its one-document score.
    """
    from forgeway.services.llamacpp.llama_server import find_binary

    port = port or free_port("127.0.0.1")
    command = [str(find_binary(None)), "--model", str(gguf), "--alias", model, "--host", "127.0.0.1",
               "--port", str(port), "--ctx-size", str(n_ctx), "--parallel", "1", "--no-webui"]  # fmt: skip
    command += ["--embedding", "--pooling", "mean"] if task == "embedding" else ["--reranking"]
    if api_key is not None:
        command += ["--api-key", api_key]
    return _started("llama-server", command, port, model, api_key, timeout)


def _started(name: str, command: list[str], port: int, model: str, api_key: str | None,
             timeout: float) -> LocalUpstream:
    """Run an upstream's command, its output in a log file, and wait until its /v1/models answers."""
    log_path = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
    upstream = LocalUpstream(process, port, model, log_path)
    request = urllib.request.Request(f"{upstream.base_url}/models")
    if api_key is not None:
        request.add_header("Authorization", f"Bearer {api_key}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(request, timeout=2):
                return upstream
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    upstream.stop()
    raise TimeoutError(f"{name} not answering after {timeout:.0f}s: {log_path.read_text()[-2000:]}")
