"""AlignTune's factory API (`aligntune.core.backend_factory`) running training jobs through Forgeway.

`create_sft_trainer(...)` and `create_rl_trainer(...)` take AlignTune's argument names and defaults and raise its
ValueErrors; the trainer they return runs a Forgeway job on `train()` (via the SDK, so through the gateway or any
trainer endpoint). Connection: pass `client=Client(...)` or `target="host:port"`, else FORGEWAY_TARGET.

Mapping, AlignTune -> forgeway.v1 TrainRequest:

| AlignTune | Forgeway |
|---|---|
| model_name | base_model |
| dataset_name | a local file is uploaded (DatasetService) and trained by id; a local directory is sent as a path; anything else is a hub dataset name |
| backend "auto" / "trl" / "unsloth" | backend (auto: Unsloth where it can train, else TRL with a fallback event; `fallback=False` forbids falling back) |
| algorithm | method (and loss type): algorithms.py; ppo is a ValueError (TRL removed PPO: use grpo, rloo or dpo) |
| the algorithms' own keywords (gbmpo_divergence_type, boost_factor, N, sigma, ...) | MethodParams' algorithm messages (algorithms.py) |
| num_epochs, max_steps (-1 or None: epochs), batch_size, learning_rate, max_seq_length (not for online RL), max_samples | hyperparameters, dataset.max_samples |
| gradient_accumulation_steps, warmup_ratio, lr_scheduler, seed (42), save_steps, precision / fp16 / bf16 | hyperparameters |
| use_peft / peft_enabled, lora_r, lora_alpha, lora_dropout, lora_target_modules | lora (SFT default off, RL on, as in AlignTune) |
| quantization {"load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant"} / {"load_in_8bit"} | quantization |
| split, percent, column_mapping, config_name / subset, task_type | dataset selection, task |
| beta, loss_type, num_generations, max_prompt_length, max_completion_length | method_params |
| reward_functions + reward_function_weights; reward_model_name / reward_model_path | method_params.reward_functions; reward_model |
| run_name | output model name in the store (default: the job id) |
| output_dir | kept on the trainer object; the artifact lands in the model store (`save_model()` returns its path) |

Other AlignTune keyword arguments have no Forgeway counterpart: they raise a UserWarning naming them, never silently.
`get_backend_status()` and `list_backends()` answer from Capabilities (through the gateway: every trainer behind it).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from forgeway.client import Client, DatasetSource, LoRA
from forgeway.core.enums import BACKEND

from .algorithms import ONLINE, algorithm_knobs, method_for
from .backends import unsloth_disabled
from .trainer import ForgewayTrainer
from .types import task_for

log = logging.getLogger("forgeway.compat.aligntune")

# AlignTune keywords this facade maps (the rest warn).
PASSED = {"max_steps", "gradient_accumulation_steps", "warmup_ratio", "lr_scheduler", "seed", "save_steps",
          "precision", "fp16", "bf16", "use_peft", "peft_enabled", "lora_r", "lora_alpha", "lora_dropout",
          "lora_target_modules", "quantization", "split", "percent", "column_mapping", "task_type", "beta",
          "loss_type", "num_generations", "max_prompt_length", "max_completion_length", "run_name", "fallback",
          "client", "target", "eval_dataset", "config_name", "subset"}


def create_sft_trainer(model_name: str | None = None, dataset_name: str | None = None, backend: str = "auto",
                       output_dir: str = "./output", num_epochs: int = 3, batch_size: int = 4,
                       learning_rate: float = 2e-4, max_seq_length: int = 512, max_samples: int | None = None,
                       system_prompt: str | None = None, config: str | Path | dict | None = None,
                       **kwargs: Any) -> ForgewayTrainer:
    """AlignTune's create_sft_trainer: supervised fine-tuning through Forgeway."""
    model_name, dataset_name, backend, kwargs = _merge_config(config, model_name, dataset_name, backend, kwargs)
    _require(model_name=model_name, dataset_name=dataset_name)
    output_dir, num_epochs, batch_size, learning_rate, max_seq_length, max_samples = (
        kwargs.pop(k, v) for k, v in (("output_dir", output_dir), ("num_epochs", num_epochs),
                                      ("batch_size", batch_size), ("learning_rate", learning_rate),
                                      ("max_seq_length", max_seq_length), ("max_samples", max_samples)))
    if system_prompt is not None:
        kwargs["_ignored_system_prompt"] = system_prompt
    kwargs.setdefault("warmup_ratio", 0.1)
    owns_client = kwargs.get("client") is None
    client = _client(kwargs)
    request = _request(client, model_name, dataset_name, backend, "sft", "", num_epochs, kwargs.pop("max_steps", None),
                       batch_size, learning_rate, max_seq_length, max_samples, peft_default=False, kwargs=kwargs)
    return ForgewayTrainer(client, request, output_dir, "sft", owns_client=owns_client)


def create_rl_trainer(model_name: str | None = None, dataset_name: str | None = None, algorithm: str | None = None,
                      backend: str = "auto", output_dir: str = "./output", num_epochs: int = 3,
                      max_steps: int | None = 100, batch_size: int = 4, learning_rate: float = 2e-4,
                      max_seq_length: int = 512, max_samples: int | None = None, reward_model_name: str | None = None,
                      reward_model_path: str | None = None, reward_functions: list[str] | None = None,
                      reward_function_weights: list[float] | None = None, system_prompt: str | None = None,
                      config: str | Path | dict | None = None, **kwargs: Any) -> ForgewayTrainer:
    """AlignTune's create_rl_trainer: preference and RL training (DPO, GRPO and its loss variants, ...)."""
    model_name, dataset_name, backend, kwargs = _merge_config(config, model_name, dataset_name, backend, kwargs)
    algorithm = algorithm or kwargs.pop("algorithm", None) or kwargs.pop("algo", None)
    _require(model_name=model_name, dataset_name=dataset_name, algorithm=algorithm)
    output_dir, num_epochs, max_steps, batch_size, learning_rate, max_seq_length, max_samples = (
        kwargs.pop(k, v) for k, v in (("output_dir", output_dir), ("num_epochs", num_epochs), ("max_steps", max_steps),
                                      ("batch_size", batch_size), ("learning_rate", learning_rate),
                                      ("max_seq_length", max_seq_length), ("max_samples", max_samples)))
    method, loss_type = method_for(algorithm)
    key = str(getattr(algorithm, "value", algorithm)).lower()
    sources = [s for s in (reward_model_name, reward_model_path) if s is not None]
    if len(sources) > 1:
        raise ValueError(f"Specify exactly ONE reward source. Found {len(sources)}: "
                         f"reward_model_name={reward_model_name}, reward_model_path={reward_model_path}")
    if system_prompt is not None:
        kwargs["_ignored_system_prompt"] = system_prompt
    rewards = list(reward_functions or [])
    for i, reward in enumerate(rewards):
        if not isinstance(reward, str):
            raise ValueError(f"reward_functions[{i}]: a Python callable cannot run in a Forgeway trainer; name a "
                             "registered reward, or register yours under the forgeway.rewards entry points")
    weights = reward_function_weights or [0.0] * len(rewards)
    if len(weights) != len(rewards):
        raise ValueError("reward_function_weights must have one weight per reward function")
    knobs = algorithm_knobs(algorithm, method, kwargs)
    if method in ONLINE:  # AlignTune sizes the model with max_seq_length; TRL's online methods bound lengths with
        max_seq_length = None  # max_prompt_length and max_completion_length, which pass through
    owns_client = kwargs.get("client") is None
    client = _client(kwargs)
    request = _request(client, model_name, dataset_name, backend, method, kwargs.pop("loss_type", loss_type),
                       num_epochs, max_steps, batch_size, learning_rate, max_seq_length, max_samples,
                       peft_default=True, kwargs=kwargs)
    request.update(knobs, reward_functions=list(zip(rewards, weights, strict=True)),
                   reward_model=sources[0] if sources else "")
    return ForgewayTrainer(client, request, output_dir, key, owns_client=owns_client)


def _require(**values: Any) -> None:
    for name, value in values.items():
        if value is None:
            raise ValueError(f"{name} must be provided either as argument or in config")


def _client(kwargs: dict[str, Any]) -> Client:
    given = kwargs.pop("client", None)
    target = kwargs.pop("target", None)
    return given if given is not None else Client(target)


def _dataset(client: Client, name: str) -> Any:
    path = Path(name).expanduser()
    if path.is_file():
        return client.upload_dataset(path)
    if path.is_dir():
        return DatasetSource(path=str(path.resolve()))
    return DatasetSource.of(name)


def _request(client: Client, model_name: str, dataset_name: str, backend: str, method: str, loss_type: str,
             num_epochs: float, max_steps: int | None, batch_size: int, learning_rate: float, max_seq_length: int,
             max_samples: int | None, peft_default: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Train keyword arguments for the SDK from AlignTune's (see the module docstring)."""
    backend = backend.value if hasattr(backend, "value") else str(backend)
    if backend.lower() not in BACKEND.names:
        raise ValueError(f"'{backend}' is not a valid BackendType")
    ignored = sorted(k.removeprefix("_ignored_") for k in kwargs if k not in PASSED)
    if ignored:
        warnings.warn(f"no Forgeway counterpart, ignored: {', '.join(ignored)}", UserWarning, stacklevel=3)
    task_type = kwargs.get("task_type")
    task = task_for(task_type) if task_type is not None else None
    switched_off = unsloth_disabled()
    if switched_off and backend.lower() == "auto":  # AlignTune's TRL-only switches: auto means trl
        log.info("backend auto -> trl: %s", switched_off)
        backend = "trl"
    precision = kwargs.get("precision") or ("bf16" if kwargs.get("bf16") else "fp16" if kwargs.get("fp16") else None)
    lora = None
    if kwargs.get("use_peft", kwargs.get("peft_enabled", peft_default)):
        lora = LoRA(r=kwargs.get("lora_r", 16), alpha=kwargs.get("lora_alpha", 32),
                    dropout=kwargs.get("lora_dropout", 0.05 if peft_default else 0.1),
                    target_modules=tuple(kwargs.get("lora_target_modules") or ()))
    quant = kwargs.get("quantization") or {}
    quantization = ((quant.get("bnb_4bit_quant_type") or "nf4") if quant.get("load_in_4bit")
                    else "int8" if quant.get("load_in_8bit") else None)
    return {
        "base_model": model_name, "dataset": _dataset(client, dataset_name), "method": method,
        "task": task,
        "epochs": num_epochs, "max_steps": max_steps if max_steps and max_steps > 0 else None,
        "batch_size": batch_size, "learning_rate": learning_rate, "max_seq_length": max_seq_length,
        "max_samples": max_samples, "split": kwargs.get("split"),
        "config_name": kwargs.get("config_name") or kwargs.get("subset"), "percent": kwargs.get("percent"),
        "column_mapping": kwargs.get("column_mapping") or None,
        "gradient_accumulation_steps": kwargs.get("gradient_accumulation_steps"),
        "warmup_ratio": kwargs.get("warmup_ratio"), "lr_scheduler": kwargs.get("lr_scheduler", "cosine"),
        "seed": kwargs.get("seed", 42), "save_steps": kwargs.get("save_steps"), "precision": precision, "lora": lora,
        "quantization": quantization, "double_quant": bool(quant.get("bnb_4bit_use_double_quant")),
        "beta": kwargs.get("beta"), "loss_type": loss_type or "", "num_generations": kwargs.get("num_generations"),
        "max_prompt_length": kwargs.get("max_prompt_length"),
        "max_completion_length": kwargs.get("max_completion_length"), "output_name": kwargs.get("run_name") or "",
        "backend": backend.lower(), "allow_fallback": kwargs.get("fallback"),
        "eval_dataset": kwargs.get("eval_dataset"),
        "keep_checkpoint": True,  # AlignTune's trainers leave checkpoints in output_dir: save_checkpoint() needs one
    }


def _merge_config(config: str | Path | dict | None, model_name: str | None, dataset_name: str | None,
                  backend: str, kwargs: dict[str, Any]) -> tuple[str | None, str | None, str, dict[str, Any]]:
    """AlignTune's `config=`: a dict or YAML file, flat or nested (model/dataset(s)/train); arguments win."""
    if config is None:
        return model_name, dataset_name, backend, kwargs
    if not isinstance(config, dict):
        import yaml

        config = yaml.safe_load(Path(config).read_text()) or {}
    flat = {k: v for k, v in config.items() if not isinstance(v, (dict, list))}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    datasets = config.get("datasets") or [config.get("dataset") or {}]
    dataset = datasets[0] if isinstance(datasets, list) and datasets and isinstance(datasets[0], dict) else {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    flat.setdefault("model_name", model.get("name_or_path") or model.get("name"))
    flat.setdefault("dataset_name", dataset.get("name"))
    for key in ("max_samples", "split", "percent", "column_mapping"):
        if key in dataset:
            flat.setdefault(key, dataset[key])
    renames = {"epochs": "num_epochs", "per_device_batch_size": "batch_size"}
    for key, value in {**{k: v for k, v in model.items() if k.startswith(("lora_", "use_peft"))}, **train}.items():
        flat.setdefault(renames.get(key, key), value)
    merged = {k: v for k, v in flat.items() if v is not None}
    merged.update(kwargs)
    model_name = model_name or merged.pop("model_name", None)
    dataset_name = dataset_name or merged.pop("dataset_name", None)
    backend = merged.pop("backend", backend)
    merged.pop("model_name", None), merged.pop("dataset_name", None)
    return model_name, dataset_name, backend, merged
