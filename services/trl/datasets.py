"""Training data: load a DatasetSpec (local file or folder, hub, upload, inline), select, map, detect and validate."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from forgeway.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from forgeway.services.training.datasets import DatasetStore
from forgeway.services.training.spec import DatasetSpec

BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
SPLIT = re.compile(r"^(?P<name>[\w.-]+)(\[(?P<start>-?\d+%?)?:(?P<end>-?\d+%?)?\])?$")

# Dataset formats by their columns. A tuple inside the tuple means "one of these".
FORMATS: dict[str, tuple[str | tuple[str, ...], ...]] = {
    "preference": ("chosen", "rejected"),  # prompt optional (TRL extracts an implicit one)
    "unpaired_preference": ("prompt", "completion", "label"),
    "prompt_completion": ("prompt", "completion"),
    "conversational": ("messages",),
    "language_modeling": ("text",),
    "extractive_qa": ("context", "question", ("answers", "answer")),
    "summarization": ("document", "summary"),
    "prompt_only": ("prompt",),
}

datasets.disable_progress_bars()


@dataclass
class LoadedDataset:
    """Rows ready for a method, with the provenance recorded in the model's metadata."""

    rows: datasets.Dataset
    format: str
    provenance: dict = field(default_factory=dict)


def _required(fmt: str, columns: list[str]) -> list[str]:
    """The columns a format reads, with alternatives resolved against what the dataset has."""
    out = []
    for need in FORMATS[fmt]:
        if isinstance(need, tuple):
            out.append(next((c for c in need if c in columns), need[0]))
        else:
            out.append(need)
    return out


def detect_format(columns: list[str], accepted: tuple[str, ...], where: str, who: str) -> str:
    """The first accepted format whose columns are all present; else InvalidArgument naming what is missing."""
    for fmt in accepted:
        if all(c in columns for c in _required(fmt, columns)):
            return fmt
    wanted = "; ".join(f"{fmt}: {', '.join('|'.join(n) if isinstance(n, tuple) else n for n in FORMATS[fmt])}"
                       for fmt in accepted)
    raise InvalidArgument(f"{where}.columns", f"{who} needs one of these column sets ({wanted}); the dataset has "
                          f"{', '.join(columns) or 'no columns'}; rename columns with column_mapping")


class DatasetLoader:
    """Loads DatasetSpecs, confined to the allowed roots, caching under FORGEWAY_HOME."""

    def __init__(self, allowed: Callable[[Path, str], Path], uploads: DatasetStore, cache_dir: Path):
        self.allowed, self.uploads, self.cache_dir = allowed, uploads, cache_dir

    def load(self, spec: DatasetSpec, where: str) -> tuple[datasets.Dataset, dict]:
        """Read, pick the split, rename columns, apply percent and max_samples. Returns rows and provenance."""
        splits, provenance = self._read(spec, where)
        rows = select_split(splits, spec.split, f"{where}.split")
        for source, target in spec.column_mapping.items():
            if source not in rows.column_names:
                raise InvalidArgument(f"{where}.column_mapping", f"no column {source!r} to rename to {target!r}; "
                                      f"columns: {', '.join(rows.column_names)}")
        clashes = [t for s, t in spec.column_mapping.items() if t in rows.column_names and t not in spec.column_mapping]
        rows = rows.remove_columns(clashes).rename_columns(spec.column_mapping) if spec.column_mapping else rows
        if spec.percent is not None:
            rows = rows.select(range(max(1, math.ceil(len(rows) * spec.percent / 100)))) if len(rows) else rows
        if spec.max_samples is not None and len(rows) > spec.max_samples:
            rows = rows.select(range(spec.max_samples))
        provenance.update(split=spec.split, rows=len(rows), percent=spec.percent, max_samples=spec.max_samples,
                          column_mapping=dict(spec.column_mapping))
        return rows, provenance

    def _read(self, spec: DatasetSpec, where: str) -> tuple[datasets.DatasetDict, dict]:
        if spec.kind == "inline":
            canonical = json.dumps(list(spec.rows), sort_keys=True).encode()
            try:
                inline = datasets.Dataset.from_list(list(spec.rows))
            except Exception as exc:  # arrow wants one type per column
                raise InvalidArgument(f"{where}.inline.rows", f"columns must keep one type: {_first_line(exc)}") from None
            return datasets.DatasetDict({"train": inline}), {"source": "inline", "sha256": hashlib.sha256(canonical).hexdigest()}
        if spec.kind == "upload":
            record = self.uploads.get(spec.value)
            path = self.uploads.path(spec.value)
            return self._files(path, f"{where}.dataset_id"), {"source": "upload", "dataset_id": spec.value,
                                                              "sha256": record.sha256}
        if spec.kind == "path":
            path = self.allowed(Path(spec.value), f"{where}.path")
            if not path.exists():
                raise NotFound("dataset", spec.value)
            return self._files(path, f"{where}.path"), {"source": "path", "path": str(path), "sha256": file_digest(path)}
        return self._hub(spec.value, where)

    def _files(self, path: Path, field_name: str) -> datasets.DatasetDict:
        try:
            if path.is_dir():
                if not any(p.suffix.lower() in BUILDERS for p in path.rglob("*") if p.is_file()):
                    raise InvalidArgument(field_name, f"{path} holds no {', '.join(BUILDERS)} files")
                return datasets.load_dataset(str(path), cache_dir=str(self.cache_dir))
            builder = BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise InvalidArgument(field_name, f"unsupported file type {path.suffix!r}; allowed: {', '.join(BUILDERS)}")
            return datasets.load_dataset(builder, data_files=str(path), cache_dir=str(self.cache_dir))
        except InvalidArgument:
            raise
        except Exception as exc:  # malformed JSON/CSV/parquet: the reader's message names line or field
            raise InvalidArgument(field_name, f"cannot read {path.name}: {_first_line(exc)}") from None

    def _hub(self, name: str, where: str) -> tuple[datasets.DatasetDict, dict]:
        if not HUB_NAME.match(name) or ".." in name:
            raise InvalidArgument(f"{where}.hub_name", "a hub dataset name is 'name' or 'owner/name'")
        try:
            splits = datasets.load_dataset(name, cache_dir=str(self.cache_dir))
        except datasets.exceptions.DatasetNotFoundError:
            raise NotFound("dataset", name) from None
        except ConnectionError as exc:
            if os.environ.get("HF_HUB_OFFLINE") or "Offline" in str(exc):
                raise FailedPrecondition(f"{where}.hub_name: hub dataset {name!r} is not cached and the hub is "
                                         "offline (HF_HUB_OFFLINE); upload it or give a local path",
                                         reason="HUB_OFFLINE", metadata={"dataset": name}) from None
            raise Unavailable(f"{where}.hub_name: cannot reach the hub for {name!r}: {_first_line(exc)}",
                              retry_after=30) from None
        fingerprint = next(iter(splits.values()))._fingerprint if splits else ""
        return splits, {"source": "hub", "hub_name": name, "fingerprint": fingerprint}


def select_split(splits: datasets.DatasetDict, split: str, field_name: str) -> datasets.Dataset:
    """A split by name, with optional slicing as datasets writes it: "train", "train[:90%]", "test[10:20]"."""
    match = SPLIT.match(split.replace(" ", ""))
    if not match:
        raise InvalidArgument(field_name, f"{split!r}: write a split name, optionally sliced ('train[:90%]')")
    name = match["name"]
    if name not in splits:
        raise InvalidArgument(field_name, f"no split {name!r}; available: {', '.join(splits)}")
    rows = splits[name]
    if match.group(2) is None:
        return rows
    n = len(rows)

    def bound(text: str | None, default: int) -> int:
        if text is None:
            return default
        value = round(n * int(text[:-1]) / 100) if text.endswith("%") else int(text)
        return max(0, min(n, value + n if value < 0 else value))

    start, end = bound(match["start"], 0), bound(match["end"], n)
    return rows.select(range(start, max(start, end)))


def validate_rows(rows: datasets.Dataset, fmt: str, where: str, min_rows: int) -> datasets.Dataset:
    """Check a format's columns row by row: enough rows, no empty values, labels and answer spans that make sense.
    Errors name the column and the (1-based) row. Returns the rows normalised (labels as bool, answers as SQuAD)."""
    if len(rows) < min_rows:
        raise InvalidArgument(where, f"{len(rows)} row(s) after split, percent and max_samples; at least {min_rows} "
                              "are required")
    columns = _required(fmt, rows.column_names)
    for number, row in enumerate(rows.select_columns(columns), 1):
        for column in columns:
            if _empty(row[column]):
                raise InvalidArgument(f"{where}.{column}", f"row {number}: column {column!r} is empty")
        if fmt == "unpaired_preference" and _label(row["label"]) is None:
            raise InvalidArgument(f"{where}.label", f"row {number}: column 'label' must be true or false, "
                                  f"got {row['label']!r}")
        if fmt == "conversational" and not all(isinstance(m, dict) and m.get("role") and not _empty(m.get("content"))
                                               for m in row["messages"]):
            raise InvalidArgument(f"{where}.messages", f"row {number}: column 'messages' needs role and content "
                                  "in every message")
        if fmt == "extractive_qa":
            _check_answer(row, columns[2], number, where)
    if fmt == "unpaired_preference":
        rows = rows.map(lambda r: {"label": _label(r["label"])})
    if fmt == "extractive_qa" and "answers" not in rows.column_names:
        rows = rows.map(lambda r: {"answers": {"text": [r["answer"]], "answer_start": [r["context"].find(r["answer"])]}},
                        remove_columns=["answer"])
    return rows


def _check_answer(row: dict, column: str, number: int, where: str) -> None:
    context, answer = row["context"], row[column]
    if column == "answer":
        if not isinstance(answer, str) or answer not in context:
            raise InvalidArgument(f"{where}.answer", f"row {number}: the answer does not occur in the context")
        return
    if not isinstance(answer, dict) or not answer.get("text") or "answer_start" not in answer:
        raise InvalidArgument(f"{where}.answers", f"row {number}: column 'answers' must be "
                              "{'text': [...], 'answer_start': [...]}")
    for text, start in zip(answer["text"], answer["answer_start"], strict=False):
        if context[int(start):int(start) + len(text)] != text:
            raise InvalidArgument(f"{where}.answers", f"row {number}: answer {text!r} is not at offset {start} "
                                  "of the context")


def _empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict)):
        return not value
    return False


def _label(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return None


def file_digest(path: Path) -> str:
    """sha256 of a data file, or of a folder's data files (relative names and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in BUILDERS) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def truncate_prompts(rows: datasets.Dataset, tokenizer, max_tokens: int, where: str) -> datasets.Dataset:
    """Keep the last max_tokens tokens of each text prompt (TRL 1.x has no max_prompt_length of its own)."""
    if "prompt" not in rows.column_names:
        raise InvalidArgument("method_params.max_prompt_length", f"the {where} has no prompt column to truncate")
    if len(rows) and not isinstance(rows[0]["prompt"], str):
        raise InvalidArgument("method_params.max_prompt_length", "conversational prompts cannot be truncated by "
                              "tokens; shorten the messages instead")

    def cut(row: dict) -> dict:
        ids = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        return {"prompt": tokenizer.decode(ids[-max_tokens:]) if len(ids) > max_tokens else row["prompt"]}

    return rows.map(cut)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
