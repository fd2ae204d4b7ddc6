"""The launch protocol between a trainer service and a training worker process (accelerate launch, a Kubernetes
pod), through files in the job's folder: the trainer writes REQUEST and LAUNCH, then CANCEL to stop the worker; the
worker appends EVENTS (JSON lines: progress, log, checkpoint, artifact; then one FINAL line: result, cancelled or
error), which the trainer follows into the job's history. Only the trainer ever opens the job database."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from forgeway.core.errors import ForgewayError
from forgeway.v1 import train_pb2

from .engine import JobCancelled, JobContext, TrainedModel

REQUEST, LAUNCH, EVENTS, CANCEL = "request.binpb", "launch.json", "events.jsonl", "cancel"
FINAL = ("result", "cancelled", "error")


class WorkerFailed(ForgewayError):
    """A job that ran outside the trainer failed; the message is the worker's reason (the job's error)."""

    reason = "TRAINING_WORKER_FAILED"


@dataclass(frozen=True)
class Launch:
    """What a worker reads from the job folder before it trains."""

    service: str
    job_id: str
    settings: dict
    resume_from: Path | None
    request: train_pb2.TrainRequest


# The trainer's side.

def prepare(job_dir: Path, service: str, job_id: str, request: train_pb2.TrainRequest, settings: dict,
            resume_from: Path | None) -> None:
    """Write what a fresh worker reads: the request, the trainer's settings, where to resume; events and a cancel
    left by an earlier launch of this job are removed."""
    job_dir.mkdir(parents=True, exist_ok=True)
    for stale in (EVENTS, CANCEL):
        (job_dir / stale).unlink(missing_ok=True)
    (job_dir / REQUEST).write_bytes(request.SerializeToString())
    launch = {"service": service, "job_id": job_id, "settings": settings,
              "resume_from": str(resume_from) if resume_from else None}
    (job_dir / LAUNCH).write_text(json.dumps(launch, default=str))


def request_cancel(job_dir: Path) -> None:
    """Ask every rank of the worker to stop at its next step, with a checkpoint."""
    (job_dir / CANCEL).touch()


class EventFollower:
    """Reads a worker's events into the job's history as lines arrive; keeps the final line. With offset_file, how
    far it read survives a restart of the trainer (re-attaching to a running Kubernetes Job)."""

    def __init__(self, job: JobContext, offset_file: Path | None = None):
        self.job = job
        self.path = job.job_dir / EVENTS
        self.offset_file = offset_file
        self.offset = int(offset_file.read_text() or 0) if offset_file and offset_file.exists() else 0
        self.final: tuple[str, dict] | None = None
        self.step, self.checkpoint = 0, None

    def poll(self) -> tuple[str, dict] | None:
        try:
            with open(self.path, "rb") as events:
                events.seek(self.offset)
                data = events.read()
        except FileNotFoundError:
            return self.final
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        for line in complete.splitlines():
            if line.strip() and self.final is None:
                self.apply(json.loads(line))
        if complete:
            self.offset += len(complete)
            if self.offset_file:
                self.offset_file.write_text(str(self.offset))
        return self.final

    def apply(self, event: dict) -> None:
        (kind, fields), = event.items()
        if kind in FINAL:
            self.final = (kind, fields)
        elif kind == "progress":
            self.step = int(fields.get("step", self.step))
            self.job.progress(**fields)
        elif kind == "log":
            self.job.log(fields["text"], fields.get("level", "info"))
        elif kind == "checkpoint":
            self.step, self.checkpoint = fields["step"], Path(fields["path"])
            self.job.checkpoint(fields["step"], self.checkpoint)
        elif kind == "artifact":
            self.job.artifact(fields["model_name"], Path(fields["path"]), fields["format"])

    def outcome(self) -> TrainedModel:
        """The final line as an in-process run would end: the TrainedModel, JobCancelled, or WorkerFailed."""
        kind, fields = self.final or ("error", {"message": "the worker ended without a result"})
        if kind == "result":
            return TrainedModel(fields["model_name"], Path(fields["path"]), fields["format"], fields.get("metrics") or {})
        checkpoint = Path(fields["checkpoint"]) if fields.get("checkpoint") else None
        if kind == "cancelled" and self.job.should_stop:
            raise JobCancelled(fields["step"], checkpoint)
        if kind == "cancelled":  # a signal from outside (an evicted pod, a killed process), not the trainer's cancel
            raise WorkerFailed(f"the training worker was stopped from outside at step {fields['step']}"
                               + (f"; checkpoint kept at {checkpoint}" if checkpoint else ""))
        raise WorkerFailed(fields["message"])


# The worker's side.

def read_launch(job_dir: Path) -> Launch:
    launch = json.loads((job_dir / LAUNCH).read_text())
    return Launch(service=launch["service"], job_id=launch["job_id"], settings=launch["settings"],
                  resume_from=Path(launch["resume_from"]) if launch.get("resume_from") else None,
                  request=train_pb2.TrainRequest.FromString((job_dir / REQUEST).read_bytes()))


def cancel_requested(job_dir: Path) -> bool:
    return (job_dir / CANCEL).exists()


def append_event(job_dir: Path, kind: str, fields: dict) -> None:
    """One event line; one write with O_APPEND keeps it whole beside other ranks' lines, and fsync lets the trainer
    read it over NFS from another node."""
    line = json.dumps({kind: fields}, default=str) + "\n"
    with open(job_dir / EVENTS, "a", encoding="utf-8") as events:
        events.write(line)
        events.flush()
        os.fsync(events.fileno())
