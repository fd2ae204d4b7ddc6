"""Generation domain types, validated on the way in (from_proto) and converted on the way out (to_proto)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

from forgeway.v1 import generate_pb2

from .enums import FINISH_REASON, TASK
from .errors import InvalidArgument
from .tools import Tool, ToolCall, ToolCallDelta, ToolChoice, parse_tools

MAX_N = 16
MAX_TOP_LOGPROBS = 20
MAX_STOP_SEQUENCES = 8
# The chat roles a message may have (OpenAI's set); anything else is rejected naming the message's role.
ROLES = ("system", "developer", "user", "assistant", "tool")


class Task(str, Enum):
    TEXT_GENERATION = "text-generation"
    SUMMARIZATION = "summarization"
    EXTRACTIVE_QA = "extractive-question-answering"
    EMBEDDING = "embedding"
    RERANK = "rerank"

    @classmethod
    def from_proto(cls, value: int) -> Task | None:
        name = TASK.name(value)
        return cls(name) if name else None

    def to_proto(self) -> int:
        return TASK.to_value[self.value]


# What the trainers train for; embedding and rerank models are served, not trained here.
TRAINED_TASKS = (Task.TEXT_GENERATION, Task.SUMMARIZATION, Task.EXTRACTIVE_QA)


class FinishReason(str, Enum):
    STOP = "stop"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"
    CANCELLED = "cancelled"
    ERROR = "error"
    TOOL_CALLS = "tool_calls"

    def to_proto(self) -> int:
        return FINISH_REASON.to_value[self.value]


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    reasoning: str = ""

    def to_template(self) -> dict:
        """The message as chat templates take it (tool calls with their arguments as objects)."""
        message: dict = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [c.to_template() for c in self.tool_calls]
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        return message

    @classmethod
    def from_proto(cls, msg: generate_pb2.Message, index: int) -> ChatMessage:
        where = f"messages[{index}]"
        if not msg.role:
            raise InvalidArgument(f"{where}.role", "required")
        if msg.role not in ROLES:
            raise InvalidArgument(f"{where}.role", f"unknown role {msg.role!r}; allowed: {', '.join(ROLES)}")
        if msg.tool_calls and msg.role != "assistant":
            raise InvalidArgument(f"{where}.tool_calls", f"only assistant messages call tools, not {msg.role!r}")
        if msg.role == "tool" and not msg.tool_call_id:
            raise InvalidArgument(f"{where}.tool_call_id", "required on a tool message")
        if msg.tool_call_id and msg.role != "tool":
            raise InvalidArgument(f"{where}.tool_call_id", f"only tool messages answer calls, not {msg.role!r}")
        calls = tuple(ToolCall.from_proto(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(msg.tool_calls))
        return cls(msg.role, msg.content, calls, msg.tool_call_id, msg.reasoning)


def check_history(messages: tuple[ChatMessage, ...]) -> None:
    """Every tool message answers a call an earlier assistant message made."""
    called: set[str] = set()
    for i, m in enumerate(messages):
        called.update(c.id for c in m.tool_calls)
        if m.role == "tool" and m.tool_call_id not in called:
            raise InvalidArgument(f"messages[{i}].tool_call_id",
                                  f"{m.tool_call_id!r} answers no earlier assistant tool call")


@dataclass(frozen=True)
class Sampling:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return not self.temperature

    def set_params(self) -> set[str]:
        """Names of the sampling parameters the request set (beyond max_tokens, stop and seed)."""
        names = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
        return {n for n in names if getattr(self, n) is not None}

    @classmethod
    def from_proto(cls, msg: generate_pb2.SamplingParams) -> Sampling:
        def opt(name: str):
            return getattr(msg, name) if msg.HasField(name) else None

        s = cls(
            max_tokens=opt("max_tokens"),
            temperature=opt("temperature"),
            top_p=opt("top_p"),
            top_k=opt("top_k"),
            min_p=opt("min_p"),
            repetition_penalty=opt("repetition_penalty"),
            presence_penalty=opt("presence_penalty"),
            frequency_penalty=opt("frequency_penalty"),
            seed=opt("seed"),
            stop=tuple(msg.stop),
        )
        s.validate()
        return s

    def validate(self) -> None:
        checks = [
            ("max_tokens", self.max_tokens is not None and self.max_tokens < 1, "must be at least 1"),
            ("temperature", self.temperature is not None and not 0 <= self.temperature <= 2, "must be in [0, 2]"),
            ("top_p", self.top_p is not None and not 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("min_p", self.min_p is not None and not 0 <= self.min_p <= 1, "must be in [0, 1]"),
            ("repetition_penalty", self.repetition_penalty is not None and self.repetition_penalty <= 0, "must be > 0"),
            ("presence_penalty", self.presence_penalty is not None and not -2 <= self.presence_penalty <= 2, "must be in [-2, 2]"),
            ("frequency_penalty", self.frequency_penalty is not None and not -2 <= self.frequency_penalty <= 2, "must be in [-2, 2]"),
            ("stop", len(self.stop) > MAX_STOP_SEQUENCES, f"at most {MAX_STOP_SEQUENCES} stop sequences"),
            ("stop", any(not s for s in self.stop), "stop sequences must not be empty"),
        ]
        for name, bad, why in checks:
            if bad:
                raise InvalidArgument(f"sampling.{name}", why)


@dataclass(frozen=True)
class GenerationRequest:
    """One validated generation request, independent of transport."""

    model: str
    prompt: str | None = None
    messages: tuple[ChatMessage, ...] = ()
    document: str | None = None
    question: str | None = None
    context: str | None = None
    task: Task | None = None
    n: int = 1
    sampling: Sampling = field(default_factory=Sampling)
    json_schema: dict | None = None
    json_object: bool = False
    grammar: str | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    adapter: str = ""
    backend: str = ""
    priority: int = 0
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = field(default_factory=lambda: ToolChoice("none"))
    parallel_tool_calls: bool = True
    thinking: bool | None = None

    @property
    def calls_tools(self) -> bool:
        """The model may call tools in its answer (tools given, tool_choice not none)."""
        return bool(self.tool_choice.callable(self.tools))

    @property
    def template_messages(self) -> list[dict]:
        return [m.to_template() for m in self.messages]

    @property
    def template_tools(self) -> list[dict] | None:
        """The tools as the chat template takes them; None when the request has none. Under tool_choice none they are
        still rendered (as OpenAI and vLLM do: the model sees what it called earlier) but no call is read back."""
        return [t.to_template() for t in self.tools] if self.tools else None

    @property
    def input_task(self) -> Task:
        """The task the input implies."""
        if self.document is not None:
            return Task.SUMMARIZATION
        if self.question is not None:
            return Task.EXTRACTIVE_QA
        return Task.TEXT_GENERATION

    def features(self) -> set[str]:
        """Feature names this request needs, as GenerationFeatures names them."""
        wanted = set(self.sampling.set_params())
        if self.logprobs:
            wanted.add("logprobs")
        if self.json_schema is not None or self.json_object:
            wanted.add("json_schema")
        if self.grammar is not None:
            wanted.add("grammar")
        if self.sampling.stop:
            wanted.add("stop")
        if self.sampling.seed is not None:
            wanted.add("seed")
        if self.n > 1:
            wanted.add("multiple_choices")
        if self.adapter:
            wanted.add("adapters")
        if self.tools or any(m.tool_calls or m.role == "tool" for m in self.messages):
            wanted.add("tools")
        if self.thinking is not None:
            wanted.add("reasoning")
        return wanted

    @classmethod
    def from_proto(cls, msg: generate_pb2.GenerateRequest) -> GenerationRequest:
        if not msg.model:
            raise InvalidArgument("model", "required")
        inputs = [
            name
            for name, present in (
                ("prompt", msg.HasField("prompt")),
                ("messages", len(msg.messages) > 0),
                ("summarize", msg.HasField("summarize")),
                ("question_answer", msg.HasField("question_answer")),
            )
            if present
        ]
        if len(inputs) != 1:
            what = "none is set" if not inputs else f"got {', '.join(inputs)}"
            raise InvalidArgument("prompt", f"exactly one of prompt, messages, summarize, question_answer is required; {what}")
        messages = tuple(ChatMessage.from_proto(m, i) for i, m in enumerate(msg.messages))
        check_history(messages)
        tools, tool_choice = parse_tools(msg.tools, msg.tool_choice, msg.HasField("tool_choice"))
        if tools and not messages:
            raise InvalidArgument("tools", "tools need chat messages, not a prompt")
        if msg.HasField("question_answer"):
            if not msg.question_answer.question:
                raise InvalidArgument("question_answer.question", "required")
            if not msg.question_answer.context:
                raise InvalidArgument("question_answer.context", "required")
        if msg.HasField("summarize") and not msg.summarize.document:
            raise InvalidArgument("summarize.document", "required")
        n = msg.n or 1
        if n > MAX_N:
            raise InvalidArgument("n", f"must be at most {MAX_N}")
        if msg.top_logprobs > MAX_TOP_LOGPROBS:
            raise InvalidArgument("top_logprobs", f"must be at most {MAX_TOP_LOGPROBS}")
        if msg.top_logprobs and not msg.logprobs:
            raise InvalidArgument("top_logprobs", "requires logprobs")
        json_schema = None
        structured = msg.structured_output.WhichOneof("format") if msg.HasField("structured_output") else None
        if structured == "json_schema":
            try:
                json_schema = json.loads(msg.structured_output.json_schema)
            except json.JSONDecodeError as exc:
                raise InvalidArgument("structured_output.json_schema", f"not valid JSON: {exc}") from None
            if not isinstance(json_schema, dict):
                raise InvalidArgument("structured_output.json_schema", "must be a JSON object")
        grammar = msg.structured_output.grammar if structured == "grammar" else None
        if structured and tool_choice.forced:
            raise InvalidArgument("tool_choice", f"{tool_choice.mode!r} constrains the output to tool calls; it "
                                                 "cannot be combined with structured_output")
        if structured == "grammar" and not grammar:
            raise InvalidArgument("structured_output.grammar", "must not be empty")
        return cls(
            model=msg.model,
            prompt=msg.prompt if msg.HasField("prompt") else None,
            messages=messages,
            document=msg.summarize.document if msg.HasField("summarize") else None,
            question=msg.question_answer.question if msg.HasField("question_answer") else None,
            context=msg.question_answer.context if msg.HasField("question_answer") else None,
            task=Task.from_proto(msg.task),
            n=n,
            sampling=Sampling.from_proto(msg.sampling),
            json_schema=json_schema,
            json_object=structured == "json_object" and msg.structured_output.json_object,
            grammar=grammar,
            logprobs=msg.logprobs,
            top_logprobs=msg.top_logprobs,
            adapter=msg.adapter,
            backend=msg.backend,
            priority=msg.priority,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=msg.parallel_tool_calls if msg.HasField("parallel_tool_calls") else True,
            thinking=msg.thinking if msg.HasField("thinking") else None,
        )


@dataclass
class TokenLogprob:
    token: str
    token_bytes: bytes
    logprob: float
    top: list[tuple[str, bytes, float]] = field(default_factory=list)

    def to_proto(self) -> generate_pb2.TokenLogprob:
        return generate_pb2.TokenLogprob(
            token=self.token,
            token_bytes=self.token_bytes,
            logprob=self.logprob,
            top_logprobs=[generate_pb2.TopLogprob(token=t, token_bytes=b, logprob=lp) for t, b, lp in self.top],
        )


@dataclass
class Delta:
    """New text of one choice, whole UTF-8 characters only."""

    index: int
    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    reasoning: str = ""

    def to_proto(self) -> generate_pb2.GenerateStreamResponse:
        return generate_pb2.GenerateStreamResponse(
            delta=generate_pb2.GenerateDelta(
                index=self.index, text=self.text, logprobs=[lp.to_proto() for lp in self.logprobs],
                tool_calls=[c.to_proto() for c in self.tool_calls], reasoning=self.reasoning,
            )
        )


@dataclass
class AnswerSpan:
    start: int
    end: int
    score: float


@dataclass
class Completion:
    index: int
    text: str
    finish_reason: FinishReason
    logprobs: list[TokenLogprob] = field(default_factory=list)
    answer_span: AnswerSpan | None = None
    completion_tokens: int = 0
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str = ""

    def to_proto(self) -> generate_pb2.Choice:
        choice = generate_pb2.Choice(
            index=self.index,
            text=self.text,
            finish_reason=self.finish_reason.to_proto(),
            logprobs=[lp.to_proto() for lp in self.logprobs],
            tool_calls=[c.to_proto() for c in self.tool_calls],
            reasoning=self.reasoning,
        )
        if self.answer_span is not None:
            span = self.answer_span
            choice.answer_span.CopyFrom(generate_pb2.AnswerSpan(start=span.start, end=span.end, score=span.score))
        return choice


@dataclass
class GenerationResult:
    """The final outcome of a generation: every choice, usage and timings."""

    model: str
    choices: list[Completion]
    prompt_tokens: int
    queue_ms: float = 0.0
    time_to_first_token_ms: float = 0.0
    total_ms: float = 0.0
    served_by: str = ""

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)

    def to_proto(self) -> generate_pb2.GenerateResponse:
        return generate_pb2.GenerateResponse(
            model=self.model,
            choices=[c.to_proto() for c in self.choices],
            usage=generate_pb2.Usage(
                prompt_tokens=self.prompt_tokens,
                completion_tokens=self.completion_tokens,
                total_tokens=self.prompt_tokens + self.completion_tokens,
            ),
            timings=generate_pb2.Timings(
                queue_ms=self.queue_ms, time_to_first_token_ms=self.time_to_first_token_ms, total_ms=self.total_ms
            ),
            served_by=self.served_by,
        )


def apply_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """Cut text before the earliest stop sequence. Returns (text, whether a stop was found)."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters could start a stop sequence, and so must not be streamed yet."""
    longest = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                longest = max(longest, k)
                break
    return longest
