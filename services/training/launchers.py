"""Launchers: where a training job runs: in the trainer's process, under `accelerate launch` (one process per GPU), or
on Kubernetes (kubejobs.py); the runner picks one by the `launcher` setting. Every one returns the TrainedModel or raises as TrainingEngine.run does; the ones that
run a worker process talk to it through the job's folder (jobfolder.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import jobfolder
from .engine import TrainedModel, TrainingEngine
from .jobfolder import EventFollower, WorkerFailed
from .spec import TrainSpec

if TYPE_CHECKING:
    from .runner import RunningJob

POLL_SECONDS = 0.5
MIXED_PRECISION = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}  # the request's precision wins over the config's


class Launcher(Protocol):
    """Runs one job to its end: returns the TrainedModel, or raises JobCancelled or the job's error."""

    name: str

    async def run(self, spec: TrainSpec, job: RunningJob) -> TrainedModel: ...


def visible_gpus() -> int:
    """CUDA devices this process sees (torch only if the engine already imported it)."""
    torch = sys.modules.get("torch")
    return torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0


class InProcessLauncher:
    """The trainer's own process, in a worker thread (one device)."""

    name = "inprocess"

    def __init__(self, engine: TrainingEngine):
        self.engine = engine

    async def run(self, spec: TrainSpec, job: RunningJob) -> TrainedModel:
        return await asyncio.to_thread(self.engine.run, spec, job)


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

    def command(self, spec: TrainSpec, job: RunningJob) -> tuple[list[str], dict[str, str]]:
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

    async def run(self, spec: TrainSpec, job: RunningJob) -> TrainedModel:
        jobfolder.prepare(job.job_dir, self.engine.kind, job.job_id, job.request,
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
                    jobfolder.request_cancel(job.job_dir)
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
