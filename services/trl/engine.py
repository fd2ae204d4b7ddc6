"""TRLEngine: trains with TRL (SFT, DPO, GRPO, KTO, RLOO, reward, ORPO, CPO, online DPO) and transformers (seq2seq
summarization, extractive QA), reporting through the job; artifacts land in the model store."""

from __future__ import annotations

import asyncio
import importlib.metadata
import shutil
from pathlib import Path

from forgeway.services.runtime.generation import Task
from forgeway.services.runtime.hardware import Hardware, detect
from forgeway.services.training.engine import JobCancelled, JobContext, TrainedModel, TrainingEngine, TrainingFeatures
from forgeway.services.training.spec import TrainSpec

from .datasets import DatasetLoader, truncate_prompts
from .export import Provenance, export, gguf_exporter
from .methods import METHODS
from .plan import RECOMMENDED, RunPlan, carve_eval, common_args, make_plan
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
        for name in LIBRARIES:
            try:
                self._versions[name] = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                pass
        self._profile = detect().profile

    def availability(self) -> tuple[bool, str]:
        if self.failure:
            return False, self.failure
        return True, "ready" if self.ready else "starting"

    def features(self) -> TrainingFeatures:
        quantizations = ["nf4", "fp4", "int8"] if "bitsandbytes" in self._versions else []
        exports = ["adapter", "merged"] + (["gguf"] if gguf_exporter() else [])
        return TrainingFeatures(methods=list(METHODS), tasks=list(Task), lora=True, quantizations=quantizations,
                                export_formats=exports)

    def library_versions(self) -> dict[str, str]:
        return dict(self._versions)

    def hardware(self) -> Hardware:
        hw = detect()
        rec = RECOMMENDED.get(hw.profile, RECOMMENDED["cpu"])
        hw.recommendation += (f" Training defaults here: batch_size {rec['batch_size']}, gradient_accumulation_steps "
                              f"{rec['gradient_accumulation_steps']}, max_seq_length {rec['max_seq_length']}, "
                              f"quantization {rec['quantization']}.")
        return hw

    def validate(self, spec: TrainSpec) -> None:
        make_plan(self, spec, self._profile)

    def run(self, spec: TrainSpec, job: JobContext) -> TrainedModel:
        import transformers

        from .callbacks import JobCallback
        from .loading import load_model, load_tokenizer, lora_config, quantization_config

        plan = make_plan(self, spec, self._profile)
        transformers.set_seed(spec.seed if spec.seed is not None else 42)
        train, evaluation = plan.train.rows, plan.evaluation.rows if plan.evaluation else None
        if evaluation is None and self.settings.eval_fraction > 0:
            train, evaluation = carve_eval(train, self.settings.eval_fraction, spec.seed or 42)
            job.log(f"evaluating on {len(evaluation)} rows carved from the training set")
        job.log(f"loading {spec.base_model} ({plan.model_class}, {plan.precision.device})")
        tokenizer = load_tokenizer(plan.base)
        quantization = quantization_config(spec, plan.precision)
        model = load_model(plan.base, plan.model_class, plan.precision, quantization)
        peft = lora_config(spec, plan.model_class, self.settings.lora_bias)
        callback = JobCallback(job, perplexity=plan.perplexity)
        output_dir = job.job_dir / "checkpoints"
        common = common_args(plan, str(output_dir), self.settings)
        if plan.task is not None:
            from .tasks import build_task_trainer

            if peft is not None:
                from peft import get_peft_model

                model = get_peft_model(model, peft)
            trainer = build_task_trainer(plan.task, model, tokenizer, common, train, evaluation, plan.max_seq_length,
                                         spec.max_completion_length, [callback])
        else:
            trainer = self._method_trainer(plan, model, tokenizer, peft, common, train, evaluation, callback)
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
        return self._export(plan, job, trainer.model, tokenizer, metrics, output_dir)

    def _method_trainer(self, plan: RunPlan, model, tokenizer, peft, common: dict, train, evaluation, callback):
        from trl import unpair_preference_dataset

        from .methods import build_config, method_fields

        spec, method = plan.spec, plan.method
        if method.name == "kto" and plan.train.format == "preference":
            train = unpair_preference_dataset(train)
            evaluation = unpair_preference_dataset(evaluation) if evaluation is not None else None
        if spec.max_prompt_length is not None:
            train = truncate_prompts(train, tokenizer, spec.max_prompt_length, "dataset")
            if evaluation is not None:
                evaluation = truncate_prompts(evaluation, tokenizer, spec.max_prompt_length, "eval_dataset")
        fields = method_fields(spec, method, plan.batch_size, plan.accumulation)
        kwargs: dict = {}
        if method.rewards:
            funcs, classes, weights = [], [], []
            if plan.reward_model is not None:
                from .loading import load_model, load_tokenizer

                funcs.append(load_model(plan.reward_model, "AutoModelForSequenceClassification", plan.precision))
                classes.append(load_tokenizer(plan.reward_model))
                weights.append(1.0)
            for reward in plan.rewards:
                funcs.append(reward.func)
                classes.append(None)
                weights.append(reward.weight)
            fields["reward_weights"] = weights
            kwargs.update(reward_funcs=funcs, reward_processing_classes=classes)
        config = build_config(method, common, fields)
        return method.trainer_class()(model=model, args=config, train_dataset=train, eval_dataset=evaluation,
                                      processing_class=tokenizer, callbacks=[callback], peft_config=peft, **kwargs)

    def _export(self, plan: RunPlan, job: JobContext, model, tokenizer, metrics: dict, output_dir: Path):
        spec = plan.spec
        name = spec.output_name or job.job_id
        provenance = Provenance(
            job_id=job.job_id, method=spec.method, task=spec.task.value, pipeline_task=plan.pipeline_task,
            model_class=plan.model_class, base=plan.base, dataset=plan.train.provenance,
            eval_dataset=plan.evaluation.provenance if plan.evaluation else None, metrics=metrics,
            settings=_training_summary(plan), versions=self.library_versions(),
        )
        job.log(f"writing {', '.join(plan.formats)} to the model store as {name}")
        written = export(self.models, name, plan.formats, model, tokenizer, plan.precision, provenance,
                         job.job_dir / "export")
        for extra in written[1:]:
            job.artifact(extra.model_name, extra.path, extra.format)
        if not self.settings.keep_checkpoints:
            shutil.rmtree(output_dir, ignore_errors=True)
        return written[0]


def _training_summary(plan: RunPlan) -> dict:
    spec = plan.spec
    return {
        "epochs": spec.epochs, "max_steps": spec.max_steps, "batch_size": plan.batch_size,
        "gradient_accumulation_steps": plan.accumulation, "learning_rate": spec.learning_rate,
        "lr_scheduler": spec.lr_scheduler or None, "warmup_ratio": spec.warmup_ratio,
        "max_seq_length": plan.max_seq_length, "seed": spec.seed, "precision": spec.precision,
        "device": plan.precision.device, "quantization": spec.quantization, "double_quant": spec.double_quant,
        "lora": spec.lora.__dict__ if spec.lora else None, "beta": spec.beta, "loss_type": spec.loss_type or None,
        "num_generations": spec.num_generations, "reward_functions": [list(r) for r in spec.reward_functions],
        "reward_model": spec.reward_model or None,
    }
