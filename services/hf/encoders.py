"""Embedding and rerank models through sentence-transformers: loading (its own folders, or a plain transformers model
with a declared pooling built from its modules), inputs to token rows under the request's truncation, and one
forward pass over a batch of rows."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from sentence_transformers import CrossEncoder, SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

from forgeway.core.embeddings import EmbeddingRequest, too_long
from forgeway.core.errors import InvalidArgument, Unsupported
from forgeway.core.generation import Task

from .encoder_config import POOLING_MODES, default_pooling, matryoshka, pooling_name, read_json

ENCODER_TASKS = (Task.EMBEDDING, Task.RERANK)
# What the input module reads: plain text, as vLLM embeds a prompt (sentence-transformers 6 would otherwise render
# texts through a chat template wherever the tokenizer has one).
TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}
TOKEN_STATES = "token_embeddings"  # the feature the Transformer module writes and Pooling reads
SIDES = {"end": "right", "start": "left"}  # truncation -> the side the tokenizer cuts


@dataclass
class Row:
    """One input as the model reads it: token ids, segment ids (pairs), and whether it was cut to fit."""

    ids: list[int]
    types: list[int] | None = None
    truncated: bool = False


@dataclass
class LoadedEncoder:
    """A sentence-transformers model ready to run, with what Capabilities reports about it."""

    source: str
    task: Task
    model: SentenceTransformer | CrossEncoder
    device: torch.device
    context_length: int
    dimensions: int = 0
    matryoshka: list[int] = field(default_factory=list)
    pooling: str = ""
    normalizes: bool = False  # ends in a Normalize module: vectors are unit length unless a request says otherwise
    quantization: str = "none"
    adapters: dict[str, str] = field(default_factory=dict)
    chat = False

    def __post_init__(self):
        self.tokenizer = self.model.tokenizer
        self.typed = "token_type_ids" in self.tokenizer.model_input_names
        self.vocab_size = self.model.transformers_model.get_input_embeddings().num_embeddings
        modules = list(self.model)
        self.stages = modules[:-1] if self.normalizes else modules  # the model's own Normalize runs per request
        self.prompt = self.model.prompts.get(self.model.default_prompt_name or "", "") or ""
        self.lock = threading.Lock()  # a transformers tokenizer call sets truncation on its shared Rust tokenizer

    def vector_info(self) -> dict:
        return {"dimensions": self.dimensions, "matryoshka": list(self.matryoshka), "pooling": self.pooling}

    def add_adapter(self, name: str, path: str) -> None:
        raise Unsupported("adapters", "hf", f"adapters are served for text generation, summarization and extractive "
                                            f"QA, not {self.task.value}")

    # -- inputs to rows (any thread) -------------------------------------------------------------------------------

    def embedding_rows(self, request: EmbeddingRequest) -> list[Row]:
        if request.token_ids:
            return [self._id_row(i, ids, request.truncation) for i, ids in enumerate(request.token_ids)]
        return self._text_rows([self.prompt + text for text in request.texts], None, request.truncation, "input")

    def pair_rows(self, query: str, documents: tuple[str, ...], truncation: str) -> list[Row]:
        return self._text_rows([query] * len(documents), list(documents), truncation, "documents")

    def _id_row(self, index: int, ids: tuple[int, ...], truncation: str) -> Row:
        """Token ids go to the model as given: no special tokens added, cut at one end when allowed."""
        outside = next((t for t in ids if t >= self.vocab_size), None)
        if outside is not None:
            raise InvalidArgument(f"input[{index}]", f"token id {outside} is outside the model's vocabulary "
                                                     f"(ids below {self.vocab_size})")
        limit = self.context_length
        if len(ids) <= limit:
            return Row(list(ids))
        if truncation == "none":
            raise too_long(index, len(ids), limit)
        return Row(list(ids[:limit] if truncation == "end" else ids[-limit:]), truncated=True)

    def _text_rows(self, first: list[str], second: list[str] | None, truncation: str, where: str) -> list[Row]:
        """Tokenized as sentence-transformers does (special tokens; pairs cut longest-first), all or the error."""
        tokenizer, limit = self.tokenizer, self.context_length
        with self.lock:
            full = tokenizer(first, second, truncation=False, return_token_type_ids=self.typed, verbose=False)
            ids, types = full["input_ids"], full.get("token_type_ids")
            long = [i for i, row in enumerate(ids) if len(row) > limit]
            if long and truncation == "none":
                raise too_long(long[0], len(ids[long[0]]), limit, where)
            cut = None
            if long:
                side, tokenizer.truncation_side = tokenizer.truncation_side, SIDES[truncation]
                try:
                    cut = tokenizer([first[i] for i in long], [second[i] for i in long] if second else None,
                                    truncation="longest_first", max_length=limit, return_token_type_ids=self.typed)
                finally:
                    tokenizer.truncation_side = side
        rows = [Row(row, types[i] if types else None) for i, row in enumerate(ids)]
        for j, i in enumerate(long if cut is not None else []):
            rows[i] = Row(cut["input_ids"][j], cut["token_type_ids"][j] if self.typed else None, truncated=True)
        return rows

    # -- one forward pass (the batcher's worker thread) ------------------------------------------------------------

    def features(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        """Padded tensors on the model's device, padding on the tokenizer's side."""
        width = max(len(row.ids) for row in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id or 0, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        left = self.tokenizer.padding_side == "left"
        for i, row in enumerate(rows):
            span = slice(width - len(row.ids), width) if left else slice(0, len(row.ids))
            ids[i, span] = torch.tensor(row.ids)
            mask[i, span] = 1
            if row.types:
                types[i, span] = torch.tensor(row.types)
        features = {"input_ids": ids, "attention_mask": mask} | ({"token_type_ids": types} if self.typed else {})
        return {key: value.to(self.device) for key, value in features.items()}

    def forward(self, rows: list[Row]) -> torch.Tensor:
        """Vectors [rows, dimensions] before the model's own Normalize, or scores [rows] after its activation."""
        features = self.features(rows)
        if self.task == Task.RERANK:
            scores = self.model(features)["scores"].float()  # as CrossEncoder.predict: activation, then squeeze
            return self.model.activation_fn(scores).squeeze(-1).cpu()
        for module in self.stages:
            features = module(features)
        return features["sentence_embedding"].float().cpu()

    def vectors(self, raw: torch.Tensor, dimensions: int | None, normalize: bool | None) -> list[list[float]]:
        """Cut to `dimensions` (Matryoshka), then unit length if asked, or unset and the model normalizes."""
        if dimensions:
            raw = raw[:, :dimensions]
        if self.normalizes if normalize is None else normalize:
            raw = F.normalize(raw, p=2, dim=1)
        return raw.tolist()


def load_encoder(location: str, task: Task, pooling: str | None, device: torch.device, dtype,
                 context: int | None, trust_remote_code: bool = False, cache_dir: str | None = None) -> LoadedEncoder:
    """A sentence-transformers model from local files (never downloading); blocking, run it off the event loop."""
    folder = Path(location)
    common = {"local_files_only": True, "trust_remote_code": trust_remote_code, "cache_folder": cache_dir}
    if (folder / "modules.json").is_file() and pooling:
        raise InvalidArgument("pooling", f"{folder.name} is a sentence-transformers model: its own config sets the "
                                         "pooling; leave pooling unset")
    if task == Task.RERANK:
        model = CrossEncoder(location, device=str(device), model_kwargs={"dtype": dtype}, **common)
        if model.num_labels != 1:
            raise InvalidArgument("source", f"{folder.name} has {model.num_labels} outputs; reranking needs a "
                                            "cross-encoder with one relevance logit")
        if getattr(model[0], "transformer_task", "") != "sequence-classification":
            raise Unsupported("task", "hf", "causal-LM rerankers (yes/no logits) are not served here")
    elif (folder / "modules.json").is_file():
        model = SentenceTransformer(location, device=str(device), model_kwargs={"dtype": dtype}, **common)
        if "message" in getattr(model[0], "modality_config", {}):
            raise Unsupported("task", "hf", f"{folder.name} embeds chat messages; hf embeds plain text and tokens")
    else:
        model = from_modules(location, pooling or default_pooling(folder), device, dtype,
                             {"trust_remote_code": trust_remote_code, "cache_dir": cache_dir})
    if context:
        model.max_seq_length = context
    limit = model.max_seq_length or 0
    if task == Task.RERANK:
        return LoadedEncoder(location, task, model.eval(), device, limit)
    dimensions = model.get_embedding_dimension()
    pooled = next((m for m in model if isinstance(m, Pooling)), None)
    return LoadedEncoder(
        location, task, model.eval(), device, limit, dimensions=dimensions,
        matryoshka=matryoshka(read_json(folder / "config.json"), dimensions),
        pooling=pooling_name(pooled.get_config_dict()) if pooled is not None else "",
        normalizes=isinstance(list(model)[-1], Normalize),
    )


def from_modules(location: str, pooling: str, device: torch.device, dtype, hub: dict) -> SentenceTransformer:
    """A plain transformers encoder or decoder as sentence-transformers modules: its hidden states, the declared
    pooling, then Normalize (unit vectors by default, as OpenAI's and vLLM's embeddings are)."""
    common = {"local_files_only": True, **hub}
    transformer = Transformer(location, model_kwargs={"dtype": dtype, **common}, processor_kwargs=common,
                              config_kwargs=common, modality_config=TEXT_ONLY, module_output_name=TOKEN_STATES)
    pool = Pooling(transformer.get_embedding_dimension(), POOLING_MODES[pooling])
    return SentenceTransformer(modules=[transformer, pool, Normalize()], device=str(device))
