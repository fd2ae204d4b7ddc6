"""Launchers: where a training job runs: in the trainer's process, under `accelerate launch` (one process per GPU), or
on Kubernetes (kubejobs.py). Every one returns the TrainedModel or raises as TrainingEngine.run does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Protocol

from forgeway.services.runtime.errors import ForgewayError

from .engine import JobCancelled, JobContext, TrainedModel, TrainingEngine
from .spec import TrainSpec
from .worker import CANCEL, EVENTS, FINAL, prepare_job_dir

POLL_SECONDS = 0.5
MIXED_PRECISION = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}  # the request's precision wins over the config's


class Launcher(Protocol):
    """Runs one job to its end: returns the TrainedModel, or raises JobCancelled or the job's error."""

    name: str

    async def run(self, spec: TrainSpec, job: JobContext) -> TrainedModel: ...


class WorkerFailed(ForgewayError):
    """A job that ran outside the trainer failed; the message is the worker's reason (the job's error)."""

    reason = "TRAINING_WORKER_FAILED"


def visible_gpus() -> int:
    """CUDA devices this process sees (torch only if the engine already imported it)."""
    torch = sys.modules.get("torch")
    return torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0


def choose_launcher(engine: TrainingEngine, kube_api=None) -> Launcher:
    """The `launcher` setting; auto: in-process for 0-1 visible GPUs, accelerate for more (Kubernetes only when set,
    through kube_api, by default the pod's in-cluster access)."""
    name = engine.settings.launcher
    if name == "auto":
        name = "accelerate" if visible_gpus() > 1 else "inprocess"
    if name == "inprocess":
        return InProcessLauncher(engine)
    if name == "accelerate":
        return AccelerateLauncher(engine)
    from .kubejobs import KubernetesJobLauncher

    return KubernetesJobLauncher(engine, pytorchjob=name == "pytorchjob" or engine.settings.job_nodes > 1, api=kube_api)


class InProcessLauncher:
    """The trainer's own process, in a worker thread (one device)."""

    name = "inprocess"

    def __init__(self, engine: TrainingEngine):
        self.engine = engine

    async def run(self, spec: TrainSpec, job: JobContext) -> TrainedModel:
        return await asyncio.to_thread(self.engine.run, spec, job)


class EventFollower:
    """Reads a worker's events.jsonl into the job's history as lines arrive; keeps the final line (result, cancelled
    or error). With offset_file, how far it read survives a restart of the trainer (re-attaching to a running Job)."""

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
        """The final line as run() would end: the TrainedModel, JobCancelled, or WorkerFailed."""
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


def worker_args(service: str, job_dir: Path) -> list[str]:
    return ["-m", "forgeway.cli", "train-worker", "--service", service, "--job-dir", str(job_dir)]


def mixed_precision(spec: TrainSpec, cuda: bool) -> list[str]:
    """--mixed_precision for accelerate launch: the request's precision, else the config's (fp32 on CPU)."""
    chosen = MIXED_PRECISION.get(spec.precision) or (None if cuda else "no")
    return ["--mixed_precision", chosen] if chosen else []


class AccelerateLauncher:
    """`accelerate launch` as a child process: one process per GPU (accelerate_processes), DDP / FSDP / DeepSpeed by
    the accelerate config. On a machine without CUDA the processes train on CPU over gloo (ACCELERATE_USE_CPU)."""

    name = "accelerate"

    def __init__(self, engine: TrainingEngine):
        self.engine = engine

    def command(self, spec: TrainSpec, job: JobContext) -> tuple[list[str], dict[str, str]]:
        settings, gpus = self.engine.settings, visible_gpus()
        processes = settings.accelerate_processes or max(gpus, 1)
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
                   "--main_process_port", "0", *mixed_precision(spec, gpus > 0)]
        if Path(settings.accelerate_config).is_file():
            command += ["--config_file", str(settings.accelerate_config)]
        else:
            job.log(f"accelerate config {settings.accelerate_config} not found; plain data parallel", "warning")
            command += ["--num_machines", "1", "--dynamo_backend", "no"] + (["--multi_gpu"] if processes > 1 else [])
        env = dict(os.environ, ACCELERATE_USE_CPU="true") if gpus == 0 else dict(os.environ)
        job.log(f"launching {processes} process(es) with accelerate launch" + ("" if gpus else " on CPU (gloo)"))
        return command + worker_args(self.engine.kind, job.job_dir), env

    async def run(self, spec: TrainSpec, job: JobContext) -> TrainedModel:
        prepare_job_dir(job.job_dir, self.engine.kind, job.job_id, job.jobs.request(job.job_id),
                        self.engine.settings.model_dump(mode="json"), job.resume_from)
        command, env = self.command(spec, job)
        follower = EventFollower(job)
        with open(job.job_dir / "worker.log", "ab") as output:
            process = await asyncio.create_subprocess_exec(
                *_with_parent(command), stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        try:
            stopping = False
            while process.returncode is None:
                follower.poll()
                if job.should_stop and not stopping:  # cancel or the trainer's shutdown: every rank stops together
                    (job.job_dir / CANCEL).touch()
                    stopping = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), POLL_SECONDS)
            if follower.poll() is None:
                raise WorkerFailed(f"accelerate launch exited with {process.returncode}: "
                                   f"{_tail(job.job_dir / 'worker.log')}")
            return follower.outcome()
        finally:
            if process.returncode is None:  # the runner gave up waiting (shutdown grace): stop the whole group
                await _stop_group(process)


# prctl(PR_SET_PDEATHSIG, SIGTERM), then exec the command: it gets SIGTERM (and its ranks checkpoint and stop) when
# the trainer dies, so a killed trainer leaves no orphan training. Done after exec, not in a preexec_fn: a fork that
# runs Python code in the child can crash in gRPC's fork handlers while the trainer's threads serve calls.
_WITH_PARENT = ("import ctypes, os, signal, sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); "
                "os.execv(sys.argv[1], sys.argv[1:])")


def _with_parent(command: list[str]) -> list[str]:
    return [sys.executable, "-c", _WITH_PARENT, *command] if sys.platform == "linux" else command


async def _stop_group(process: asyncio.subprocess.Process, grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), grace)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no output)"
    return " | ".join(line.strip() for line in text[-lines:] if line.strip()) or "(no output)"
