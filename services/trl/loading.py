"""Loading what a run trains: the precision for the hardware, quantized (QLoRA) or plain base models, LoRA configs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from peft import LoraConfig

from forgeway.core.errors import InvalidArgument, NotFound, Unsupported
from forgeway.core.modelstore import METADATA_FILE
from forgeway.services.training.spec import TrainSpec

PEFT_TASK_TYPES = {
    "AutoModelForCausalLM": "CAUSAL_LM",
    "AutoModelForSequenceClassification": "SEQ_CLS",
    "AutoModelForSeq2SeqLM": "SEQ_2_SEQ_LM",
    "AutoModelForQuestionAnswering": "QUESTION_ANS",
}


@dataclass(frozen=True)
class Precision:
    """Where and in which number format a run trains."""

    device: str  # cpu, cuda, mps
    bf16: bool
    fp16: bool

    @property
    def dtype(self) -> torch.dtype:
        """Weights are loaded in bf16 on a bf16 GPU run, else fp32 (mixed precision autocasts from fp32)."""
        return torch.bfloat16 if self.bf16 and self.device == "cuda" else torch.float32

    def trainer_args(self) -> dict:
        return {"use_cpu": self.device == "cpu", "bf16": self.bf16, "fp16": self.fp16}


def precision_for(requested: str) -> Precision:
    """auto: bf16 on GPUs that have it, else fp16 on CUDA, fp32 elsewhere; fp16 needs CUDA."""
    device = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    bf16_ok = device == "cuda" and torch.cuda.is_bf16_supported() or device == "cpu"
    if requested == "auto":
        if device == "cuda":
            return Precision(device, bf16_ok, not bf16_ok)
        return Precision(device, False, False)
    if requested == "fp16" and device != "cuda":
        raise Unsupported("hyperparameters.precision fp16", "trl", f"fp16 training needs a CUDA device; this is {device}")
    if requested == "bf16" and not bf16_ok:
        raise Unsupported("hyperparameters.precision bf16", "trl", f"this {device} device has no bf16")
    return Precision(device, requested == "bf16", requested == "fp16")


def quantization_config(spec: TrainSpec, precision: Precision) -> transformers.BitsAndBytesConfig | None:
    """bitsandbytes settings for QLoRA: 4-bit nf4/fp4 (double quant optional) or 8-bit."""
    if spec.quantization == "none":
        return None
    if spec.quantization == "int8":
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if precision.bf16 and precision.device == "cuda" else (
        torch.float16 if precision.fp16 else torch.float32)
    return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=spec.quantization,
                                           bnb_4bit_use_double_quant=spec.double_quant,
                                           bnb_4bit_compute_dtype=compute)


@dataclass(frozen=True)
class BaseModel:
    """A base model as the request named it and where its weights (and tokenizer) load from."""

    requested: str
    path: str  # local folder or hub id
    adapter: str | None = None  # a model-store adapter to merge into path first

    @classmethod
    def from_store(cls, requested: str, resolved: str) -> BaseModel:
        metadata_file = Path(resolved, METADATA_FILE)
        adapter_config = Path(resolved, "adapter_config.json")
        if metadata_file.is_file() and adapter_config.is_file():
            metadata = json.loads(metadata_file.read_text())
            base = metadata.get("base_model") or json.loads(adapter_config.read_text()).get("base_model_name_or_path")
            if not base:
                raise NotFound("model", f"{requested} (its adapter names no base model)")
            return cls(requested, str(base), adapter=resolved)
        return cls(requested, resolved)

    @property
    def tokenizer_path(self) -> str:
        return self.adapter or self.path


def check_cached(name: str, known: list[str]) -> None:
    """A hub id must be reachable or in the local hub cache; offline and uncached is NOT_FOUND before any job."""
    import huggingface_hub
    from huggingface_hub.utils import HfHubHTTPError

    if isinstance(huggingface_hub.try_to_load_from_cache(name, "config.json"), str):
        return
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise NotFound("model", f"{name} (not in the model store, not a local path, not in the hub cache; "
                       "the hub is offline)", known)
    try:
        huggingface_hub.model_info(name)
    except (huggingface_hub.errors.RepositoryNotFoundError, HfHubHTTPError):
        raise NotFound("model", name, known) from None


def load_tokenizer(base: BaseModel):
    tokenizer = transformers.AutoTokenizer.from_pretrained(base.tokenizer_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(base: BaseModel, model_class: str, precision: Precision,
               quantization: transformers.BitsAndBytesConfig | None = None, **kwargs):
    """The model to train; a model-store adapter is merged into its base first."""
    cls = getattr(transformers, model_class)
    if model_class == "AutoModelForSequenceClassification":
        kwargs.setdefault("num_labels", 1)
    if quantization is not None:
        if base.adapter:
            raise Unsupported("quantization", "trl", "a model-store adapter cannot be the base of a quantized run; "
                              "export the base with the 'merged' format first")
        kwargs.update(quantization_config=quantization, device_map={"": precision.device if precision.device != "cuda"
                                                                    else torch.cuda.current_device()})
    model = cls.from_pretrained(base.path, dtype=precision.dtype, **kwargs)
    if base.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, base.adapter).merge_and_unload()
    if getattr(model.config, "pad_token_id", None) is None and model.config.eos_token_id is not None:
        eos = model.config.eos_token_id
        model.config.pad_token_id = eos[0] if isinstance(eos, list) else eos
    return model


def lora_config(spec: TrainSpec, model_class: str, bias: str) -> LoraConfig | None:
    if spec.lora is None:
        return None
    if not 0 < spec.lora.alpha:
        raise InvalidArgument("lora.alpha", "must be positive")
    return LoraConfig(
        r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout, bias=bias,
        target_modules=list(spec.lora.target_modules) or "all-linear",
        task_type=PEFT_TASK_TYPES[model_class],
        # a QA head is trained whole and saved with the adapter (peft adds it to modules_to_save), so no LoRA on it
        exclude_modules=["qa_outputs"] if model_class == "AutoModelForQuestionAnswering" else None,
    )
