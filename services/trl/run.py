"""One training run from a plan: load, build the trainer, train, evaluate, export. Shared by the TRL and Unsloth
engines, which differ only in how the model is loaded (`load`) and the provider their artifacts record."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from forgeway.services.training.engine import JobCancelled, JobContext, TrainedModel, TrainingEngine

from .datasets import truncate_prompts
from .export import Provenance, export
from .plan import RunPlan, carve_eval, common_args

# (plan, job) -> (model, tokenizer, peft config or None when the model already carries its adapters)
Loader = Callable[[RunPlan, JobContext], tuple[object, object, object | None]]


def run_plan(engine: TrainingEngine, plan: RunPlan, job: JobContext, load: Loader, provider: str) -> TrainedModel:
    import transformers

    from .callbacks import JobCallback

    spec = plan.spec
    transformers.set_seed(spec.seed if spec.seed is not None else 42)
    for note in plan.notes:
        job.log(note)
    train, evaluation = plan.train.rows, plan.evaluation.rows if plan.evaluation else None
    if evaluation is None and engine.settings.eval_fraction > 0:
        train, evaluation = carve_eval(train, engine.settings.eval_fraction, spec.seed or 42)
        job.log(f"evaluating on {len(evaluation)} rows carved from the training set")
    model, tokenizer, peft = load(plan, job)
    callback = JobCallback(job, perplexity=plan.perplexity, save_last=spec.keep_checkpoint)
    output_dir = job.job_dir / "checkpoints"
    common = common_args(plan, str(output_dir), engine.settings)
    if plan.task is not None:
        from .tasks import build_task_trainer

        if peft is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft)
        trainer = build_task_trainer(plan.task, model, tokenizer, common, train, evaluation, plan.max_seq_length,
                                     spec.max_completion_length, [callback])
    else:
        trainer = method_trainer(plan, model, tokenizer, peft, common, train, evaluation, callback)
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
    if not trainer.is_world_process_zero():  # under accelerate launch, rank 0 alone writes the artifact
        name = spec.output_name or job.job_id
        return TrainedModel(name, engine.models.path(name), plan.formats[0], metrics)
    return export_run(engine, plan, job, trainer.model, tokenizer, metrics, output_dir, provider)


def method_trainer(plan: RunPlan, model, tokenizer, peft, common: dict, train, evaluation, callback):
    """The TRL trainer of the plan's method (KTO unpairing, prompt truncation and rewards included)."""
    from trl import unpair_preference_dataset

    from .loading import load_model, load_tokenizer
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
            funcs.append(load_model(plan.reward_model, "AutoModelForSequenceClassification", plan.precision))
            classes.append(load_tokenizer(plan.reward_model))
            weights.append(1.0)
        for reward in plan.rewards:
            funcs.append(reward.func)
            classes.append(None)
            weights.append(reward.weight)
        fields["reward_weights"] = weights
        kwargs.update(reward_funcs=funcs, reward_processing_classes=classes)
    if method.algorithm:  # AlignTune's algorithms read their MethodParams messages (services/trl/algorithms)
        kwargs["algorithm"] = {name: spec.algorithm.get(name, {}) for name in method.algorithm}
    config = build_config(method, common, fields)
    return method.trainer_class()(model=model, args=config, train_dataset=train, eval_dataset=evaluation,
                                  processing_class=tokenizer, callbacks=[callback], peft_config=peft, **kwargs)


def export_run(engine: TrainingEngine, plan: RunPlan, job: JobContext, model, tokenizer, metrics: dict,
               output_dir: Path, provider: str) -> TrainedModel:
    """Write the plan's formats to the model store with provenance; secondary formats become extra artifacts."""
    spec = plan.spec
    name = spec.output_name or job.job_id
    provenance = Provenance(
        job_id=job.job_id, method=spec.method, task=spec.task.value, pipeline_task=plan.pipeline_task,
        model_class=plan.model_class, base=plan.base, dataset=plan.train.provenance,
        eval_dataset=plan.evaluation.provenance if plan.evaluation else None, metrics=metrics,
        settings=training_summary(plan), versions=engine.library_versions(), provider=provider,
        description=spec.description,
    )
    job.log(f"writing {', '.join(plan.formats)} to the model store as {name}")
    written = export(engine.models, name, plan.formats, model, tokenizer, plan.precision, provenance,
                     job.job_dir / "export")
    for extra in written[1:]:
        job.artifact(extra.model_name, extra.path, extra.format)
    if not (engine.settings.keep_checkpoints or spec.keep_checkpoint):
        shutil.rmtree(output_dir, ignore_errors=True)
    return written[0]


def training_summary(plan: RunPlan) -> dict:
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
