"""LlamaForge's Python API (`LlamaForge`, `Config`, `Model`, the backends and their registry) serving models through
Forgeway.

Configuration: config.py's docstring (JSON at LLAMAFORGE_CONFIG, else FORGEWAY_HOME/llamaforge/config.json, else
~/.llamaforge/config.json; dotted keys; LlamaForge's defaults; profiles; LLAMAFORGE_* overrides). Connection:
`LlamaForge(client=...)` or `target="host:port"`, else FORGEWAY_TARGET.

Mapping, LlamaForge -> Forgeway:

- add_model(name, path, backend, parameters) + config.save(): the config file only, as in LlamaForge; the backend,
  when not given, follows from the path (.gguf -> llama.cpp, gpt-* -> openai, hub id or transformers folder ->
  huggingface).
- backend "llama.cpp", "huggingface", "openai" (also llama_cpp, hf, openai_api): Forgeway's llamacpp, hf, openai.
- load_model(name[, backend, parameters]): ModelService.LoadModel(name, source=path, options=load parameters,
  backend=kind), unless Forgeway serves `name` already (then it is used as it is, and not unloaded by us); a served
  name with no config entry is used the same way.
- load parameters become LoadModel options, which the services validate and honour: llama.cpp n_ctx, n_gpu_layers,
  n_batch, n_threads, f16_kv, ...; hf device, torch_dtype, trust_remote_code, cache_dir, max_length; openai api_key,
  api_base, organization (the proxy keeps the key as a secret); context_length is n_ctx (llama.cpp) or max_length
  (hf). backends.<name>.default_parameters sit under each model's parameters; api_keys.openai
  (LLAMAFORGE_OPENAI_API_KEY) is the key of openai models that give none.
- generation parameters (temperature, top_p, top_k, min_p, max_tokens / max_new_tokens, stop, seed, repeat_penalty /
  repetition_penalty, presence/frequency_penalty, do_sample): the sampling of every Generate, the call's kwargs over
  the model's parameters over the config's `generation` defaults; a default is sent only where the serving backend
  honours it, while a parameter given explicitly is always sent (and refused where it cannot be honoured); unknown
  names are refused.
- generate / generate_stream: Generate / GenerateStream. unload_model(): UnloadModel, for models this object loaded.
- get_backend("llama.cpp")().load_model(path, parameters) / generate(prompt, parameters): the same calls, through
  FORGEWAY_TARGET.
- register_backend(name, cls) with the documented signature or LlamaForge's own (load_model(Model), generate(prompt,
  **kwargs)): runs in this process, as in LlamaForge; `forgeway serve custom --backend-class module:Class` serves
  such a class behind a gateway (forgeway.services.custom).

load_model returns False and logs the reason on failure (LlamaForge's contract); `last_error` keeps the typed error.
The modules are where LlamaForge has them (backends/base.py, llama_cpp.py, huggingface.py, openai_api.py, config.py,
model.py, forge.py): replacing `llamaforge` by `forgeway.compat.llamaforge` in an import keeps it working. Names are
imported lazily, so that `backends.base` (which the custom-backend service uses) never imports the SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BaseBackend": "forgeway.compat.llamaforge.backends.base",
    "Config": "forgeway.compat.llamaforge.config",
    "ForgewayBackend": "forgeway.compat.llamaforge.backends.forgeway",
    "HuggingFaceBackend": "forgeway.compat.llamaforge.backends.huggingface",
    "LlamaCppBackend": "forgeway.compat.llamaforge.backends.llama_cpp",
    "LlamaForge": "forgeway.compat.llamaforge.forge",
    "Model": "forgeway.compat.llamaforge.model",
    "OpenAIBackend": "forgeway.compat.llamaforge.backends.openai_api",
    "get_backend": "forgeway.compat.llamaforge.backends",
    "list_backends": "forgeway.compat.llamaforge.backends",
    "register_backend": "forgeway.compat.llamaforge.backends",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .backends import get_backend, list_backends, register_backend
    from .backends.base import BaseBackend
    from .backends.forgeway import ForgewayBackend
    from .backends.huggingface import HuggingFaceBackend
    from .backends.llama_cpp import LlamaCppBackend
    from .backends.openai_api import OpenAIBackend
    from .config import Config
    from .forge import LlamaForge
    from .model import Model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
