"""JobView: one job as the Jobs page draws it, built up from its events as they arrive (WatchJob, ListJobEvents)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from forgeway.core.enums import FINISHED_STATES, JOB_STATE
from forgeway.v1 import jobs_pb2

CURVES = ("loss", "learning_rate", "grad_norm")
MAX_LOG_LINES = 500
EVAL_PREFIX = "eval_"  # Progress.metrics holds evaluation metrics under this prefix, beside per-step extras


def duration(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {seconds:02d}s" if hours else f"{minutes}m {seconds:02d}s" if minutes \
        else f"{seconds}s"


@dataclass
class JobView:
    """A job's record and the history the page shows: curves by step, eval metrics, log lines, checkpoints,
    fallback notices and artifacts."""

    job: jobs_pb2.Job
    last_sequence: int = 0
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=lambda: {c: [] for c in CURVES})
    evals: list[tuple[int, str, float]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    fallbacks: list[str] = field(default_factory=list)
    artifacts: list[jobs_pb2.Artifact] = field(default_factory=list)
    progress: jobs_pb2.Progress | None = None

    @property
    def state(self) -> int:
        return self.job.state

    @property
    def finished(self) -> bool:
        return self.job.state in FINISHED_STATES

    @property
    def succeeded(self) -> bool:
        return self.job.state == jobs_pb2.JOB_STATE_SUCCEEDED

    @property
    def model_name(self) -> str:
        """The trained model's name: the primary artifact (the last one) of a job that succeeded."""
        if self.artifacts:
            return self.artifacts[-1].model_name
        return self.job.artifact.model_name

    @property
    def points(self) -> int:
        """Progress points drawn so far (steps with a loss)."""
        return len(self.curves["loss"])

    def apply(self, event: jobs_pb2.JobEvent) -> None:
        """Add one event; events the view already has (by sequence) are skipped. Sequence 0 is the gateway's own
        fallback notice, outside the trainer's numbering."""
        if event.sequence and event.sequence <= self.last_sequence:
            return
        self.last_sequence = max(self.last_sequence, event.sequence)
        kind = event.WhichOneof("kind")
        when = event.time.ToDatetime().strftime("%H:%M:%S") if event.HasField("time") else ""
        if kind == "state":
            self.job.state = event.state.state
            if event.state.state == jobs_pb2.JOB_STATE_FAILED:
                self.job.error = event.state.message
            self.logs.append(f"{when} [state] {JOB_STATE.name(event.state.state)}"
                             + (f": {event.state.message}" if event.state.message else ""))
        elif kind == "progress":
            self._progress(event.progress)
        elif kind == "log":
            self.logs.append(f"{when} [{event.log.level or 'info'}] {event.log.text}")
        elif kind == "checkpoint":
            self.checkpoints.append(f"step {event.checkpoint.step}: {event.checkpoint.path}")
        elif kind == "fallback":
            fb = event.fallback
            self.fallbacks.append(f"asked for {fb.requested}, trained on {fb.used}: {fb.reason}")
        elif kind == "artifact":
            self.artifacts.append(event.artifact)
        del self.logs[:-MAX_LOG_LINES]

    def _progress(self, progress: jobs_pb2.Progress) -> None:
        self.progress = progress
        self.job.progress.CopyFrom(progress)
        for name in CURVES:
            if progress.HasField(name):
                self.curves[name].append((progress.step, getattr(progress, name)))
        self.evals += [(progress.step, metric, value) for metric, value in sorted(progress.metrics.items())
                       if metric.startswith(EVAL_PREFIX)]

    def frame(self, curve: str) -> pd.DataFrame:
        """One curve as the LinePlot draws it: step, value (typed even when empty, as eval_frame)."""
        return pd.DataFrame(self.curves[curve], columns=["step", curve]).astype({"step": "int64", curve: "float64"})

    def eval_frame(self) -> pd.DataFrame:
        """Evaluation metrics as the LinePlot draws them: step, metric, value. (Typed even when empty: the plot takes
        its axis types from the first frame it gets.)"""
        return pd.DataFrame(self.evals, columns=["step", "metric", "value"]).astype(
            {"step": "int64", "metric": "str", "value": "float64"})

    def summary(self) -> str:
        """The job's header in Markdown: state, trainer, method, base model, dataset, progress, ETA, error."""
        job, p = self.job, self.progress or self.job.progress
        lines = [f"**{job.id}**: **{JOB_STATE.name(job.state) or 'unknown'}**, {job.method} of `{job.base_model}` on "
                 f"the {job.backend} trainer" + (f", dataset `{job.dataset}`" if job.dataset else "")]
        if p.total_steps:
            line = f"Step {p.step} of {p.total_steps} ({100 * p.step / p.total_steps:.0f}%), epoch {p.epoch:.2f}"
            if p.HasField("tokens_per_second"):
                line += f", {p.tokens_per_second:.0f} tokens/s"
            if p.HasField("eta_seconds") and not self.finished:
                line += f", ETA {duration(p.eta_seconds)}"
            lines.append(line)
        if job.error:
            lines.append(f"Error: {job.error}")
        if self.succeeded and self.model_name:
            lines.append(f"Trained model: `{self.model_name}`")
        return "\n\n".join(lines)


def progress_text(job: jobs_pb2.Job) -> str:
    """A job's progress as the list shows it."""
    p = job.progress
    if not p.total_steps:
        return ""
    return f"{p.step}/{p.total_steps} ({100 * p.step / p.total_steps:.0f}%)"
