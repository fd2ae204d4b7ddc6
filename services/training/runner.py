"""JobRunner: one training job per device at a time, the rest queued; cancel, restart recovery, live watching."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from forgeway.services.runtime.errors import FailedPrecondition, ForgewayError, ResourceExhausted
from forgeway.v1 import jobs_pb2, train_pb2

from .engine import JobCancelled, JobContext, TrainingEngine
from .jobs import TERMINAL, JobStore
from .launchers import Launcher, choose_launcher
from .spec import TrainSpec

log = logging.getLogger("forgeway.training")


class JobRunner:
    """Owns the job queue of one trainer service and the JobStore behind it."""

    def __init__(self, engine: TrainingEngine):
        self.engine = engine
        self.loop: asyncio.AbstractEventLoop | None = None
        self.jobs = JobStore(engine.settings.home / "jobs.db", on_event=self._on_event)
        self.queue: list[str] = []
        self.wakeup = asyncio.Event()
        self.running: JobContext | None = None
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

    def submit(self, request: train_pb2.TrainRequest, spec: TrainSpec,
               fallback: jobs_pb2.Fallback | None = None) -> jobs_pb2.Job:
        if len(self.queue) >= self.engine.settings.max_queued_jobs:
            raise ResourceExhausted(f"{len(self.queue)} jobs already queued", retry_after=60, quota="queued_jobs")
        job = self.jobs.create(request, self.engine.kind, spec.method)
        if fallback is not None:  # recorded before the job can start
            self.jobs.append(job.id, fallback=fallback)
        self.queue.append(job.id)
        if len(self.queue) > 1 or self.running:
            position = len(self.queue) + (1 if self.running else 0) - 1
            self.jobs.append(job.id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_QUEUED,
                                                                 message=f"queued (position {position})"))
        self.wakeup.set()
        return job

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
        job = JobContext(job_id, self.jobs, self.engine.settings.home, resume_from=self.last_checkpoint(job_id))
        self.running = job
        self.jobs.append(job_id, state=jobs_pb2.StateChange(state=jobs_pb2.JOB_STATE_RUNNING, message="running"))
        try:
            spec = TrainSpec.from_proto(self.jobs.request(job_id))  # inside the try: a bad stored request fails its job
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
