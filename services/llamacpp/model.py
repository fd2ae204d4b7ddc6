"""A loaded GGUF model: its llama.cpp contexts (slots), their queue, and turning requests into decode plans."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
from llama_cpp import llama_chat_format, llama_grammar

from forgeway.services.runtime.engine import ModelInfo
from forgeway.services.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from forgeway.services.runtime.generation import GenerationRequest

from .config import ModelConfig
from .decode import DecodePlan, Pieces, TokenLoop

log = logging.getLogger("forgeway.llamacpp")

FILE_TYPES = {getattr(llama_cpp, n): n.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_")
              for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_")}


@dataclass
class Slot:
    """One llama.cpp context and the single thread that drives it (a context is not thread-safe)."""

    llm: llama_cpp.Llama
    loop: TokenLoop
    executor: ThreadPoolExecutor


def named_chat_format(name: str):
    """A llama-cpp-python chat format by name (chatml, llama-2, ...): the prompt formatter behind its handler."""
    registry = llama_chat_format.LlamaChatCompletionHandlerRegistry()
    try:
        handler = registry.get_chat_completion_handler_by_name(name)
    except Exception:  # LlamaChatCompletionHandlerNotFoundException, whose base varies by version
        known = ", ".join(sorted(getattr(registry, "_chat_handlers", {})))
        raise InvalidArgument("options.chat_format", f"unknown chat format {name!r} (known: {known})") from None
    formatter = inspect.getclosurevars(handler).nonlocals.get("chat_formatter")
    if formatter is None:
        raise InvalidArgument("options.chat_format", f"{name!r} is a handler, not a prompt format")
    return formatter


def chat_formatter(llm: llama_cpp.Llama, pieces: Pieces, chat_format: str | None):
    """The named llama-cpp-python chat format, else the GGUF's embedded Jinja template, else None."""
    if chat_format:
        return named_chat_format(chat_format)
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    special = lambda t: pieces(t, special=True).decode("utf-8", "replace") if t >= 0 else ""  # noqa: E731
    return llama_chat_format.Jinja2ChatFormatter(
        template=template, eos_token=special(llm.token_eos()), bos_token=special(llm.token_bos()),
        add_generation_prompt=True,
    )


class LoadedModel:
    """A model being served: slots, the queue in front of them, and its metadata."""

    def __init__(self, config: ModelConfig, path: Path, slots: list[Slot], formatter):
        self.config, self.path, self.slots, self.formatter = config, path, slots, formatter
        first = slots[0].llm
        # llama.cpp pads the context (to 256); llama-cpp-python's buffers keep the size asked for
        self.n_ctx = min(config.n_ctx, first.n_ctx()) if config.n_ctx else first.n_ctx()
        self.file_type = FILE_TYPES.get(llama_cpp.llama_model_ftype(first.model), "unknown")
        self.free: asyncio.Queue[Slot] = asyncio.Queue()
        for slot in slots:
            self.free.put_nowait(slot)
        self.waiting = 0
        self.planning = 0
        self.closing = False
        self.on_queue_change = lambda: None  # the engine points this at its queue-depth gauge

    @classmethod
    def open(cls, config: ModelConfig, path: Path, verbose: bool = False) -> LoadedModel:
        """Load `config.instances` contexts of the GGUF at `path` (blocking: call off the event loop)."""
        kv_type = getattr(llama_cpp, f"GGML_TYPE_{config.kv_cache_type.upper()}")
        if config.chat_format:
            named_chat_format(config.chat_format)  # fail before loading weights
        slots: list[Slot] = []
        try:
            for i in range(config.instances):
                try:
                    llm = llama_cpp.Llama(str(path), type_k=kv_type, type_v=kv_type, verbose=verbose,
                                          **config.load_kwargs())
                except (ValueError, RuntimeError) as exc:
                    raise FailedPrecondition(f"llama.cpp could not load {path}: {_why(path, exc)}") from None
                pieces = Pieces(llm._model.vocab)
                executor = ThreadPoolExecutor(1, thread_name_prefix=f"llamacpp-{config.name}-{i}")
                slots.append(Slot(llm, TokenLoop(llm, pieces, config.seed), executor))
            formatter = chat_formatter(slots[0].llm, slots[0].loop.pieces, config.chat_format)
        except BaseException:
            for slot in slots:
                _close(slot)
            raise
        return cls(config, path, slots, formatter)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def busy(self) -> int:
        return len(self.slots) - self.free.qsize()

    def info(self) -> ModelInfo:
        return ModelInfo(name=self.name, context_length=self.n_ctx, quantization="gguf", loaded=True,
                         source=str(self.path), chat=self.formatter is not None, aliases=list(self.config.aliases))

    def warm_up(self) -> None:
        """Decode one token on every slot so the first request pays no page-in or thread start-up."""
        for slot in self.slots:
            llm = slot.llm
            tokens = llm.tokenize(b"Hello", add_bos=True, special=False) or [max(llm.token_bos(), 0)]
            slot.executor.submit(lambda: next(iter(llm.generate(tokens, temp=0.0)))).result()

    async def acquire(self) -> Slot:
        """A free slot; waits in line, or RESOURCE_EXHAUSTED when the line is full."""
        if self.closing:
            raise NotFound("model", self.name, [])
        if self.free.empty() and self.waiting >= self.config.max_queue:
            raise ResourceExhausted(
                f"model {self.name!r}: {self.busy} running and {self.waiting} queued (max_queue "
                f"{self.config.max_queue})", retry_after=1.0, quota="max_queue",
            )
        self.waiting += 1
        self.on_queue_change()
        try:
            return await self.free.get()
        finally:
            self.waiting -= 1
            self.on_queue_change()

    async def prepare(self, request: GenerationRequest) -> DecodePlan:
        """plan() off the event loop; unloading waits for it, since it reads the model's vocabulary."""
        if self.closing:
            raise NotFound("model", self.name, [])
        self.planning += 1
        try:
            return await asyncio.to_thread(self.plan, request)
        finally:
            self.planning -= 1

    async def drain(self) -> None:
        """Refuse new requests, let queued and running ones finish, and hold every slot."""
        self.closing = True
        while self.planning:
            await asyncio.sleep(0.01)
        for _ in self.slots:
            await self.free.get()

    def release(self, slot: Slot) -> None:
        self.free.put_nowait(slot)

    def close(self) -> None:
        """Free every context (blocking; only once no request holds a slot)."""
        for slot in self.slots:
            _close(slot)

    def plan(self, request: GenerationRequest) -> DecodePlan:
        """Tokenize and validate a request against this model (thread-safe: reads only the vocabulary)."""
        llm, cfg, s = self.slots[0].llm, self.config, request.sampling
        field, end_texts = "prompt", ()
        if request.messages:
            field = "messages"
            try:
                formatted = self.formatter(messages=[{"role": m.role, "content": m.content} for m in request.messages])
            except Exception as exc:  # the template's raise_exception, or a rendering error
                raise InvalidArgument("messages", f"the chat template rejected them: {exc}") from None
            tokens = llm.tokenize(formatted.prompt.encode(), add_bos=not formatted.added_special, special=True)
            stop = formatted.stop or ()
            end_texts = tuple(t for t in ((stop,) if isinstance(stop, str) else stop) if t)
        else:
            tokens = llm.tokenize(request.prompt.encode(), add_bos=True, special=True)
        if not tokens:
            if llm.token_bos() < 0:
                raise InvalidArgument(field, "empty, and the model has no beginning-of-sequence token")
            tokens = [llm.token_bos()]
        if len(tokens) >= self.n_ctx:
            raise InvalidArgument(field, f"{len(tokens)} tokens leave no room in the context of {self.n_ctx} tokens")
        sampler = {
            "temp": cfg.temperature if s.temperature is None else s.temperature,
            "top_p": cfg.top_p if s.top_p is None else s.top_p,
            "top_k": cfg.top_k if s.top_k is None else s.top_k,
            "min_p": cfg.min_p if s.min_p is None else s.min_p,
            "repeat_penalty": cfg.repeat_penalty if s.repetition_penalty is None else s.repetition_penalty,
            "presence_penalty": s.presence_penalty or 0.0,
            "frequency_penalty": s.frequency_penalty or 0.0,
        }
        return DecodePlan(
            prompt_tokens=tokens,
            max_tokens=min(s.max_tokens or cfg.max_tokens, self.n_ctx - len(tokens)),
            sampler=sampler,
            seed=s.seed,
            grammar=self._grammar(request),
            stops=s.stop,
            end_texts=end_texts,
            n=request.n,
            logprobs=request.logprobs,
            top_logprobs=request.top_logprobs,
        )

    def _grammar(self, request: GenerationRequest) -> llama_cpp.LlamaGrammar | None:
        if request.grammar is not None:
            field, text = "structured_output.grammar", request.grammar
        elif request.json_schema is not None:
            field = "structured_output.json_schema"
            try:
                text = llama_grammar.json_schema_to_gbnf(json.dumps(request.json_schema))
            except Exception as exc:  # the converter raises assorted types for schemas it can't express
                raise InvalidArgument(field, f"cannot turn it into a grammar: {exc or type(exc).__name__}") from None
        elif request.json_object:
            field, text = "structured_output.json_object", llama_grammar.JSON_GBNF
        else:
            return None
        vocab = self.slots[0].llm._model.vocab
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, text.encode(), b"root")
        if not sampler:
            raise InvalidArgument(field, "not a valid GBNF grammar with a root rule (see llama.cpp's grammars/README)")
        llama_cpp.llama_sampler_free(sampler)
        return llama_cpp.LlamaGrammar.from_string(text, verbose=False)


def _why(path: Path, exc: Exception) -> str:
    """A reason better than llama-cpp-python's 'Failed to load model from file', from the gguf reader if present."""
    try:
        import gguf

        gguf.GGUFReader(path)
    except ImportError:
        return str(exc)
    except Exception as reader_exc:  # noqa: BLE001 - any parse failure is the reason
        return f"corrupt GGUF: {reader_exc}"
    return f"{exc} (the GGUF parses; its architecture or tensors may be unsupported by this llama.cpp build)"


def _close(slot: Slot) -> None:
    slot.executor.shutdown(wait=True)
    slot.llm.close()
