"""Model folders the way the hub hands them out, built offline from a local model: a hub cache holding it under a
repo id, and a copy that ships its own modeling code (config.json auto_map, loaded only with trust_remote_code)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

REMOTE_MODEL_TYPE = "forgeway-remote-llama"
REMOTE_CLASS = "RemoteLlamaForCausalLM"

_CONFIGURATION = f'''"""A Llama config under a model type transformers does not know."""

from transformers import LlamaConfig


class RemoteLlamaConfig(LlamaConfig):
    model_type = "{REMOTE_MODEL_TYPE}"
'''

_MODELING = f'''"""The model class this folder ships: Llama's, under its own name."""

from transformers import LlamaForCausalLM

from .configuration_remote_llama import RemoteLlamaConfig


class {REMOTE_CLASS}(LlamaForCausalLM):
    config_class = RemoteLlamaConfig
'''


def build_hub_cache(cache_dir: str | Path, repo_id: str, model_dir: str | Path,
                    commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Put the files of ``model_dir`` into ``cache_dir`` as huggingface_hub caches ``repo_id`` at ``commit`` (its
    main revision), so that from_pretrained(repo_id, cache_dir=cache_dir) finds them offline; returns cache_dir."""
    cache = Path(cache_dir)
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return cache


def build_remote_code_llama(out_dir: str | Path, llama_dir: str | Path) -> Path:
    """A copy of a Llama folder whose config.json names its own config and model classes (auto_map), in Python
    files beside it: transformers loads it only with trust_remote_code=True, as a ``REMOTE_CLASS``."""
    out = Path(out_dir)
    shutil.copytree(llama_dir, out)
    (out / "configuration_remote_llama.py").write_text(_CONFIGURATION)
    (out / "modeling_remote_llama.py").write_text(_MODELING)
    config = json.loads((out / "config.json").read_text())
    config |= {"model_type": REMOTE_MODEL_TYPE, "architectures": [REMOTE_CLASS],
               "auto_map": {"AutoConfig": "configuration_remote_llama.RemoteLlamaConfig",
                            "AutoModelForCausalLM": f"modeling_remote_llama.{REMOTE_CLASS}"}}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out
