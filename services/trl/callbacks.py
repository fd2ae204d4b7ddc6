"""JobCallback: a TrainerCallback that turns a Trainer's logs, saves and steps into job events, and stops on request."""

from __future__ import annotations

import math
import time
from pathlib import Path

from transformers import TrainerCallback

from forgeway.services.training.engine import JobContext

PROGRESS_KEYS = {"loss", "learning_rate", "grad_norm", "epoch"}
NOT_METRICS = {"total_flos", "step"}


class JobCallback(TrainerCallback):
    """Progress (step/total, epoch, loss, learning rate, grad norm, metrics, tokens/s, ETA), checkpoints, and stop
    at the next optimizer step when the job is cancelled or the service shuts down (saving a checkpoint first)."""

    def __init__(self, job: JobContext, perplexity: bool = False, save_last: bool = False):
        self.job = job
        self.perplexity = perplexity
        self.save_last = save_last  # a checkpoint at the last step too (TrainOutput.keep_checkpoint)
        self.stopped_at: int | None = None
        self.last_checkpoint: Path | None = None
        self.metrics: dict[str, float] = {}
        self._start: float | None = None
        self._start_step = 0
        self._tokens: tuple[float, float] | None = None  # (time, tokens seen) at the previous log

    def on_train_begin(self, args, state, control, **kwargs):
        self._start, self._start_step = time.monotonic(), state.global_step
        where = f"from step {state.global_step}" if state.global_step else "from the start"
        self.job.log(f"training {state.max_steps} steps {where}")

    def on_step_end(self, args, state, control, **kwargs):
        if self.job.should_stop:
            self.stopped_at = state.global_step
            control.should_save = True  # the Trainer saves right after this hook, then stops
            control.should_training_stop = True
        elif self.save_last and state.global_step >= state.max_steps:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.last_checkpoint = path
        self.job.checkpoint(state.global_step, path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        numbers = {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        metrics = {k: v for k, v in numbers.items() if k not in PROGRESS_KEYS | NOT_METRICS}
        if self.perplexity and "eval_loss" in numbers:
            metrics["eval_perplexity"] = math.exp(min(numbers["eval_loss"], 50.0))
        if self.perplexity and "train_loss" in numbers:
            metrics["train_perplexity"] = math.exp(min(numbers["train_loss"], 50.0))
        now = time.monotonic()
        fields: dict = {"step": state.global_step, "total_steps": state.max_steps, "epoch": float(state.epoch or 0.0)}
        for key in ("loss", "learning_rate", "grad_norm"):
            if key in numbers:
                fields[key] = numbers[key]
        done = state.global_step - self._start_step
        if self._start is not None and done > 0:
            elapsed = now - self._start
            fields["eta_seconds"] = elapsed / done * max(0, state.max_steps - state.global_step)
            samples = done * args.per_device_train_batch_size * args.gradient_accumulation_steps
            metrics.setdefault("samples_per_second", samples / elapsed if elapsed > 0 else 0.0)
        if "num_tokens" in numbers:
            if self._tokens and now > self._tokens[0]:
                fields["tokens_per_second"] = (numbers["num_tokens"] - self._tokens[1]) / (now - self._tokens[0])
            self._tokens = (now, numbers["num_tokens"])
        self.metrics.update({k: v for k, v in metrics.items() if k.startswith(("eval_", "train_"))})
        if "loss" in numbers:
            self.metrics["loss"] = numbers["loss"]
        self.job.progress(metrics=metrics, **fields)
