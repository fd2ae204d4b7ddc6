"""The trainer object AlignTune's factory returns, running its job through Forgeway."""

from __future__ import annotations

import logging
from typing import Any

from forgeway.client import Client, JobFailedError, TrainingJob
from forgeway.client.types import Job

log = logging.getLogger("forgeway.compat.aligntune")


class ForgewayTrainer:
    """What create_*_trainer returns: `train()` runs the job and returns its results; the job id, the backend that
    ran it and the trained model's store name are attributes afterwards."""

    def __init__(self, client: Client, request: dict[str, Any], output_dir: str, algorithm: str):
        self.client = client
        self.request = request
        self.output_dir = output_dir
        self.algorithm = algorithm
        self.job: TrainingJob | None = None
        self.result: Job | None = None

    @property
    def backend(self) -> str:
        """The trainer that ran the job ("trl", "unsloth"), once it has started."""
        return self.result.backend if self.result else self.request["backend"]

    @property
    def model_name(self) -> str | None:
        """The trained model's name in the model store: generate from it by this name."""
        return self.result.artifact.model_name if self.result and self.result.artifact else None

    def train(self) -> dict[str, Any]:
        """Run the job to its end, logging progress; RuntimeError when it fails or is cancelled."""
        request = dict(self.request)
        self.job = self.client.train(request.pop("base_model"), request.pop("dataset"), **request)
        log.info("training job %s started (%s)", self.job.id, self.algorithm)
        for event in self.job.events():
            if event.kind == "progress" and event.progress.loss is not None:
                log.info("step %d/%d loss %.4f", event.progress.step, event.progress.total_steps, event.progress.loss)
            elif event.kind == "fallback":
                log.warning("fallback from %s to %s: %s", event.fallback.requested, event.fallback.used,
                            event.fallback.reason)
        self.result = self.job.get()
        if self.result.state != "succeeded":
            raise RuntimeError(str(JobFailedError(self.result)))
        metrics = dict(self.result.progress.metrics) if self.result.progress else {}
        return {"job_id": self.result.id, "state": self.result.state, "backend": self.result.backend,
                "model_name": self.model_name, "global_step": self.result.progress.step if self.result.progress else 0,
                "train_loss": metrics.get("train_loss"), "metrics": metrics}

    def evaluate(self) -> dict[str, float]:
        """The evaluation metrics the job reported (eval_* keys; empty without an eval dataset)."""
        if self.result is None or self.result.progress is None:
            return {}
        return {k: v for k, v in self.result.progress.metrics.items() if k.startswith("eval")}

    def save_model(self, output_dir: str | None = None) -> str:
        """The artifact is already saved in the model store; returns its path there (on the trainer's machine)."""
        if self.result is None or self.result.artifact is None:
            raise RuntimeError("nothing to save: train() has not succeeded")
        return self.result.artifact.path
