"""UnslothEngine: the TRL trainer's jobs, datasets, methods, callbacks and export, with the model loaded and patched
by Unsloth (FastLanguageModel); says honestly whether Unsloth can run here, and stays NOT_SERVING when it can't."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import json
import os
from pathlib import Path

from forgeway.services.runtime.errors import InvalidArgument, Unsupported
from forgeway.services.runtime.generation import Task
from forgeway.services.runtime.hardware import Hardware, detect
from forgeway.services.runtime.modelstore import METADATA_FILE
from forgeway.services.training.engine import JobCancelled, JobContext, TrainedModel, TrainingEngine, TrainingFeatures
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
        for name in LIBRARIES:
            try:
                self._versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                pass
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
        hw = detect()
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
        import transformers

        from forgeway.services.trl.callbacks import JobCallback
        from forgeway.services.trl.engine import TRLEngine
        from forgeway.services.trl.plan import carve_eval, common_args

        from .loading import load_for_training

        plan = self._plan(spec)
        self._notices(spec, job)
        transformers.set_seed(spec.seed if spec.seed is not None else 42)
        train, evaluation = plan.train.rows, plan.evaluation.rows if plan.evaluation else None
        if evaluation is None and self.settings.eval_fraction > 0:
            train, evaluation = carve_eval(train, self.settings.eval_fraction, spec.seed or 42)
            job.log(f"evaluating on {len(evaluation)} rows carved from the training set")
        quantized = "4-bit nf4" if plan.spec.quantization != "none" else "16-bit"
        job.log(f"loading {spec.base_model} with unsloth FastLanguageModel ({self.verdict.device}, {quantized}, "
                f"{'LoRA' if spec.lora else 'full fine-tuning'})")
        model, tokenizer = load_for_training(plan, self.settings)
        callback = JobCallback(job, perplexity=plan.perplexity)
        output_dir = job.job_dir / "checkpoints"
        common = common_args(plan, str(output_dir), self.settings)
        # The TRL service builds the trainer (KTO unpairing, prompt truncation, rewards). Unsloth patched TRL's
        # trainers on import, and the model already carries its LoRA adapters, so no peft_config goes in.
        trainer = TRLEngine._method_trainer(self, plan, model, tokenizer, None, common, train, evaluation, callback)
        for noisy in (transformers.PrinterCallback, transformers.ProgressCallback):
            trainer.remove_callback(noisy)
        resume = job.resume_from if job.resume_from and job.resume_from.exists() else None
        if resume:
            job.log(f"resuming from {resume.name}")
        result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        if callback.stopped_at is not None:
            raise JobCancelled(callback.stopped_at, callback.last_checkpoint)
        metrics = {"train_loss": float(result.training_loss), **callback.metrics}
        if evaluation is not None:
            metrics.update({k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, (int, float))})
            metrics.update({k: v for k, v in callback.metrics.items() if k.startswith("eval_")})
        trained = TRLEngine._export(self, plan, job, trainer.model, tokenizer, metrics, output_dir)
        names = [trained.model_name, *(f"{trained.model_name}-{fmt}" for fmt in plan.formats[1:])]
        for name in names:
            self._relabel(self.models.path(name))
        return trained

    def _notices(self, spec: TrainSpec, job: JobContext) -> None:
        """What this run does differently from the request, said in the job's stream."""
        if spec.quantization in ("int8", "fp4"):
            job.log(f"quantization {spec.quantization} was asked; unsloth loads quantized models in 4-bit nf4, so "
                    "this run trains in nf4 (as ModelForge did)", level="warning")
        elif spec.quantization == "nf4" and not spec.double_quant:
            job.log("unsloth's 4-bit loading always uses double quantization", level="info")
        if self.on_cpu:
            job.log(self.verdict.reason, level="warning")

    def _relabel(self, folder: Path) -> None:
        """The TRL service's export records provider/backend "trl"; this model was trained by unsloth."""
        for filename, keys in ((METADATA_FILE, ("provider", "backend")), ("modelforge_config.json", ("provider",))):
            path = folder / filename
            if not path.is_file():
                continue
            data = json.loads(path.read_text())
            data.update({key: PROVIDER for key in keys})
            if filename == METADATA_FILE:
                data["unsloth_device"] = self.verdict.device
            scratch = path.with_name(f".{filename}.tmp")
            scratch.write_text(json.dumps(data, indent=2 if filename == METADATA_FILE else 4, sort_keys=True,
                                          default=str))
            os.replace(scratch, path)
