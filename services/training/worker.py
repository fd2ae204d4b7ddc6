"""`forgeway train-worker`: one training job in a process of its own (accelerate launch, a Kubernetes Job), reporting
through files in the job's folder that its trainer service reads back into the job's events."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from forgeway.services.runtime.errors import ForgewayError
from forgeway.v1 import train_pb2

from .engine import JobCancelled, TrainedModel
from .spec import TrainSpec

# The job folder's files. The trainer writes REQUEST and LAUNCH before it starts the worker, and CANCEL to stop it;
# rank 0 of the worker appends EVENTS (JSON lines: progress, log, checkpoint, artifact; then one of result,
# cancelled, error); another rank appends only its error.
REQUEST, LAUNCH, EVENTS, CANCEL = "request.binpb", "launch.json", "events.jsonl", "cancel"
FINAL = ("result", "cancelled", "error")
EXIT_FAILED, EXIT_CANCELLED = 1, 3

log = logging.getLogger("forgeway.training.worker")


def rank() -> int:
    """This process's global rank under torchrun / accelerate launch / a PyTorchJob; 0 when run alone."""
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)


class FileJobContext:
    """A JobContext for a job running outside its trainer: the same methods, backed by the job folder's files.
    Only rank 0 reports (any rank its error); every rank agrees on should_stop (an all-reduce when distributed)."""

    def __init__(self, job_id: str, job_dir: Path, resume_from: Path | None = None, writer: bool = True):
        self.job_id = job_id
        self.job_dir = job_dir
        self.resume_from = resume_from
        self.writer = writer
        self.stop_requested = threading.Event()  # SIGTERM (a deleted Job's pod, torchrun shutting down)

    @property
    def should_stop(self) -> bool:
        local = self.stop_requested.is_set() or (self.job_dir / CANCEL).exists()
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
        line = json.dumps({kind: fields}, default=str) + "\n"
        with open(self.job_dir / EVENTS, "a", encoding="utf-8") as events:  # one write per line: O_APPEND keeps it whole
            events.write(line)
            events.flush()
            os.fsync(events.fileno())  # the trainer may read it over NFS from another node

    def progress(self, **fields) -> None:
        self.write("progress", **fields)

    def log(self, text: str, level: str = "info") -> None:
        self.write("log", text=text, level=level)

    def checkpoint(self, step: int, path: Path) -> None:
        self.write("checkpoint", step=step, path=str(path))

    def artifact(self, model_name: str, path: Path, format: str) -> None:
        self.write("artifact", model_name=model_name, path=str(path), format=format)


def prepare_job_dir(job_dir: Path, service: str, job_id: str, request: train_pb2.TrainRequest, settings: dict,
                    resume_from: Path | None) -> None:
    """What a fresh worker reads (the trainer's side): the request, the trainer's settings, where to resume;
    events and a cancel left by an earlier launch of this job are removed."""
    job_dir.mkdir(parents=True, exist_ok=True)
    for stale in (EVENTS, CANCEL):
        (job_dir / stale).unlink(missing_ok=True)
    (job_dir / REQUEST).write_bytes(request.SerializeToString())
    launch = {"service": service, "job_id": job_id, "settings": settings,
              "resume_from": str(resume_from) if resume_from else None}
    (job_dir / LAUNCH).write_text(json.dumps(launch, default=str))


def run_worker(service: str, job_dir: Path) -> int:
    """Train the job in job_dir with the engine registered as `service`; the outcome goes to events.jsonl."""
    from forgeway.services.runtime import registry
    from forgeway.services.runtime.logs import configure_logging

    launch = json.loads((job_dir / LAUNCH).read_text())
    resume = Path(launch["resume_from"]) if launch.get("resume_from") else None
    job = FileJobContext(launch["job_id"], job_dir, resume, writer=rank() == 0)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: job.stop_requested.set())  # stop at the next step, with a checkpoint
    try:
        cls = registry.load(service)
        settings = cls.Settings(**launch["settings"])  # the trainer's own settings: it trains as it would in-process
        configure_logging(settings.log_level, settings.log_format)
        engine = cls(settings)
        engine.runner.jobs.close()  # the trainer's job database is the trainer's; the worker reports through files
        asyncio.run(engine.prepare())
        _pin_device()
        spec = TrainSpec.from_proto(train_pb2.TrainRequest.FromString((job_dir / REQUEST).read_bytes()))
        trained: TrainedModel = engine.run(spec, job)
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
