"""Each embedding or rerank model's worker thread: requests queue their inputs, and one forward pass takes whatever is
waiting (up to the batch size), so many small calls become one pass, as generation's scheduler does with decoding."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import Tensor

from forgeway.core.embeddings import Embedding, EmbeddingRequest, EmbeddingResult, RerankRequest, RerankResult
from forgeway.core.errors import ResourceExhausted, Unavailable
from forgeway.server import metrics

from .encoders import LoadedEncoder, Row
from .scheduler import ModelWorker


@dataclass(eq=False)
class Work:
    """One request's rows; its outputs arrive pass by pass, and `finish` turns them into the request's answer."""

    rows: list[Row]
    finish: Callable[[Tensor], object]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    taken: int = 0  # rows handed to a forward pass so far
    outputs: list[Tensor] = field(default_factory=list)
    cancelled: bool = False


class EncoderRunner(ModelWorker):
    """One loaded encoder's waiting line of requests and the forward passes its worker thread runs over them."""

    def __init__(self, loaded: LoadedEncoder, name: str, batch_size: int, max_queue: int,
                 on_queue: Callable[[], None] = lambda: None):
        super().__init__(loaded, name, batch_size, max_queue, on_queue)
        self.pending: deque[Work] = deque()
        self.running: set[Work] = set()
        self.seconds_per_pass = 0.05  # moving average: retry_after, and how long a pass waits for arrivals
        self.arriving = 0  # requests admitted and being tokenized
        self.batch_sizes = metrics.EMBEDDING_BATCH_SIZE.labels("hf", name)

    def waiting(self) -> list[Work]:
        return list(self.pending)

    def refuse(self, item: Work, error: Exception) -> None:
        _settle(item.future, exc=error)

    def reset(self, exc: Exception) -> None:
        super().reset(exc)
        self.running = set()

    # -- requests (event loop) -------------------------------------------------------------------------------------

    async def serve(self, request: EmbeddingRequest | RerankRequest, name: str, served_by: str):
        """The EmbeddingResult or RerankResult of a request admit() accepted for this model."""
        loaded = self.loaded
        if isinstance(request, RerankRequest):
            rows, scores = await self.submit(
                partial(loaded.pair_rows, request.query, request.documents, request.truncation), Tensor.tolist)
            tokens = sum(len(row.ids) for row in rows)
            metrics.TOKENS.labels("hf", name, "prompt").inc(tokens)
            return RerankResult(name, scores, tokens, served_by, request=request)
        rows, vectors = await self.submit(partial(loaded.embedding_rows, request),
                                          partial(loaded.vectors, dimensions=request.dimensions,
                                                  normalize=request.normalize))
        metrics.TOKENS.labels("hf", name, "prompt").inc(sum(len(row.ids) for row in rows))
        return EmbeddingResult(name, [Embedding(i, values, len(row.ids), row.truncated)
                                      for i, (values, row) in enumerate(zip(vectors, rows))], served_by)

    async def submit(self, tokenize: Callable[[], list[Row]], finish: Callable[[Tensor], object]):
        """Tokenize (off the loop), then queue the rows, or refuse when the waiting line is full. Returns the rows
        and what `finish` made of their outputs; a cancelled caller leaves its batch mates' pass be."""
        with self.cond:
            self.arriving += 1  # the worker may wait for it rather than start a pass without it
        try:
            rows = await asyncio.to_thread(tokenize)
        except BaseException:
            with self.cond:
                self.arriving -= 1
                self.cond.notify_all()
            raise
        work = Work(rows, finish)
        with self.cond:
            self.arriving -= 1
            self.cond.notify_all()
            if self.stopping:
                raise Unavailable(f"model {self.name!r} is shutting down", retry_after=1.0)
            if (self.pending or self.running) and len(self.pending) >= self.max_queue:
                retry = min(30.0, max(0.1, round(self.seconds_per_pass * (self._rows_waiting() / self.slots + 1), 1)))
                raise ResourceExhausted(f"model {self.name!r} is busy: {len(self.pending)} requests waiting "
                                        f"(limit {self.max_queue})", retry_after=retry, quota="max_queue")
            self.pending.append(work)
        self.on_queue()
        try:
            return rows, await asyncio.wrap_future(work.future)
        except asyncio.CancelledError:
            with self.cond:
                work.cancelled = True
                if work in self.pending:
                    self.pending.remove(work)
            self.on_queue()
            raise

    # -- the worker thread -----------------------------------------------------------------------------------------

    def _take(self) -> list[tuple[Work, int, int]]:
        """(work, first row, end row) slices filling one pass, oldest request first (called holding cond)."""
        room, taken = self.slots, []
        while self.pending and room:
            work = self.pending[0]
            if work.cancelled or (work.taken == 0 and not work.future.set_running_or_notify_cancel()):
                self.pending.popleft()
                continue
            count = min(room, len(work.rows) - work.taken)
            taken.append((work, work.taken, work.taken + count))
            work.taken += count
            room -= count
            if work.taken == len(work.rows):
                self.pending.popleft()
        self.running = {work for work, _, _ in taken}
        return taken

    def active(self) -> bool:
        return False

    def _rows_waiting(self) -> int:
        return sum(len(work.rows) - work.taken for work in self.pending)

    def cycle(self) -> None:
        with self.cond:
            # Requests being tokenized join this pass if they arrive within what a pass takes: a pass started
            # without them would leave them a pass of their own.
            deadline = time.perf_counter() + self.seconds_per_pass
            while self.arriving and not self.stopping and self._rows_waiting() < self.slots:
                if not self.cond.wait(max(0.0, deadline - time.perf_counter())):
                    break
            batch = self._take()
        if batch:
            self.on_queue()
            self._pass(batch)

    def _pass(self, batch: list[tuple[Work, int, int]]) -> None:
        rows = [row for work, first, end in batch for row in work.rows[first:end]]
        started = time.perf_counter()
        try:
            out = self.loaded.forward(rows)
        except Exception:
            with self.cond:  # a request split over passes leaves the line too
                for work, _, _ in batch:
                    if work in self.pending:
                        self.pending.remove(work)
            raise  # the worker logs it and fails the running requests (reset)
        self.seconds_per_pass = 0.8 * self.seconds_per_pass + 0.2 * (time.perf_counter() - started)
        self.batch_sizes.observe(len(rows))
        self.running = set()
        at = 0
        for work, first, end in batch:
            work.outputs.append(out[at:at + end - first])
            at += end - first
            if end == len(work.rows) and not work.cancelled:
                try:
                    _settle(work.future, result=work.finish(torch.cat(work.outputs)))
                except Exception as exc:
                    _settle(work.future, exc=exc)


def _settle(future: concurrent.futures.Future, result: object = None, exc: BaseException | None = None) -> None:
    """Resolve a future unless it is already resolved (stop() and a pass can race on a request split over passes)."""
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
