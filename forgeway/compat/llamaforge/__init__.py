"""LlamaForge's Python API (`LlamaForge`, `Config`, `BaseBackend`, `register_backend`) serving models through Forgeway.

The configuration file keeps LlamaForge's shape (JSON, default ~/.llamaforge/config.json: "models" by name with
path, backend, parameters and metadata; "default_model"; "default_backend"). Connection: `LlamaForge(client=...)`
or `target="host:port"`, else FORGEWAY_TARGET.

Mapping, LlamaForge -> Forgeway:

| LlamaForge | Forgeway |
|---|---|
| add_model(name, path, backend, parameters) + config.save() | the config file only (as LlamaForge) |
| backend "llama.cpp" / "llama_cpp", "huggingface" / "hf", "openai" / "openai_api" | backend kind llamacpp, hf, openai |
| backend "forgeway" (or a name the endpoint already serves) | no load: the served model is used as it is |
| load_model(name) | ModelService.LoadModel(name, source=path, options=load parameters + backend) unless already served |
| load parameters (n_ctx, n_gpu_layers, n_batch, n_threads, ...; context_length -> n_ctx) | LoadModel options |
| generation parameters (temperature, top_p, top_k, min_p, max_tokens / max_new_tokens, stop, seed, repeat_penalty, presence/frequency_penalty) | sampling of every Generate, per-call kwargs over the model's parameters |
| generate(prompt, **kwargs) / generate_stream(prompt, **kwargs) | Generate / GenerateStream |
| unload_model() | UnloadModel, for models this object loaded |
| register_backend(name, cls) with a BaseBackend subclass | runs in this process, not through Forgeway (as in LlamaForge) |

load_model returns False and logs the reason on failure (LlamaForge's contract); `last_error` keeps the typed error.
"""

from .backends import BaseBackend, ForgewayBackend, Model, get_backend, list_backends, register_backend
from .config import Config
from .forge import LlamaForge

__all__ = ["BaseBackend", "Config", "ForgewayBackend", "LlamaForge", "Model", "get_backend", "list_backends",
           "register_backend"]
