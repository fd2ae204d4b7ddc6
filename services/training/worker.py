"""`forgeway train-worker`: one training job in a process of its own (accelerate launch, a Kubernetes Job). It builds
the trainer's engine alone, never its service: it reports through the job's folder (jobfolder.py), which the trainer
service reads back into the job's events, and never opens the job database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from forgeway.core.errors import ForgewayError

from . import jobfolder
from .engine import JobCancelled, TrainedModel
from .spec import TrainSpec

EXIT_FAILED, EXIT_CANCELLED = 1, 3

log = logging.getLogger("forgeway.training.worker")


def rank() -> int:
    """This process's global rank under torchrun / accelerate launch / a PyTorchJob; 0 when run alone."""
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)


class FileJobContext:
    """The JobContext of a job running outside its trainer, backed by the job folder's files. Only rank 0 reports
    (any rank its error); every rank agrees on should_stop (an all-reduce when distributed)."""

    def __init__(self, job_id: str, job_dir: Path, resume_from: Path | None = None, writer: bool = True):
        self.job_id = job_id
        self.job_dir = job_dir
        self.resume_from = resume_from
        self.writer = writer
        self.stop_requested = threading.Event()  # SIGTERM (a deleted Job's pod, torchrun shutting down)

    @property
    def should_stop(self) -> bool:
        local = self.stop_requested.is_set() or jobfolder.cancel_requested(self.job_dir)
        torch = sys.modules.get("torch")
        if torch is None or not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return local
        from accelerate import PartialState  # the device the collective needs (cuda for nccl, cpu for gloo)

        flag = torch.tensor([1.0 if local else 0.0], device=PartialState().device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())  # a rank stopping alone would leave the others waiting in the next step's collective

    def write(self, kind: str, **fields) -> None:
        if not self.writer and kind != "error":  # any rank's failure is the job's (the first final line wins)
            return
        jobfolder.append_event(self.job_dir, kind, fields)

    def progress(self, **fields) -> None:
        self.write("progress", **fields)

    def log(self, text: str, level: str = "info") -> None:
        self.write("log", text=text, level=level)

    def checkpoint(self, step: int, path: Path) -> None:
        self.write("checkpoint", step=step, path=str(path))

    def artifact(self, model_name: str, path: Path, format: str) -> None:
        self.write("artifact", model_name=model_name, path=str(path), format=format)


def run_worker(service: str, job_dir: Path) -> int:
    """Train the job in job_dir with the engine of the service registered as `service`; the outcome goes to the
    folder's events."""
    from forgeway.server import registry
    from forgeway.server.logs import configure_logging

    launch = jobfolder.read_launch(job_dir)
    job = FileJobContext(launch.job_id, job_dir, launch.resume_from, writer=rank() == 0)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: job.stop_requested.set())  # stop at the next step, with a checkpoint
    try:
        engine_class = registry.load(service).Engine  # the engine alone: the service (and its job store) is not built
        settings = engine_class.Settings(**launch.settings)  # the trainer's own settings: it trains as in-process
        configure_logging(settings.log_level, settings.log_format)
        engine = engine_class(settings)
        asyncio.run(engine.prepare())
        _pin_device()
        trained: TrainedModel = engine.run(TrainSpec.from_proto(launch.request), job)
    except JobCancelled as exc:
        job.write("cancelled", step=exc.step, checkpoint=str(exc.checkpoint) if exc.checkpoint else None)
        return EXIT_CANCELLED
    except Exception as exc:  # noqa: BLE001  (the job fails with the reason; the traceback goes to the log)
        where = f"rank {rank()}: " if rank() else ""
        if isinstance(exc, ForgewayError):
            job.write("error", message=where + exc.message, type=type(exc).__name__)
        else:
            log.error("training worker failed", exc_info=exc)
            job.write("error", message=f"{where}{type(exc).__name__}: {exc}", type=type(exc).__name__)
        return EXIT_FAILED
    job.write("result", model_name=trained.model_name, path=str(trained.path), format=trained.format,
              metrics=trained.metrics)
    return 0


def _pin_device() -> None:
    """Under accelerate launch, this rank's GPU is the current one before the engine loads anything (a quantized
    model's device map names the current device)."""
    torch = sys.modules.get("torch")
    local_rank = os.environ.get("LOCAL_RANK")
    if torch is not None and local_rank is not None and torch.cuda.is_available():
        torch.cuda.set_device(int(local_rank))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="forgeway train-worker", description=__doc__)
    parser.add_argument("--service", required=True, help="the trainer's registered name (trl, unsloth)")
    parser.add_argument("--job-dir", required=True, type=Path, help="the job's folder, as the trainer prepared it")
    args = parser.parse_args(argv)
    return run_worker(args.service, args.job_dir)
