"""Embedding and rerank models on llama.cpp: what their GGUF declares, the flags their child runs with, how a too-long
input is cut, and what Capabilities says of them. No I/O but reading the GGUF's header; embedding.py talks HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forgeway.core.embeddings import too_long
from forgeway.core.errors import FailedPrecondition, InvalidArgument
from forgeway.core.generation import Task
from forgeway.core.models import ModelInfo

from .settings import ModelConfig

# llama.cpp's enum llama_pooling_type, as a GGUF stores it in ARCH.pooling_type.
POOLING_TYPES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
# Architectures whose rank head ends in a softmax inside llama.cpp (Qwen3 rerankers: P(yes)); every other head gives a
# logit, which the service turns into a probability with the sigmoid (as sentence-transformers' CrossEncoder and TEI).
SOFTMAX_RANKERS = ("qwen3", "qwen3vl")


@dataclass(frozen=True)
class GgufFacts:
    """What a GGUF's header says about serving it for embeddings or reranking."""

    architecture: str = ""
    context_length: int = 0  # the training context
    pooling: str | None = None  # the pooling type it declares (sentence-transformers conversions do), None: none
    causal: bool = True
    head: bool = False  # a classification head (cls / cls_out tensors): what llama.cpp reranks with


def gguf_facts(path: Path) -> GgufFacts:
    """Read the header of a GGUF (the `gguf` package memory-maps it: nothing is loaded)."""
    import gguf

    reader = gguf.GGUFReader(path)

    def value(key: str, default=None):
        found = reader.fields.get(key)
        return found.contents() if found is not None else default

    arch = value("general.architecture", "")
    pooling = value(f"{arch}.pooling_type")
    return GgufFacts(
        architecture=arch, context_length=int(value(f"{arch}.context_length", 0)),
        pooling=POOLING_TYPES.get(int(pooling)) if pooling is not None else None,
        causal=bool(value(f"{arch}.attention.causal", True)),
        head=any(t.name.split(".")[0] in ("cls", "cls_out") for t in reader.tensors),
    )


def prepare(config: ModelConfig, facts: GgufFacts, path: Path) -> ModelConfig:
    """The config an embedding or rerank model's child runs with: its pooling (the setting, else the GGUF's own) and
    its context (the setting, else the training context, and never past it: llama.cpp caps a slot there)."""
    if config.task == Task.RERANK:
        if not facts.head:
            raise FailedPrecondition(f"{path} has no classification head (cls/cls_out tensors), so llama.cpp cannot "
                                     f"rerank with it; serve a reranker GGUF (a cross-encoder such as "
                                     f"bge-reranker-v2-m3 converted by llama.cpp)")
        pooling = "rank"
    else:
        pooling = config.pooling or facts.pooling
        if pooling == "rank":
            raise InvalidArgument("task", f"{path} is a reranker (its GGUF pools by rank); serve it with task: rerank")
        if pooling in (None, "none"):
            raise InvalidArgument("pooling", f"{path} declares no pooling type ({facts.architecture}: llama.cpp "
                                             f"would give a vector per token); set pooling: mean, cls or last")
    trained = facts.context_length
    n_ctx = min(config.n_ctx or trained, trained) if trained else config.n_ctx
    return config.model_copy(update={"pooling": pooling, "n_ctx": n_ctx})


def max_input(n_ctx: int, pooling: str, causal: bool) -> int:
    """The longest input llama-server takes in a slot of n_ctx tokens. A causal model pooled by its last token (last,
    or rank for causal rerankers) is evaluated in chunks, and llama-server wants one position left over; every other
    input is evaluated whole in one physical batch, which the child's batch size makes n_ctx long."""
    return n_ctx - 1 if causal and pooling in ("last", "rank") else n_ctx


def cut(ids: list[int], limit: int, truncation: str, head: int = 0, tail: int = 0) -> list[int]:
    """`ids` cut to `limit` tokens at one end ("end" keeps the start, "start" keeps the end), keeping the `head` and
    `tail` special tokens the tokenizer added around the text ([CLS] ... [SEP]), as transformers' truncation does."""
    keep = limit - head - tail
    if keep < 1:
        head = tail = 0
        keep = limit
    body = ids[head:len(ids) - tail]
    body = body[:keep] if truncation == "end" else body[len(body) - keep:]
    return ids[:head] + body + ids[len(ids) - tail:]


@dataclass
class RetrievalModel:
    """An embedding or rerank model as its running child reports it (embedding.read_model fills it)."""

    config: ModelConfig
    facts: GgufFacts
    path: Path
    n_ctx: int = 0
    dimensions: int = 0
    n_vocab: int = 0
    prefix: tuple[int, ...] = ()  # the special tokens the tokenizer puts before a text ([CLS], BOS)
    suffix: tuple[int, ...] = ()  # and after it ([SEP], EOS)
    pair_tokens: int = 0  # special (or template) tokens a query-document pair adds to its two texts

    @property
    def limit(self) -> int:
        return max_input(self.n_ctx, self.config.pooling or "", self.facts.causal)

    @property
    def probability(self) -> bool:
        """Whether llama.cpp's score is a probability already (else the service applies the sigmoid)."""
        return self.facts.architecture in SOFTMAX_RANKERS

    def fit(self, ids: list[int], index: int, truncation: str, specials: bool) -> tuple[list[int], bool]:
        """The tokens the model reads for input[index]: all, cut at one end, or the table's error naming it."""
        if len(ids) <= self.limit:
            return ids, False
        if truncation == "none":
            raise too_long(index, len(ids), self.limit)
        ends = (len(self.prefix), len(self.suffix)) if specials else (0, 0)
        return cut(ids, self.limit, truncation, *ends), True

    def check_ids(self, index: int, ids: tuple[int, ...]) -> None:
        wrong = [i for i in ids if i >= self.n_vocab]
        if wrong:
            raise InvalidArgument(f"input[{index}]", f"token id {wrong[0]} is outside the model's vocabulary of "
                                                     f"{self.n_vocab} tokens")

    def info(self, name: str, aliases: list[str]) -> ModelInfo:
        return ModelInfo(name=name, task=self.config.task, context_length=self.n_ctx, quantization="gguf",
                         loaded=True, source=str(self.path), aliases=list(aliases),
                         dimensions=self.dimensions if self.config.task == Task.EMBEDDING else 0,
                         pooling=self.config.pooling or "")
