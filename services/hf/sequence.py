"""A request in flight (Job) and each of its completions (Choice): text, stops, logprobs, finish, events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from forgeway.server import metrics
from forgeway.core.generation import (
    Completion,
    Delta,
    FinishReason,
    GenerationRequest,
    GenerationResult,
    TokenLogprob,
    apply_stop,
    held_back,
)

from .replies import Reply
from .sampling import Sampler
from .structured import JsonConstraint
from .text import IncrementalText

_END = object()


class Choice:
    """One completion being decoded: turns tokens into text deltas and knows when it is finished."""

    def __init__(self, job: Job, index: int, sampler: Sampler, text: IncrementalText, eos: frozenset[int],
                 max_tokens: int, constraint: JsonConstraint | None = None, reply: Reply | None = None):
        self.job, self.index, self.sampler, self.detok = job, index, sampler, text
        self.eos, self.max_tokens, self.constraint = eos, max_tokens, constraint
        self.reply = reply  # reads content, reasoning and tool calls out of the text, when the request may hold them
        self.stops = job.request.sampling.stop
        self.text = ""  # decoded so far, cut before any stop sequence
        self.sent = 0
        self.tokens = 0
        self.last = -1
        self.finish: FinishReason | None = None
        self.logprobs: list[TokenLogprob] = []
        self.unsent_logprobs: list[TokenLogprob] = []

    @property
    def plain(self) -> bool:
        return self.sampler.plain and self.constraint is None

    @property
    def done(self) -> bool:
        return self.finish is not None or self.job.cancelled

    def accept(self, token: int, logprob: TokenLogprob | None) -> Delta | None:
        """Take the next token (worker thread); return the text it releases, if any."""
        self.tokens += 1
        self.last = token
        self.job.count_tokens()
        self.sampler.observe(token)
        if self.constraint is not None:
            self.constraint.accept(token)
        if logprob is not None:  # one per counted token, the end-of-sequence token included
            self.logprobs.append(logprob)
            self.unsent_logprobs.append(logprob)
        if token in self.eos:
            self.finish = FinishReason.STOP
        else:
            self._extend(self.detok.add(token))
            if self.finish is None and self.constraint is not None and self.constraint.done:
                self.finish = FinishReason.STOP
        if self.finish is None and self.tokens >= self.max_tokens:
            self.finish = FinishReason.LENGTH
        if self.finish in (FinishReason.STOP, FinishReason.LENGTH):
            self._extend(self.detok.flush())
        return self._delta()

    def _extend(self, piece: str) -> None:
        if not piece or self.finish == FinishReason.STOP_SEQUENCE:
            return
        self.text += piece
        if self.stops:
            # only the new piece and the longest stop before it can hold a new match
            start = max(0, len(self.text) - len(piece) - max(map(len, self.stops)))
            cut, stopped = apply_stop(self.text[start:], self.stops)
            if stopped:
                self.text = self.text[:start] + cut
                self.finish = FinishReason.STOP_SEQUENCE

    def _delta(self) -> Delta | None:
        end = len(self.text) if self.finish else len(self.text) - held_back(self.text, self.stops)
        text = self.text[self.sent:end]
        self.sent = max(self.sent, end)
        reasoning, calls = "", []
        if self.reply is not None:
            text, reasoning, calls = self.reply.feed(text, final=self.finish is not None)
        if not (text or reasoning or calls or (self.finish and self.unsent_logprobs)):
            return None
        delta = Delta(self.index, text, self.unsent_logprobs, calls, reasoning)
        self.unsent_logprobs = []
        return delta

    def completion(self) -> Completion:
        reason = self.finish or FinishReason.CANCELLED
        if self.reply is None:
            return Completion(self.index, self.text, reason, self.logprobs, completion_tokens=self.tokens)
        calls = self.reply.calls()
        if calls and not self.reply.cut and reason in (FinishReason.STOP, FinishReason.STOP_SEQUENCE):
            reason = FinishReason.TOOL_CALLS
        return Completion(self.index, self.reply.content, reason, self.logprobs, completion_tokens=self.tokens,
                          tool_calls=calls, reasoning=self.reply.reasoning)


@dataclass(eq=False)
class Job:
    """A request between the event loop and a model's worker thread; events cross by call_soon_threadsafe."""

    request: GenerationRequest
    prompt_ids: list[int]
    model: str
    served_by: str
    adapter: str = ""
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    arrived: float = field(default_factory=time.perf_counter)
    admitted: float = 0.0
    first_token: float = 0.0
    cancelled: bool = False
    finished: bool = False
    choices: list[Choice] = field(default_factory=list)
    encoding: object = None  # the tokenizer's encoding, for tasks that need offsets (QA)
    on_finish: object = None  # the runner's release of the job's slots, called before the final event is posted

    def __post_init__(self):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.tokens_metric = metrics.TOKENS.labels("hf", self.model, "completion")

    @property
    def n(self) -> int:
        return self.request.n

    def count_tokens(self, count: int = 1) -> None:
        self.tokens_metric.inc(count)
        if not self.first_token:
            self.first_token = time.perf_counter()

    def post(self, events: list) -> None:
        """Hand events to the waiting coroutine (from any thread)."""
        if events:
            try:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, events)
            except RuntimeError:  # the loop closed: nobody is listening any more
                pass

    def step_events(self, deltas: list[Delta | None]) -> None:
        """Post this step's deltas, and the result once every choice is finished."""
        events: list = [d for d in deltas if d is not None]
        if not self.finished and self.choices and all(c.finish for c in self.choices):
            self._finish()
            events += [self.result(), _END]
        self.post(events)

    def _finish(self) -> None:
        self.finished = True
        if self.on_finish is not None:
            self.on_finish(self)

    def fail(self, error: BaseException) -> None:
        self._finish()
        self.post([error])

    def finish_with(self, deltas: list[Delta], choices: list[Completion]) -> None:
        """Post a whole answer at once (tasks that do not decode token by token)."""
        self._finish()
        self.post([*deltas, self.result(choices), _END])

    def result(self, choices: list[Completion] | None = None) -> GenerationResult:
        done = time.perf_counter()
        ms = lambda t: max(0.0, (t - self.arrived) * 1000)  # noqa: E731
        choices = choices if choices is not None else [c.completion() for c in self.choices]
        tokens = sum(c.completion_tokens for c in choices)
        if self.first_token:
            metrics.TIME_TO_FIRST_TOKEN.labels("hf", self.model).observe(self.first_token - self.arrived)
            if tokens > self.n:
                metrics.TIME_PER_OUTPUT_TOKEN.labels("hf", self.model).observe(
                    (done - self.first_token) / max(1, tokens - self.n) * self.n)
        return GenerationResult(
            model=self.model,
            choices=choices,
            prompt_tokens=len(self.prompt_ids),
            queue_ms=ms(self.admitted) if self.admitted else 0.0,
            time_to_first_token_ms=ms(self.first_token) if self.first_token else 0.0,
            total_ms=ms(done),
            served_by=self.served_by,
        )

    async def events(self) -> AsyncIterator[Delta | GenerationResult]:
        while True:
            for event in await self.queue.get():
                if event is _END:
                    return
                if isinstance(event, BaseException):
                    raise event
                yield event
