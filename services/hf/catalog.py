"""Model-store entries this service can load on demand: an in-memory index, re-read only when the store changes."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import Task
from forgeway.core.modelstore import ModelStore, StoredModel, StoreStamp
from forgeway.services.runtime.engine import ModelInfo

from .encoder_config import describe_folder, encoder_task, read_json

# A stamp whose newest mtime is this recent is not trusted: a change later in the same timestamp tick (coarse on
# Linux, a second on some NFS servers) would leave it equal. Such a store is re-read until it has been still this
# long ("racy git").
SETTLE_NS = 1_000_000_000


class Catalog:
    """The store's loadable entries as ModelInfo (loaded=False), kept in memory.

    models() costs a stat of the store folder and of each known entry; it lists and reads the store again only when
    that stamp changed (an entry published, replaced, removed or its metadata rewritten) or after invalidate()
    (LoadModel, UnloadModel). `scans` counts the re-reads.
    """

    def __init__(self, store: ModelStore):
        self.store = store
        self.scans = 0
        self._lock = threading.Lock()
        self._entries: list[ModelInfo] = []
        self._names: list[str] = []  # every entry folder seen, loadable or not: their stats are in the stamp
        self._stamp: StoreStamp | None = None  # None: re-read on the next call

    def invalidate(self) -> None:
        """Re-read the store on the next call."""
        self._stamp = None

    def models(self, skip: set[str] | frozenset[str] = frozenset()) -> list[ModelInfo]:
        """A fresh ModelInfo for each loadable entry not named in skip."""
        with self._lock:
            stamp = self.store.stamp(self._names)
            if stamp != self._stamp:
                self._scan()
            entries = self._entries
        return [replace(m) for m in entries if m.name not in skip]

    def provenance_of(self, source: str) -> dict:
        """The provenance fields of the store entry a served model was loaded from (none for other sources)."""
        entry = self.store.get(source) if source else None
        return provenance(entry) if entry is not None else {}

    def _scan(self) -> None:
        before = self.store.stamp()  # taken first: a change during the scan shows up as a stamp that moved
        listed = self.store.list()
        self.scans += 1
        self._entries = [describe(entry) for entry in listed if entry.loadable]
        self._names = [entry.name for entry in listed]
        stamp = self.store.stamp(self._names)
        settled = stamp.stats[0] == before.stats[0] and stamp.newest_change < time.time_ns() - SETTLE_NS
        self._stamp = stamp if settled else None


def describe(entry: StoredModel) -> ModelInfo:
    """What a store entry serves, from its metadata and config.json, without loading it."""
    config = read_json(entry.path / "config.json")
    task = entry.task
    if task is None:
        try:
            task = encoder_task(entry.path)
        except InvalidArgument:  # a sentence-transformers kind hf does not serve: loading it says so
            task = None
    if task in (Task.EMBEDDING, Task.RERANK):
        return ModelInfo(name=entry.name, task=task, loaded=False, source=f"store:{entry.name}",
                         **describe_folder(entry.path, task), **provenance(entry))
    if task is None:
        if any(a.endswith("ForQuestionAnswering") for a in config.get("architectures") or []):
            task = Task.EXTRACTIVE_QA
        elif config.get("is_encoder_decoder"):
            task = Task.SUMMARIZATION
        else:
            task = Task.TEXT_GENERATION
    context = config.get("max_position_embeddings") or config.get("n_positions") or 0
    return ModelInfo(name=entry.name, task=task, context_length=int(context), loaded=False,
                     source=f"store:{entry.name}", chat=task == Task.TEXT_GENERATION and entry.chat, **provenance(entry))


def provenance(entry: StoredModel) -> dict:
    """The ModelInfo fields a store entry's metadata gives: description, creation date, base model, provider."""
    base = entry.metadata.get("base_model_requested") or entry.base_model or ""  # as the training request named it
    return {"description": entry.description, "created": entry.created, "base_model": str(base),
            "provider": entry.provider, "trained_by": entry.trained_by}
