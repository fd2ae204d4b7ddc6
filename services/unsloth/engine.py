"""UnslothEngine: the TRL trainer's jobs, datasets, methods, callbacks and export, with the model loaded and patched
by Unsloth (FastLanguageModel); says honestly whether Unsloth can run here, and stays NOT_SERVING when it can't."""

from __future__ import annotations

import asyncio
import dataclasses

from forgeway.core.errors import InvalidArgument, Unsupported
from forgeway.core.generation import Task
from forgeway.server.hardware import Hardware, detect, installed_versions
from forgeway.services.training.engine import JobContext, TrainedModel, TrainingEngine, TrainingFeatures
from forgeway.services.training.spec import TrainSpec

from .architecture import check_architecture
from .availability import Verdict, import_failure, probe
from .settings import UnslothSettings

LIBRARIES = ("unsloth", "unsloth_zoo", "torch", "transformers", "trl", "peft", "datasets", "accelerate",
             "bitsandbytes", "triton")
# Unsloth's CPU backend trains text LoRA / full fine-tuning with SFTTrainer only.
CPU_METHODS = ("sft",)
# On CUDA: SFT and the RL trainers Unsloth patches in TRL that this service offers.
CUDA_METHODS = ("sft", "dpo", "grpo")
PROVIDER = "unsloth"


class UnslothUnavailable(RuntimeError):
    """Unsloth cannot train here; the service stays NOT_SERVING and Capabilities gives the reason."""


class UnslothEngine(TrainingEngine):
    """The `unsloth` trainer service (run it from .venv-unsloth: `make unsloth-env`)."""

    kind = "unsloth"
    Settings = UnslothSettings
    settings: UnslothSettings

    def __init__(self, settings: UnslothSettings):
        super().__init__(settings)
        self.verdict: Verdict | None = None
        self.loader = None  # the TRL service's DatasetLoader and RewardRegistry, built once unsloth is imported
        self.rewards = None
        self._versions: dict[str, str] = {}
        self._profile = "cpu"

    async def prepare(self) -> None:
        # A child process first: an unsloth that crashes or hangs on import takes the probe down, not the service.
        self.verdict = await asyncio.to_thread(probe, None, self.settings.probe_timeout_seconds, None,
                                               self.settings.cpu_fallback)
        if not self.verdict.available:
            raise UnslothUnavailable(self.verdict.reason)
        await asyncio.to_thread(self._import)

    def _import(self) -> None:
        try:
            import unsloth  # noqa: F401  (before transformers, trl and peft: it patches them as they load)
        except Exception as exc:
            self.verdict = import_failure(exc)
            raise UnslothUnavailable(self.verdict.reason) from exc
        import torch
        import transformers

        from forgeway.services.trl.datasets import DatasetLoader
        from forgeway.services.trl.rewards import RewardRegistry

        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        transformers.logging.set_verbosity_error()
        self.loader = DatasetLoader(self.allowed, self.datasets, self.settings.home / "cache" / "datasets")
        self.rewards = RewardRegistry()
        self._versions = installed_versions(LIBRARIES)
        self._profile = detect().profile

    def availability(self) -> tuple[bool, str]:
        if self.verdict is None:
            return False, "starting: probing unsloth"
        if not self.verdict.available:
            return False, self.verdict.reason
        if self.failure:
            return False, self.failure
        return True, self.verdict.reason

    @property
    def on_cpu(self) -> bool:
        return self.verdict is not None and self.verdict.device == "cpu"

    def features(self) -> TrainingFeatures:
        bnb = self.verdict is None or "bitsandbytes" in self.verdict.versions
        exports = ["adapter", "merged"]
        if self.ready:
            from forgeway.services.trl.export import gguf_exporter

            exports += ["gguf"] if gguf_exporter() else []
        return TrainingFeatures(methods=list(CPU_METHODS if self.on_cpu else CUDA_METHODS),
                                tasks=[Task.TEXT_GENERATION], lora=True, quantizations=["nf4"] if bnb else [],
                                export_formats=exports)

    def library_versions(self) -> dict[str, str]:
        return dict(self._versions)

    def hardware(self) -> Hardware:
        hw = detect(self.models.root)
        if self.on_cpu:
            hw.recommendation += " Unsloth runs its CPU fallback here (SFT only); a CUDA GPU is where it is fast."
        return hw

    def validate(self, spec: TrainSpec) -> None:
        self._plan(spec)

    def _plan(self, spec: TrainSpec):
        """Unsloth's own limits (task, method, architecture), then the TRL service's plan: datasets, knobs, names."""
        if spec.task is not Task.TEXT_GENERATION:
            raise InvalidArgument("task", f"the unsloth trainer trains text generation only, not {spec.task.value}; "
                                  f"use backend trl for {spec.task.value}")
        methods = self.features().methods
        if spec.method not in methods:
            where = "on its CPU fallback unsloth trains" if self.on_cpu else "this unsloth service trains"
            raise Unsupported(f"method {spec.method}", "unsloth", f"{where} {', '.join(methods)}; use backend trl")
        check_architecture(spec.base_model, self.resolve_base_model(spec.base_model), self.settings.architectures)
        if spec.quantization != "none":  # Unsloth loads 4-bit nf4 with double quantization, whatever was asked
            spec = dataclasses.replace(spec, quantization="nf4", double_quant=True)
        from forgeway.services.trl.plan import make_plan

        return make_plan(self, spec, self._profile)

    def run(self, spec: TrainSpec, job: JobContext) -> TrainedModel:
        from forgeway.services.trl.run import run_plan

        plan = self._plan(spec)
        self._notices(spec, job)
        return run_plan(self, plan, job, self._load, provider=PROVIDER)

    def _load(self, plan, job: JobContext):
        """FastLanguageModel loads and patches the model and adds the LoRA adapters itself: no peft config goes on
        to the trainer (Unsloth patched TRL's trainers when it was imported)."""
        from .loading import load_for_training

        quantized = "4-bit nf4" if plan.spec.quantization != "none" else "16-bit"
        job.log(f"loading {plan.spec.base_model} with unsloth FastLanguageModel ({self.verdict.device}, {quantized}, "
                f"{'LoRA' if plan.spec.lora else 'full fine-tuning'})")
        model, tokenizer = load_for_training(plan, self.settings)
        return model, tokenizer, None

    def _notices(self, spec: TrainSpec, job: JobContext) -> None:
        """What this run does differently from the request, said in the job's stream."""
        if spec.quantization in ("int8", "fp4"):
            job.log(f"quantization {spec.quantization} was asked; unsloth loads quantized models in 4-bit nf4, so "
                    "this run trains in nf4 (as ModelForge did)", level="warning")
        elif spec.quantization == "nf4" and not spec.double_quant:
            job.log("unsloth's 4-bit loading always uses double quantization", level="info")
        if self.on_cpu:
            job.log(self.verdict.reason, level="warning")
