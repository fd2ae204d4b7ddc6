"""How one model loads on the hf service (device, dtype, own code, hub cache, context, pooling), and LoadModel's
options (LlamaForge's Hugging Face parameters) checked into it, each error naming its `options.*` field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from forgeway.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from forgeway.core.modelstore import confine

from .encoder_config import POOLING_MODES
from .settings import DEVICE_PATTERN, HFSettings, ModelSpec

# torch's own spellings of the weight dtypes a service loads in, with and without the "torch." prefix.
DTYPES = {"auto": "auto", "float32": "float32", "float": "float32", "fp32": "float32", "float16": "float16",
          "half": "float16", "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
BOOLEANS = {"true": True, "false": False}
CONTEXT_OPTIONS = ("max_length", "context_length")  # LlamaForge's name and Forgeway's for one limit
OPTIONS = ("device", "torch_dtype", "trust_remote_code", "cache_dir", *CONTEXT_OPTIONS, "pooling")


@dataclass(frozen=True)
class LoadOptions:
    """Everything besides source, task and quantization that decides how a model loads; two requests that agree on
    all of it share the loaded weights."""

    device: str = "cpu"  # a device present here, as torch names it ("cpu", "cuda:0", "mps")
    dtype: str = "auto"  # auto, float32, float16 or bfloat16
    trust_remote_code: bool = False
    cache_dir: str | None = None  # hub cache for hub ids (under the allowed roots when a request set it)
    context_length: int | None = None  # served context; None: the model's own
    pooling: str | None = None
    context_field: str = field(default="context_length", compare=False)  # the field an error about it names

    @classmethod
    def of_spec(cls, spec: ModelSpec, settings: HFSettings) -> LoadOptions:
        """A configured (or model-store) model: the service's device and dtype."""
        return cls(device=str(pick_device(settings.device, "device")), dtype=settings.dtype,
                   context_length=spec.context_length, pooling=spec.pooling)

    @classmethod
    def of_request(cls, options: dict[str, str], settings: HFSettings, roots: list[Path]) -> LoadOptions:
        """LoadModel's options; unset ones take the service's settings. Raises the table's error naming the field."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise InvalidArgument(f"options.{unknown[0]}", f"unknown option (known: {', '.join(OPTIONS)})")
        device = pick_device(options.get("device", settings.device), "options.device")
        dtype = settings.dtype
        if "torch_dtype" in options:
            dtype = DTYPES.get(options["torch_dtype"].strip().lower().removeprefix("torch."))
            if dtype is None:
                raise InvalidArgument("options.torch_dtype", f"{options['torch_dtype']!r} is not one of "
                                                             "auto, float32, float16, bfloat16 (torch.* spellings too)")
        trust = BOOLEANS.get(options.get("trust_remote_code", "false").strip().lower())
        if trust is None:
            raise InvalidArgument("options.trust_remote_code", f"{options['trust_remote_code']!r} is not true or false")
        if trust and not settings.allow_remote_code:
            raise PermissionDenied("options.trust_remote_code: this hf service does not run code that models ship; "
                                   "its operator allows it with the setting allow_remote_code",
                                   metadata={"field": "options.trust_remote_code"})
        cache_dir = None
        if "cache_dir" in options:
            if not options["cache_dir"].strip():
                raise InvalidArgument("options.cache_dir", "is empty")
            cache_dir = str(confine(options["cache_dir"], roots, "options.cache_dir"))
        context, context_field = _context(options)
        pooling = options.get("pooling") or None
        if pooling is not None and pooling not in POOLING_MODES:
            raise InvalidArgument("options.pooling", f"one of {', '.join(POOLING_MODES)}")
        return cls(device=str(device), dtype=dtype, trust_remote_code=trust, cache_dir=cache_dir,
                   context_length=context, pooling=pooling, context_field=context_field)

    @property
    def hub(self) -> dict:
        """What every from_pretrained call of this model takes."""
        return {"trust_remote_code": self.trust_remote_code, "cache_dir": self.cache_dir}


def _context(options: dict[str, str]) -> tuple[int | None, str]:
    given = {}
    for name in CONTEXT_OPTIONS:
        if name in options:
            value = options[name].strip()
            if not value.isdigit() or int(value) < 1:
                raise InvalidArgument(f"options.{name}", f"{options[name]!r} is not a positive number of tokens")
            given[name] = int(value)
    if len(set(given.values())) > 1:
        raise InvalidArgument("options.max_length", f"{given['max_length']} disagrees with context_length "
                                                    f"{given['context_length']}: they name one limit; give one")
    name = next(iter(given), "context_length")
    return given.get(name), f"options.{name}"


def present_devices() -> list[str]:
    """The devices torch can run on here."""
    found = ["cpu", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        found.append("mps")
    return found


def pick_device(name: str, field: str) -> torch.device:
    """auto (the first GPU present, else cpu), cpu, cuda, cuda:N or mps; one not present here is FAILED_PRECONDITION."""
    if not re.fullmatch(DEVICE_PATTERN, name.strip().lower()):
        raise InvalidArgument(field, f"{name!r} is not a device: auto, cpu, cuda, cuda:N or mps")
    name = name.strip().lower()
    present = present_devices()
    if name == "auto":
        return torch.device(next((d for d in present if d != "cpu"), "cpu"))
    if ("cuda:0" if name == "cuda" else name) not in present:
        raise FailedPrecondition(f"{field}: device {name} is not present on this machine (present: "
                                 f"{', '.join(present)})", metadata={"field": field})
    return torch.device(name)
