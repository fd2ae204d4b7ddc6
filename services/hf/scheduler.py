"""Each model's worker thread (ModelWorker); for generation a priority queue of jobs, batch slots, and the batched
decode loop for causal LMs."""

from __future__ import annotations

import abc
import concurrent.futures
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

import torch
from transformers import DynamicCache

from forgeway.server import metrics
from forgeway.core.errors import Internal, InvalidArgument, ResourceExhausted, Unavailable
from .batch import DecodeBatch
from .decode import emit_tokens
from .models import BASE, LoadedModel
from .sequence import Job

log = logging.getLogger("forgeway.hf")


class ModelWorker(abc.ABC):
    """Owns one loaded model's worker thread: it runs calls (adapter changes) between units of work, and fails what
    waits or runs when the model stops. Subclasses keep the waiting line (`pending`) and what runs (`running`)."""

    def __init__(self, loaded, name: str, slots: int, max_queue: int, on_queue: Callable[[], None] = lambda: None):
        self.loaded, self.name, self.slots, self.max_queue = loaded, name, slots, max_queue
        self.on_queue = on_queue
        self.cond = threading.Condition()
        self.pending: list = []
        self.running: set = set()
        self.calls: list[tuple[Callable[[], object], concurrent.futures.Future]] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"hf-{name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self.cond:
            self.stopping = True
            waiting = self.waiting()
            self.pending.clear()
            self.cond.notify_all()
        for item in waiting:
            self.refuse(item, Unavailable(f"model {self.name!r} is shutting down", retry_after=1.0))
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.on_queue()

    @property
    def queued(self) -> int:
        return len(self.pending)

    def call(self, fn: Callable[[], object]) -> concurrent.futures.Future:
        """Run fn on the worker thread between steps (adapter loading touches the model)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self.cond:
            self.calls.append((fn, future))
            self.cond.notify_all()
        return future

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self.cond:
                    while not (self.stopping or self.calls or self.pending or self.active()):
                        self.cond.wait()
                    if self.stopping:
                        break
                    calls, self.calls = self.calls, []
                for fn, future in calls:
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # handed to the caller
                        future.set_exception(exc)
                try:
                    self.cycle()
                except Exception as exc:
                    log.exception("model %s: %s failed", self.name, self.loaded.task.value)
                    self.reset(exc)
        for item in list(self.running):
            self.refuse(item, Unavailable(f"model {self.name!r} is shutting down", retry_after=1.0))

    def reset(self, exc: Exception) -> None:
        """After a failed step: fail what it touched and start clean."""
        for item in list(self.running):
            self.refuse(item, Internal(f"{self.loaded.task.value} failed on model {self.name!r}"))

    @abc.abstractmethod
    def waiting(self) -> list:
        """What waits in the line, to refuse when the model stops (called holding cond)."""

    @abc.abstractmethod
    def refuse(self, item, error: Exception) -> None:
        """Answer a waiting or running item with an error."""

    @abc.abstractmethod
    def active(self) -> bool:
        """Whether work is under way (the loop keeps stepping)."""

    @abc.abstractmethod
    def cycle(self) -> None:
        """One unit of work on the worker thread."""


class Runner(ModelWorker):
    """Generation: waiting jobs (by priority, then arrival) and batch slots."""

    def __init__(self, loaded: LoadedModel, name: str, slots: int, max_queue: int,
                 on_queue: Callable[[], None] = lambda: None):
        super().__init__(loaded, name, slots, max_queue, on_queue)
        self.pending: list[tuple[int, int, Job]] = []
        self.order = itertools.count()
        self.running: set[Job] = set()
        self.busy = 0  # slots (sequences) held by running jobs
        self.seconds_per_job = 1.0  # moving average, for retry_after

    def waiting(self) -> list[Job]:
        return [job for _, _, job in self.pending]

    def refuse(self, item: Job, error: Exception) -> None:
        item.fail(error)

    def submit(self, job: Job) -> None:
        """Queue a job, or refuse it when the waiting line is full."""
        if job.n > self.slots:
            raise InvalidArgument("n", f"at most {self.slots} (the batch slots of model {self.name!r})")
        with self.cond:
            if self.stopping:
                raise Unavailable(f"model {self.name!r} is shutting down", retry_after=1.0)
            free, running, waiting = self.slots - self.busy, len(self.running), 0
            for _, _, queued in sorted(self.pending):
                if waiting == 0 and self.fits(queued.n, free, running):
                    free, running = free - queued.n, running + 1
                else:
                    waiting += 1
            if (waiting or not self.fits(job.n, free, running)) and waiting >= self.max_queue:
                retry = min(30.0, max(0.1, round(self.seconds_per_job * (waiting + 1) / self.slots, 1)))
                raise ResourceExhausted(
                    f"model {self.name!r} is busy: {len(self.running)} running, {waiting} waiting"
                    f" (limit {self.max_queue})",
                    retry_after=retry, quota="max_queue")
            heapq.heappush(self.pending, (-job.request.priority, next(self.order), job))
            self.cond.notify_all()
        self.on_queue()

    def cancel(self, job: Job) -> None:
        """Stop a job: drop it from the queue, or let the worker drop its rows before the next step."""
        job.cancelled = True
        with self.cond:
            kept = [entry for entry in self.pending if entry[2] is not job]
            if len(kept) != len(self.pending):
                self.pending = kept
                heapq.heapify(self.pending)
            self.cond.notify_all()
        self.on_queue()

    def _take(self) -> list[Job]:
        """Jobs that fit the free slots now, highest priority first (worker thread)."""
        taken: list[Job] = []
        with self.cond:
            while self.pending:
                job = self.pending[0][2]
                if job.cancelled:
                    heapq.heappop(self.pending)
                    continue
                if not self.fits(job.n, self.slots - self.busy, len(self.running)):
                    break
                heapq.heappop(self.pending)
                self.busy += job.n
                self.running.add(job)
                job.on_finish = self._release
                job.admitted = time.perf_counter()
                taken.append(job)
        if taken:
            self.on_queue()
        return taken

    def _release(self, job: Job) -> None:
        with self.cond:
            if job in self.running:
                self.running.discard(job)
                self.busy -= job.n
                self.seconds_per_job = 0.8 * self.seconds_per_job + 0.2 * (time.perf_counter() - job.arrived)

    def fits(self, n: int, free_slots: int, running_jobs: int) -> bool:
        """Whether a job of n sequences can start now."""
        return n <= free_slots


class CausalRunner(Runner):
    """Continuous batching for causal LMs: new jobs are prefilled between decode steps and join the running batch."""

    batch: DecodeBatch | None = None

    def active(self) -> bool:
        return self.batch is not None

    def cycle(self) -> None:
        self._drop_done()
        if self.batch is None or self.batch.flexible:
            joiners = self._take()
            if joiners:
                self._prefill(joiners)
        if self.batch is not None:
            self._step()

    def _forward(self, rows_adapters: list[str], **inputs) -> torch.Tensor:
        model = self.loaded.model
        inputs[self.loaded.cache_arg] = inputs.pop("cache")
        if not self.loaded.keeps_logits:
            inputs.pop("logits_to_keep", None)
        if self.loaded.adapters:
            inputs["adapter_names"] = rows_adapters
        return model(use_cache=True, **inputs).logits[:, -1, :]

    def _prefill(self, jobs: list[Job]) -> None:
        device = self.loaded.device
        width = max(len(job.prompt_ids) for job in jobs)
        pad = self.loaded.tokenizer.pad_token_id or 0
        ids = torch.full((len(jobs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for i, job in enumerate(jobs):
            ids[i, width - len(job.prompt_ids):] = torch.tensor(job.prompt_ids)
            mask[i, width - len(job.prompt_ids):] = 1
            metrics.TOKENS.labels("hf", job.model, "prompt").inc(len(job.prompt_ids))
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        try:
            logits = self._forward([job.adapter or BASE for job in jobs], input_ids=ids, attention_mask=mask,
                                   position_ids=positions, cache=cache, logits_to_keep=1)
        except Exception:
            for job in jobs:  # the running batch is untouched: only these jobs fail
                job.fail(Internal(f"prefill failed on model {self.name!r}"))
            log.exception("model %s: prefill failed", self.name)
            return
        counts = [job.n for job in jobs]
        joined = DecodeBatch([], cache, mask, positions[:, -1] + 1)
        joined.repeat_rows(counts)
        joined.rows = [choice for job in jobs for choice in job.choices]
        logits = logits.repeat_interleave(torch.tensor(counts, device=logits.device), dim=0)
        emit_tokens(self.loaded, joined.rows, logits)
        if self.batch is None:
            self.batch = joined
        else:
            self.batch.merge(joined)
        self._drop_done()

    def _step(self) -> None:
        batch = self.batch
        mask = batch.advance()
        last = torch.tensor([[row.last] for row in batch.rows], dtype=torch.long, device=self.loaded.device)
        logits = self._forward([row.job.adapter or BASE for row in batch.rows], input_ids=last,
                               attention_mask=mask, position_ids=batch.positions[:, None], cache=batch.cache)
        batch.positions = batch.positions + 1
        emit_tokens(self.loaded, batch.rows, logits)
        self._drop_done()

    def _drop_done(self) -> None:
        if self.batch is None:
            return
        for row in self.batch.rows:
            if row.job.cancelled:
                self._release(row.job)
        keep = [i for i, row in enumerate(self.batch.rows) if not row.done]
        if not keep:
            self.batch = None
        else:
            self.batch.select(keep)

    def reset(self, exc: Exception) -> None:
        self.batch = None
        super().reset(exc)
