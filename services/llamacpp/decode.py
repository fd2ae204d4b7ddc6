"""The token loop run on a slot's own thread: sampling, whole-character text, stops, logprobs, cancellation."""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from forgeway.services.runtime.generation import Completion, Delta, FinishReason, TokenLogprob, held_back

RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED


@dataclass
class DecodePlan:
    """Everything the token loop needs, prepared (tokenized, validated) before a slot is taken."""

    prompt_tokens: list[int]
    max_tokens: int  # already clamped to the context left after the prompt
    sampler: dict[str, float | int]  # keyword arguments of Llama.generate
    seed: int | None = None  # None: the model's seed setting (random unless configured)
    grammar: llama_cpp.LlamaGrammar | None = None
    stops: tuple[str, ...] = ()  # the request's stop sequences: finish reason STOP_SEQUENCE
    end_texts: tuple[str, ...] = ()  # end-of-turn text of a chat format: finish reason STOP
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass
class DecodeStats:
    first_token_at: float = 0.0
    choices: list[Completion] = field(default_factory=list)


class Pieces:
    """Token id -> bytes, cached (llama-cpp-python's detokenize asserts on pieces over 32 bytes)."""

    def __init__(self, vocab):
        self.vocab = vocab
        self.cache: dict[int, bytes] = {}

    def __call__(self, token: int, special: bool = False) -> bytes:
        key = token if not special else -1 - token
        piece = self.cache.get(key)
        if piece is None:
            size = 64
            buf = (llama_cpp.ctypes.c_char * size)()
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, special)
            if n < 0:
                size = -n
                buf = (llama_cpp.ctypes.c_char * size)()
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, special)
            piece = self.cache[key] = bytes(buf[:n])
        return piece


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> tuple[int, str]:
    """Earliest occurrence at or after start of any stop; (-1, "") when none."""
    best, which = -1, ""
    for stop in stops:
        i = text.find(stop, start)
        if i >= 0 and (best < 0 or i < best):
            best, which = i, stop
    return best, which


class TokenLoop:
    """Runs one plan on one llama.cpp context. Not thread-safe: call from the slot's thread only."""

    def __init__(self, llm: llama_cpp.Llama, pieces: Pieces, default_seed: int):
        self.llm = llm
        self.pieces = pieces
        self.default_seed = RANDOM_SEED if default_seed < 0 else default_seed
        self.vocab = llm._model.vocab
        self.n_vocab = llm.n_vocab()

    def run(self, plan: DecodePlan, emit: Callable[[Delta], None], cancelled: threading.Event,
            on_token: Callable[[], None]) -> DecodeStats:
        stats = DecodeStats()
        for index in range(plan.n):
            if plan.seed is not None:
                self.llm.set_seed((plan.seed + index) & 0xFFFFFFFF)
            else:
                self.llm.set_seed(self.default_seed)
            stats.choices.append(self._choice(index, plan, emit, cancelled, on_token, stats))
            if stats.choices[-1].finish_reason == FinishReason.CANCELLED:
                break
        return stats

    def _choice(self, index, plan, emit, cancelled, on_token, stats) -> Completion:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        stops = plan.stops + plan.end_texts
        longest = max((len(s) for s in stops), default=0)
        text, sent, count, was_cut = "", 0, 0, False
        logprobs: list[TokenLogprob] = []
        pending: list[TokenLogprob] = []
        reason: FinishReason | None = None
        if plan.max_tokens <= 0:
            reason = FinishReason.LENGTH
        tokens = self.llm.generate(plan.prompt_tokens, grammar=plan.grammar, **plan.sampler) if reason is None else ()
        try:
            for token in tokens:
                if cancelled.is_set():
                    reason = FinishReason.CANCELLED
                    break
                stats.first_token_at = stats.first_token_at or time.perf_counter()
                if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                    reason = FinishReason.STOP
                    break
                count += 1
                on_token()
                if plan.logprobs:
                    entry = self._logprob(token, plan.top_logprobs)
                    logprobs.append(entry)
                    pending.append(entry)
                checked = max(0, len(text) - longest + 1)
                text += decoder.decode(self.pieces(token))
                if stops:
                    cut, which = _find_stop(text, stops, checked)
                    if cut >= 0:
                        text, was_cut = text[:cut], True
                        reason = FinishReason.STOP_SEQUENCE if which in plan.stops else FinishReason.STOP
                end = len(text) if reason else len(text) - held_back(text, stops)
                if end > sent or pending and reason:
                    emit(Delta(index, text[sent:end], pending))
                    sent, pending = end, []
                if reason:
                    break
                if count >= plan.max_tokens:
                    reason = FinishReason.LENGTH
                    break
        finally:
            if hasattr(tokens, "close"):
                tokens.close()
        if reason is None:  # the generator ended by itself: the context is full
            reason = FinishReason.LENGTH
        if not was_cut and reason != FinishReason.CANCELLED:
            text += decoder.decode(b"", final=True)  # a dangling partial character becomes U+FFFD
        if len(text) > sent or pending:
            emit(Delta(index, text[sent:], pending))
        return Completion(index, text, reason, logprobs=logprobs, completion_tokens=count)

    def _logprob(self, token: int, top: int) -> TokenLogprob:
        """Log-probability of token under the logits it was sampled from (the model's, before sampler settings)."""
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.llm.ctx, -1), shape=(self.n_vocab,))
        peak = float(logits.max())
        lse = peak + float(np.log(np.exp(logits - peak).sum()))
        alternatives = []
        if top:
            best = np.argpartition(-logits, top - 1)[:top] if top < self.n_vocab else np.arange(self.n_vocab)
            best = best[np.argsort(-logits[best], kind="stable")]
            alternatives = [self._entry(int(t), float(logits[t]) - lse) for t in best]
        piece = self.pieces(token)
        return TokenLogprob(piece.decode("utf-8", "replace"), piece, float(logits[token]) - lse, alternatives)

    def _entry(self, token: int, logprob: float) -> tuple[str, bytes, float]:
        piece = self.pieces(token)
        return piece.decode("utf-8", "replace"), piece, logprob
