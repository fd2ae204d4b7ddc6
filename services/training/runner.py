"""JobRunner: one training job per device at a time, the rest queued; creation, cancel, restart recovery, watching."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from forgeway.core.errors import FailedPrecondition, ForgewayError, InvalidArgument, ResourceExhausted, Unavailable
from forgeway.v1 import jobs_pb2, train_pb2

from .disk import check_job_disk
from .download import checkpoint_folder
from .engine import JobCancelled, TrainingEngine
from .jobs import TERMINAL, JobStore
from .launchers import AccelerateLauncher, InProcessLauncher, Launcher, visible_gpus
from .spec import TrainSpec

log = logging.getLogger("forgeway.training")


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


class RunningJob:
    """The job a launcher runs, as its trainer service sees it: the engine's JobContext backed by the job store,
    plus the stored request and the trainer's reasons to stop it."""

    def __init__(self, job_id: str, jobs: JobStore, home: Path, resume_from: Path | None = None):
        self.job_id = job_id
        self.jobs = jobs
        self.job_dir = home / "jobs" / job_id
        self.job_dir.mkdir(parents=True, exist_ok=True)
        self.resume_from = resume_from
        self.cancel_requested = threading.Event()
        self.shutdown_requested = threading.Event()

    @property
    def request(self) -> train_pb2.TrainRequest:
        """The request the job was created from, as stored."""
        return self.jobs.request(self.job_id)

    @property
    def should_stop(self) -> bool:
        """Stop at the next step: the job was cancelled, or the service is shutting down (it resumes on restart)."""
        return self.cancel_requested.is_set() or self.shutdown_requested.is_set()

    def progress(self, **fields) -> None:
        metrics = fields.pop("metrics", None) or {}
        self.jobs.append(self.job_id, progress=jobs_pb2.Progress(metrics=metrics, **fields))

    def log(self, text: str, level: str = "info") -> None:
        self.jobs.append(self.job_id, log=jobs_pb2.LogLine(level=level, text=text))

    def checkpoint(self, step: int, path: Path) -> None:
        self.jobs.append(self.job_id, checkpoint=jobs_pb2.Checkpoint(step=step, path=str(path)))

    def artifact(self, model_name: str, path: Path, format: str) -> None:
        self.jobs.append(self.job_id, artifact=jobs_pb2.Artifact(model_name=model_name, path=str(path), format=format))


class JobRunner:
    """The job queue of one trainer service and the job store behind it (FORGEWAY_HOME/jobs.db): the service
    builds it; an engine running in a worker process has none."""

    def __init__(self, engine: TrainingEngine):
        self.engine = engine
        self.loop: asyncio.AbstractEventLoop | None = None
        self.jobs = JobStore(engine.settings.home / "jobs.db", on_event=self._on_event)
        self.queue: list[str] = []
        self.wakeup = asyncio.Event()
        self.running: RunningJob | None = None
        self.stopping = False
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task | None = None
        self.launcher: Launcher | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.wakeup = asyncio.Event()
        self.launcher = choose_launcher(self.engine)  # after the engine's prepare(): it may count GPUs
        for job in self.jobs.unfinished():
            if job.state == jobs_pb2.JOB_STATE_RUNNING:
                checkpoint = self.last_checkpoint(job.id)
                where = f"checkpoint {checkpoint}" if checkpoint else "the start (no checkpoint)"
                self.jobs.append(job.id, log=jobs_pb2.LogLine(level="warning",
                                                                 text=f"interrupted by a restart; resuming from {where}"))
            self.queue.append(job.id)
            self.jobs.append(job.id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_QUEUED,
                                                                 message=f"queued (position {len(self.queue)})"))
        self._task = asyncio.create_task(self._work())
        if self.queue:
            self.wakeup.set()

    async def stop(self) -> None:
        self.stopping = True  # the worker takes no further job from the queue
        self.wakeup.set()
        if self.running:  # stop at the next step; the job stays RUNNING and resumes on restart
            self.running.shutdown_requested.set()
        if self._task:
            # the worker ends once the running job reached its next step and checkpointed (or at once when idle)
            await asyncio.wait({self._task}, timeout=self.engine.settings.grace_seconds)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.jobs.close()

    async def create(self, request: train_pb2.TrainRequest, notice: jobs_pb2.Fallback | None = None) -> jobs_pb2.Job:
        """Validate a request and queue its job; answers the job's record (QUEUED). `notice` is the gateway's word
        that it fell back to this trainer, recorded in the job's history."""
        spec, fallback, advice = await self.check(request, notice)
        return self.submit(request, spec, fallback, advice)

    async def check(self, request: train_pb2.TrainRequest, notice: jobs_pb2.Fallback | None = None
                    ) -> tuple[TrainSpec, jobs_pb2.Fallback | None, list[tuple[str, str]]]:
        """Everything create() checks before queueing (CreateJob's validate_only stops here): the spec, the fallback
        to record, and the advice for this machine (TrainSpec.warnings); raises the request's errors."""
        spec = TrainSpec.from_proto(request)
        available, reason = self.engine.availability()
        if not available or not self.engine.ready:
            raise Unavailable(f"{self.engine.kind} cannot train here: {reason or self.engine.failure}", retry_after=30)
        fallback = notice if notice is not None else self._fallback(spec)
        await asyncio.to_thread(self.engine.validate, spec)
        await asyncio.to_thread(check_job_disk, self.engine, spec)  # disk.py: FAILED_PRECONDITION, no job
        if spec.resume_from:  # NOT_FOUND listing the job's checkpoints, before any job exists
            await asyncio.to_thread(checkpoint_folder, self.engine.settings.home, *spec.resume_from, "resume_from")
        advice = await asyncio.to_thread(lambda: spec.warnings(self.engine.hardware().profile))
        return spec, fallback, advice

    def _fallback(self, spec: TrainSpec) -> jobs_pb2.Fallback | None:
        """A request for another trainer that reached this one directly: a fallback to record, or refused when the
        request disallows fallback."""
        kind = self.engine.kind
        if spec.backend in ("auto", kind):
            return None
        if not spec.allow_fallback:
            raise InvalidArgument("backend", f"this is the {kind} trainer; {spec.backend} was asked for with "
                                  "allow_fallback false")
        return jobs_pb2.Fallback(requested=spec.backend, used=kind, reason=f"the request reached the {kind} trainer")

    def submit(self, request: train_pb2.TrainRequest, spec: TrainSpec, fallback: jobs_pb2.Fallback | None = None,
               advice: list[tuple[str, str]] = ()) -> jobs_pb2.Job:
        """Queue a validated request's job; its record as queued. `advice` (field, text): settings that are valid
        but risky on this machine (TrainSpec.warnings), recorded as warning log lines before the job can start."""
        if len(self.queue) >= self.engine.settings.max_queued_jobs:
            raise ResourceExhausted(f"{len(self.queue)} jobs already queued", retry_after=60, quota="queued_jobs")
        job = self.jobs.create(request, self.engine.kind, spec.method)
        if fallback is not None:  # recorded before the job can start
            self.jobs.append(job.id, fallback=fallback)
        for field_name, text in advice:
            self.jobs.append(job.id, log=jobs_pb2.LogLine(level="warning", text=f"{field_name}: {text}"))
        self.queue.append(job.id)
        if len(self.queue) > 1 or self.running:
            position = len(self.queue) + (1 if self.running else 0) - 1
            self.jobs.append(job.id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_QUEUED,
                                                                 message=f"queued (position {position})"))
        self.wakeup.set()
        return self.jobs.get(job.id)

    def cancel(self, job_id: str) -> jobs_pb2.Job:
        job = self.jobs.get(job_id)
        if job.state in TERMINAL:
            raise FailedPrecondition(f"job {job_id} already ended ({jobs_pb2.JobState.Name(job.state)})",
                                     reason="JOB_FINISHED", metadata={"job": job_id})
        if job_id in self.queue:
            self.queue.remove(job_id)
            self.jobs.append(job_id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_CANCELLED,
                                                                 message="cancelled before it started"))
        elif self.running and self.running.job_id == job_id:
            self.running.cancel_requested.set()
            self.jobs.append(job_id, log=jobs_pb2.LogLine(level="info", text="cancel requested; stopping at the next step"))
        return self.jobs.get(job_id)

    def last_checkpoint(self, job_id: str) -> Path | None:
        paths = [Path(e.checkpoint.path) for e in self.jobs.events(job_id) if e.WhichOneof("kind") == "checkpoint"]
        existing = [p for p in paths if p.exists()]
        return existing[-1] if existing else None

    def _adopt_checkpoint(self, job: RunningJob, source: tuple[str, str]) -> Path:
        """Copy another job's checkpoint into this job's checkpoints (recorded as its own, so a restart resumes from
        it too); the path to resume from."""
        found = checkpoint_folder(self.engine.settings.home, *source, "resume_from")
        target = job.job_dir / "checkpoints" / found.name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(found, target)
        job.log(f"resuming from {source[0]}/{found.name}")
        job.checkpoint(int(found.name.removeprefix("checkpoint-")), target)
        return target

    async def watch(self, job_id: str, after: int = 0) -> AsyncIterator[jobs_pb2.JobEvent]:
        """Every event after `after`, live, until the job's final state."""
        sequence = after
        changed = asyncio.Event()  # one per watcher: a watcher clearing it never swallows another's wakeup
        self._watchers.setdefault(job_id, set()).add(changed)
        try:
            while True:
                changed.clear()
                events = self.jobs.events(job_id, sequence)
                for event in events:
                    sequence = event.sequence
                    yield event
                # the final state is the last event of a job, so the store is asked only when nothing new came
                ended = any(e.WhichOneof("kind") == "state" and e.state.state in TERMINAL for e in events[-1:])
                if ended or (not events and self.jobs.get(job_id).state in TERMINAL):
                    if not self.jobs.events(job_id, sequence):
                        return
                    continue
                try:
                    await asyncio.wait_for(changed.wait(), timeout=1.0)
                except TimeoutError:
                    pass
        finally:
            watchers = self._watchers.get(job_id, set())
            watchers.discard(changed)
            if not watchers:
                self._watchers.pop(job_id, None)

    def _on_event(self, event: jobs_pb2.JobEvent) -> None:
        if self.loop is None:
            return
        try:
            self.loop.call_soon_threadsafe(self._notify, event.job_id)
        except RuntimeError:  # the loop closed during shutdown
            pass

    def _notify(self, job_id: str) -> None:
        for changed in self._watchers.get(job_id, ()):
            changed.set()

    async def _work(self) -> None:
        while not self.stopping:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue and not self.stopping:
                await self._run(self.queue.pop(0))

    async def _run(self, job_id: str) -> None:
        job = RunningJob(job_id, self.jobs, self.engine.settings.home, resume_from=self.last_checkpoint(job_id))
        self.running = job
        self.jobs.append(job_id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_RUNNING, message="running"))
        try:
            spec = TrainSpec.from_proto(job.request)  # inside the try: a bad stored request fails its job
            if job.resume_from is None and spec.resume_from:  # a new job starting from an earlier job's checkpoint
                job.resume_from = await asyncio.to_thread(self._adopt_checkpoint, job, spec.resume_from)
            trained = await self.launcher.run(spec, job)
        except JobCancelled as exc:
            if job.shutdown_requested.is_set() and not job.cancel_requested.is_set():
                self.jobs.append(job_id, log=jobs_pb2.LogLine(level="warning",
                                                              text=f"interrupted by shutdown ({exc}); resumes on restart"))
                return
            self.jobs.append(job_id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_CANCELLED, message=str(exc)))
        except ForgewayError as exc:
            self.jobs.append(job_id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_FAILED, message=exc.message))
        except Exception as exc:
            log.error("job %s failed", job_id, exc_info=exc)
            self.jobs.append(job_id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_FAILED,
                                                                 message=f"{type(exc).__name__}: {exc}"))
        else:
            self.jobs.append(job_id, artifact=jobs_pb2.Artifact(model_name=trained.model_name, path=str(trained.path),
                                                                format=trained.format))
            self.jobs.append(job_id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_SUCCEEDED, message="succeeded"))
        finally:
            self.running = None
