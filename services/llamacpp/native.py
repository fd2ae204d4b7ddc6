"""The contract's generation request in llama-server's native terms, and its answers back as deltas and choices.

A prompt goes to `/completion` (llama.cpp's own API: stop type, token probabilities); messages go to
`/v1/chat/completions`, where llama-server applies the GGUF's chat template with its end-of-turn stops, reads
reasoning apart from the content and tool calls (tools.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from forgeway.core.errors import InvalidArgument, ResourceExhausted, Unavailable
from forgeway.core.generation import Completion, Delta, FinishReason, GenerationRequest, TokenLogprob
from forgeway.core.tools import ToolCall, ToolCallAssembler, ToolCallDelta

from . import tools
from .settings import ModelConfig

# /completion's stop_type -> the contract's finish reason
STOP_TYPES = {"eos": FinishReason.STOP, "word": FinishReason.STOP_SEQUENCE, "limit": FinishReason.LENGTH}


def sampling(request: GenerationRequest, config: ModelConfig, choice: int) -> dict:
    """llama-server's sampling fields: the request's, else the model's defaults (greedy unless configured)."""
    s = request.sampling
    seed = s.seed if s.seed is not None else config.seed
    body = {
        "temperature": config.temperature if s.temperature is None else s.temperature,
        "top_p": config.top_p if s.top_p is None else s.top_p,
        "top_k": config.top_k if s.top_k is None else s.top_k,
        "min_p": config.min_p if s.min_p is None else s.min_p,
        "repeat_penalty": config.repeat_penalty if s.repetition_penalty is None else s.repetition_penalty,
        "presence_penalty": s.presence_penalty or 0.0,
        "frequency_penalty": s.frequency_penalty or 0.0,
        "seed": (seed + choice) & 0xFFFFFFFF if seed >= 0 else -1,
        "cache_prompt": True,
    }
    if request.grammar is not None:
        body["grammar"] = request.grammar
    elif request.json_schema is not None:
        body["json_schema"] = request.json_schema
    elif request.json_object:
        body["json_schema"] = {"type": "object"}
    return body


# What the service reads of a /completion answer: llama-server leaves out the rest (its settings echo, the prompt).
COMPLETION_FIELDS = ["content", "stop", "stop_type", "tokens_predicted", "tokens_evaluated", "completion_probabilities",
                     "timings", "error"]


def completion_body(request: GenerationRequest, config: ModelConfig, prompt: str | list[int], max_tokens: int,
                    choice: int) -> dict:
    body = {"prompt": prompt, "n_predict": max_tokens, "stream": True, "stop": list(request.sampling.stop),
            "response_fields": COMPLETION_FIELDS, **sampling(request, config, choice)}
    if request.logprobs:
        body["n_probs"] = max(request.top_logprobs, 1)
    return body


def chat_body(request: GenerationRequest, config: ModelConfig, max_tokens: int, choice: int,
              call_grammar: str | None = None) -> dict:
    """Stop sequences are not sent: the service finds them itself, so it can tell them from the end of a turn."""
    body = {"messages": request.template_messages, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, **sampling(request, config, choice),
            **tools.chat_fields(request, call_grammar)}
    if request.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = max(request.top_logprobs, 1)  # with 0, llama-server sends no logprobs at all
    return body


@dataclass
class ChoiceState:
    """What one choice has produced so far."""

    index: int
    text: str = ""
    sent: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    pending: list[TokenLogprob] = field(default_factory=list)
    tokens: int = 0
    prompt_tokens: int = 0
    reason: FinishReason | None = None
    after_first_ms: float = 0.0
    on_token: Callable[[], None] = lambda: None  # counts generated tokens as they arrive (metrics)
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    forced: bool = False  # the answer is the calls as JSON (a forced tool choice), never text
    pending_reasoning: str = ""
    pending_calls: list[ToolCallDelta] = field(default_factory=list)
    call_ids: dict[int, str] = field(default_factory=dict)
    assembler: ToolCallAssembler = field(default_factory=ToolCallAssembler)
    forced_calls: tools.ForcedCalls = field(default_factory=tools.ForcedCalls)

    def generated(self) -> None:
        self.tokens += 1
        self.on_token()

    def add_reasoning(self, text: str) -> None:
        self.reasoning += text
        self.pending_reasoning += text

    def add_call_piece(self, piece: ToolCallDelta) -> None:
        self.assembler.add(piece)
        self.calls = self.assembler.calls()
        self.pending_calls.append(piece)

    def add_text(self, text: str) -> None:
        """More of the answer: a forced one's calls are read from it as it grows."""
        self.text += text
        if self.forced:
            for piece in self.forced_calls.read(self.text):
                self.add_call_piece(piece)

    def finish(self, reason: FinishReason) -> None:
        """The end of the answer: one that made calls (and was not cut short) finishes with them; a forced answer
        is no text unless it was cut before its first call."""
        self.reason = FinishReason.TOOL_CALLS if self.calls and reason == FinishReason.STOP else reason
        if self.forced and self.calls:
            self.text = ""

    def delta(self, end: int) -> Delta | None:
        if self.forced and not self.reason:
            end = self.sent  # the JSON is not text: it is read as calls
        if end <= self.sent and not (self.pending or self.pending_reasoning or self.pending_calls):
            return None
        out = Delta(self.index, self.text[self.sent:end], self.pending, tool_calls=self.pending_calls,
                    reasoning=self.pending_reasoning)
        self.sent, self.pending, self.pending_calls, self.pending_reasoning = max(end, self.sent), [], [], ""
        return out

    def completion(self) -> Completion:
        return Completion(self.index, self.text, self.reason or FinishReason.LENGTH, logprobs=self.logprobs,
                          completion_tokens=self.tokens, tool_calls=self.calls, reasoning=self.reasoning)


def token_logprob(entry: dict, top: int) -> TokenLogprob:
    """One entry of llama-server's token probabilities (native `probs` or OpenAI `logprobs.content`)."""
    def piece(item: dict) -> tuple[str, bytes, float]:
        raw = bytes(item.get("bytes") or item.get("token", "").encode())
        return item.get("token", ""), raw, float(item.get("logprob", 0.0))

    token, raw, logprob = piece(entry)
    alternatives = [piece(t) for t in entry.get("top_logprobs") or []][:top]
    return TokenLogprob(token, raw, logprob, alternatives)


def read_completion(data: dict, state: ChoiceState, top: int) -> None:
    """A whole /completion answer into a choice."""
    state.text = data.get("content", "")
    state.logprobs = [token_logprob(entry, top) for entry in data.get("completion_probabilities") or ()]
    state.tokens = int(data.get("tokens_predicted") or 0)
    state.prompt_tokens = int(data.get("tokens_evaluated") or 0)
    state.reason = STOP_TYPES.get(data.get("stop_type"), FinishReason.LENGTH)
    state.after_first_ms = after_first_ms(data.get("timings") or {})


def read_chat(data: dict, state: ChoiceState, top: int) -> None:
    """A whole /v1/chat/completions answer (no stop sequences: those are found while streaming) into a choice."""
    choice = data["choices"][0]
    message = choice.get("message") or {}
    state.reasoning = message.get("reasoning_content") or ""
    state.calls = [tools.call_of(entry) for entry in message.get("tool_calls") or ()]
    state.add_text(message.get("content") or "")
    state.logprobs = [token_logprob(entry, top) for entry in (choice.get("logprobs") or {}).get("content") or ()]
    usage = data.get("usage") or {}
    state.tokens = int(usage.get("completion_tokens") or 0)
    state.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    state.finish(finish_reason(choice.get("finish_reason")))
    state.after_first_ms = after_first_ms(data.get("timings") or {})


def finish_reason(reason: str | None) -> FinishReason:
    """An OpenAI finish reason from llama-server (tool_calls is decided from the calls themselves)."""
    return FinishReason.LENGTH if reason == "length" else FinishReason.STOP


def cut_short(error: dict) -> bool:
    """llama-server's closing error for an answer its chat parser cannot read whole: with tools offered, the grammar
    holds every call to the format, so the answer ran out of tokens inside a call."""
    return "does not match the expected" in str(error.get("message", ""))


def after_first_ms(timings: dict) -> float:
    """From llama-server's timings: how long the tokens after the first took (a unary answer's time to first token
    is its wall time less this)."""
    n, ms = int(timings.get("predicted_n") or 0), float(timings.get("predicted_ms") or 0.0)
    return ms * (n - 1) / n if n > 1 else 0.0


def sse_data(line: str) -> dict | None:
    """The JSON of one server-sent event line; None for comments, blank lines and [DONE]."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    return json.loads(data)


def message_of(status: int, body: bytes) -> str:
    """The message of one of llama-server's error answers ({"error": {"message": ...}}), else the body itself."""
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return body.decode("utf-8", "replace")[:500] or f"HTTP {status}"


def error_of(status: int, body: bytes, request: GenerationRequest) -> Exception:
    """llama-server's error answer as the table's error, naming the request field it is about."""
    message = message_of(status, body)
    if status == 503:
        return Unavailable(f"llama-server: {message}", retry_after=1.0)
    if status == 429:
        return ResourceExhausted(f"llama-server: {message}", retry_after=1.0)
    if status == 400:
        lowered = message.lower()
        if "logprobs" in lowered:
            return InvalidArgument("logprobs", message)
        if request.calls_tools and any(w in lowered for w in ("tool", "grammar", "schema", "parser")):
            return InvalidArgument("tools", message)  # the grammar or parser llama.cpp builds from the tools
        if "grammar" in lowered or "schema" in lowered:
            where = ("structured_output.grammar" if request.grammar is not None else
                     "structured_output.json_schema" if request.json_schema is not None else "structured_output")
            return InvalidArgument(where, message)
        if "context" in lowered:
            return InvalidArgument("messages" if request.messages else "prompt", message)
        if "template" in lowered:
            return InvalidArgument("messages", message)
        return InvalidArgument("prompt", message)
    return Unavailable(f"llama-server answered HTTP {status}: {message}", retry_after=1.0)
