"""Test support, for tests and benchmarks only (production code never imports it): free ports, services as
processes or in this process, an in-process gateway, a local OpenAI-compatible upstream, and tiny models built
offline from a seed."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported lazily: the GGUF exporter works without torch, the process starters without transformers.
_EXPORTS = {
    "free_port": "forgeway.testing.processes",
    "wait_serving": "forgeway.testing.processes",
    "ServiceProcess": "forgeway.testing.processes",
    "echo_process": "forgeway.testing.processes",
    "ECHO_RETRIEVAL": "forgeway.testing.processes",
    "start_echoes": "forgeway.testing.processes",
    "run_cli": "forgeway.testing.processes",
    "one_line_error": "forgeway.testing.processes",
    "gateway_settings": "forgeway.testing.gateway",
    "start_gateway": "forgeway.testing.gateway",
    "stop_now": "forgeway.testing.gateway",
    "wait_until": "forgeway.testing.gateway",
    "LoopThread": "forgeway.testing.stacks",
    "InProcessStack": "forgeway.testing.stacks",
    "trainer_stack": "forgeway.testing.stacks",
    "inference_stack": "forgeway.testing.stacks",
    "LLAMA_CPP_SETTINGS": "forgeway.testing.upstream",
    "LocalUpstream": "forgeway.testing.upstream",
    "start_llama_server": "forgeway.testing.upstream",
    "tiny_model": "forgeway.testing.upstream",
    "build_tokenizer": "forgeway.testing.llama",
    "build_tiny_llama": "forgeway.testing.llama",
    "build_tiny_gguf": "forgeway.testing.gguf_export",
    "build_tiny_lora": "forgeway.testing.lora",
    "build_tiny_seq2seq": "forgeway.testing.seq2seq",
    "build_tiny_qa": "forgeway.testing.qa",
    "wordpiece_tokenizer": "forgeway.testing.bert",
    "build_tiny_bert": "forgeway.testing.bert",
    "build_tiny_bert_gguf": "forgeway.testing.bert",
    "llama_cpp_source": "forgeway.testing.convert",
    "convert_hf_to_gguf": "forgeway.testing.convert",
    "serve_engine": "forgeway.testing.rpc",
    "rpc_failure": "forgeway.testing.rpc",
    "violated_fields": "forgeway.testing.rpc",
    "console_stack": "forgeway.testing.console",
    "ConsoleStack": "forgeway.testing.console",
    "chromium_browser": "forgeway.testing.console",
    "chromium_path": "forgeway.testing.console",
    "browser_page": "forgeway.testing.console",
    "screenshot": "forgeway.testing.console",
    "build_embedding_model": "forgeway.demo.embedding",
    "build_reranker": "forgeway.demo.embedding",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from forgeway.testing.bert import build_tiny_bert, build_tiny_bert_gguf, wordpiece_tokenizer
    from forgeway.testing.console import (
        ConsoleStack, browser_page, chromium_browser, chromium_path, console_stack, screenshot,
    )
    from forgeway.testing.convert import convert_hf_to_gguf, llama_cpp_source
    from forgeway.testing.rpc import rpc_failure, serve_engine, violated_fields
    from forgeway.testing.gateway import gateway_settings, start_gateway, stop_now, wait_until
    from forgeway.testing.gguf_export import build_tiny_gguf
    from forgeway.testing.llama import build_tiny_llama, build_tokenizer
    from forgeway.testing.lora import build_tiny_lora
    from forgeway.testing.processes import (
        ServiceProcess, echo_process, free_port, one_line_error, run_cli, start_echoes, wait_serving,
    )
    from forgeway.testing.qa import build_tiny_qa
    from forgeway.testing.seq2seq import build_tiny_seq2seq
    from forgeway.testing.stacks import InProcessStack, LoopThread, inference_stack, trainer_stack
    from forgeway.testing.upstream import LLAMA_CPP_SETTINGS, LocalUpstream, start_llama_server, tiny_model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
