"""TRLEngine: trains with TRL (SFT, DPO, GRPO, KTO, RLOO, reward, ORPO, CPO, online DPO) and transformers (seq2seq
summarization, extractive QA), reporting through the job; artifacts land in the model store."""

from __future__ import annotations

import asyncio

from forgeway.core.generation import TRAINED_TASKS
from forgeway.server.hardware import detect, installed_versions
from forgeway.services.training.engine import JobContext, TrainedModel, TrainingEngine, TrainingFeatures
from forgeway.services.training.spec import DatasetSpec, TrainSpec

from .datasets import DatasetLoader
from .export import gguf_exporter
from .methods import METHODS
from .plan import RunPlan, make_plan
from .rewards import RewardRegistry
from .settings import TRLSettings

LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes")


class TRLEngine(TrainingEngine):
    """The `trl` trainer service."""

    kind = "trl"
    Settings = TRLSettings
    settings: TRLSettings

    def __init__(self, settings: TRLSettings):
        super().__init__(settings)
        self.rewards = RewardRegistry()
        self.loader = DatasetLoader(self.allowed, self.datasets, settings.home / "cache" / "datasets")
        self._versions: dict[str, str] = {}
        self._profile = "cpu"

    async def prepare(self) -> None:
        await asyncio.to_thread(self._import)

    def _import(self) -> None:
        import torch
        import transformers
        import trl  # noqa: F401  (fail here, not in the first job)

        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        transformers.logging.set_verbosity_error()
        self._versions = installed_versions(LIBRARIES)
        self._profile = detect().profile

    def availability(self) -> tuple[bool, str]:
        if self.failure:
            return False, self.failure
        return True, "ready" if self.ready else "starting"

    def features(self) -> TrainingFeatures:
        quantizations = ["nf4", "fp4", "int8"] if "bitsandbytes" in self._versions else []
        exports = ["adapter", "merged"] + (["gguf"] if gguf_exporter() else [])
        return TrainingFeatures(methods=list(METHODS), tasks=list(TRAINED_TASKS), lora=True, quantizations=quantizations,
                                export_formats=exports)

    def library_versions(self) -> dict[str, str]:
        return dict(self._versions)

    def validate(self, spec: TrainSpec) -> None:
        make_plan(self, spec, self._profile)

    def run(self, spec: TrainSpec, job: JobContext) -> TrainedModel:
        from .run import run_plan

        return run_plan(self, make_plan(self, spec, self._profile), job, self._load, provider="trl")

    def evaluate(self, name: str, dataset: DatasetSpec, generate_samples: int, max_new_tokens: int):
        """EvaluateModel (blocking): loss, perplexity and ROUGE/BLEU of store entry `name` on a dataset."""
        from .evaluate import evaluate_entry

        return evaluate_entry(self, name, dataset, generate_samples, max_new_tokens)

    def _load(self, plan: RunPlan, job: JobContext):
        from .loading import load_model, load_tokenizer, lora_config, quantization_config

        spec = plan.spec
        job.log(f"loading {spec.base_model} ({plan.model_class}, {plan.precision.device})")
        tokenizer = load_tokenizer(plan.base)
        model = load_model(plan.base, plan.model_class, plan.precision, quantization_config(spec, plan.precision))
        return model, tokenizer, lora_config(spec, plan.model_class, self.settings.lora_bias)
