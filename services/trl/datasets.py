"""Training data: load a DatasetSpec (local file or folder, hub, upload, inline), select, map, detect and validate."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from forgeway.core.datasetformats import DatasetFormat, candidates, convert_row, detect, row_problems, suggest_mapping
from forgeway.core.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from forgeway.services.training.datasets import DatasetStore
from forgeway.services.training.spec import DatasetSpec

from .splits import select_split

BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")

MAX_VIOLATIONS = 20  # row problems listed in one error; a last violation counts the rest

datasets.disable_progress_bars()


@dataclass
class LoadedDataset:
    """Rows ready for a method, with the provenance recorded in the model's metadata."""

    rows: datasets.Dataset
    format: str
    provenance: dict = field(default_factory=dict)


def detect_format(columns: list[str], accepted: tuple[str, ...], where: str, who: str, sample: Mapping | None = None,
                  name: str = "") -> DatasetFormat:
    """The dataset's format among those read as one of `accepted` (by column set; by content with a sample row; by a
    known hub name); else InvalidArgument naming the column sets that would do."""
    shape = detect(columns, accepted, sample, name)
    if shape is not None:
        return shape
    wanted = "; ".join(f.describe() for f in candidates(accepted))
    mapping = suggest_mapping(columns, accepted, sample)
    fix = f"for example column_mapping={json.dumps(mapping)}" if mapping else "rename columns with column_mapping"
    raise InvalidArgument(f"{where}.columns", f"{who} needs one of these column sets ({wanted}); the dataset has "
                          f"{', '.join(columns) or 'no columns'}; {fix}")


def read_dataset(engine, source: DatasetSpec, where: str, accepted: tuple[str, ...], who: str,
                 min_rows: int | None = None, generate: bool = False) -> LoadedDataset:
    """Load a source, detect its format among `accepted` (by columns, a sample row, a known hub name), check every
    row, and return the rows in the trained format with their provenance."""
    rows, provenance = engine.loader.load(source, where, generate)
    shape = detect_format(rows.column_names, accepted, where, who, rows[0] if len(rows) else None,
                          provenance.get("hub_name", ""))
    rows = validate_rows(rows, shape, where, engine.settings.min_dataset_rows if min_rows is None else min_rows)
    provenance["format"] = shape.trained
    if shape.trains_as:  # a shape read as a trained format (ModelForge's input/output as prompt/completion)
        provenance["source_format"] = shape.name
    return LoadedDataset(rows, shape.trained, provenance)


class DatasetLoader:
    """Loads DatasetSpecs, confined to the allowed roots, caching under FORGEWAY_HOME."""

    def __init__(self, allowed: Callable[[Path, str], Path], uploads: DatasetStore, cache_dir: Path):
        self.allowed, self.uploads, self.cache_dir = allowed, uploads, cache_dir

    def load(self, spec: DatasetSpec, where: str, generate: bool = False) -> tuple[datasets.Dataset, dict]:
        """Read, pick the split (`generate`: from AlignTune's generated splits, see select_split), rename columns,
        apply percent and max_samples. Returns rows and provenance."""
        if spec.config_name and spec.kind != "hub":
            raise InvalidArgument(f"{where}.config_name", "a config name selects a configuration of a hub dataset; "
                                  f"this dataset is {'an' if spec.kind in ('inline', 'upload') else 'a'} {spec.kind}")
        splits, provenance = self._read(spec, where)
        rows, found = select_split(splits, spec.split, f"{where}.split", generate)
        provenance.update(found)
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
            columns = list(dict.fromkeys(k for row in spec.rows for k in row))  # a key one row lacks reads as None
            try:
                inline = datasets.Dataset.from_list([{k: row.get(k) for k in columns} for row in spec.rows])
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
        return self._hub(spec.value, spec.config_name, where)

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

    def _hub(self, name: str, config: str, where: str) -> tuple[datasets.DatasetDict, dict]:
        if not HUB_NAME.match(name) or ".." in name:
            raise InvalidArgument(f"{where}.hub_name", "a hub dataset name is 'name' or 'owner/name'")
        try:
            splits = datasets.load_dataset(name, config or None, cache_dir=str(self.cache_dir))
        except datasets.exceptions.DatasetNotFoundError:
            raise NotFound("dataset", name) from None
        except ValueError as exc:  # a config unknown or missing: datasets lists the ones there are
            message = " ".join(str(exc).splitlines()[:2])[:300]
            raise InvalidArgument(f"{where}.config_name", message) from None
        except ConnectionError as exc:
            if os.environ.get("HF_HUB_OFFLINE") or "Offline" in str(exc):
                raise FailedPrecondition(f"{where}.hub_name: hub dataset {name!r} is not cached and the hub is "
                                         "offline (HF_HUB_OFFLINE); upload it or give a local path",
                                         reason="HUB_OFFLINE", metadata={"dataset": name}) from None
            raise Unavailable(f"{where}.hub_name: cannot reach the hub for {name!r}: {_first_line(exc)}",
                              retry_after=30) from None
        fingerprint = next(iter(splits.values()))._fingerprint if splits else ""
        provenance = {"source": "hub", "hub_name": name, "fingerprint": fingerprint}
        return splits, provenance | ({"config_name": config} if config else {})


def validate_rows(rows: datasets.Dataset, shape: DatasetFormat, where: str, min_rows: int) -> datasets.Dataset:
    """Check every example of a detected format: enough of them, required values present and well-formed, answers
    where they say they are. Every problem is listed at once (up to MAX_VIOLATIONS), each naming row and column as
    the dataset spells them (`dataset.rows[3].output`). Returns the rows in the trained format (columns renamed,
    labels as booleans, answers as SQuAD lists)."""
    violations: list[tuple[str, str]] = []
    if len(rows) < min_rows:
        violations.append((f"{where}.rows", f"{len(rows)} example(s) after split, percent and max_samples; at least "
                           f"{min_rows} are required"))
    listed, total = [], 0
    for index, row in enumerate(rows.select_columns(shape.checked(rows.column_names))):
        for column, why in row_problems(shape, row):
            total += 1
            if len(listed) < MAX_VIOLATIONS:
                listed.append((f"{where}.rows[{index}].{column}", why))
    violations += listed
    if total > len(listed):
        violations.append((f"{where}.rows", f"{total - len(listed)} more problem(s) not listed"))
    clashes = [(s, t) for s, t in shape.renamed(rows.column_names).items() if t in rows.column_names]
    violations += [(f"{where}.columns", f"{shape.name} reads {s!r} as {t!r}, and the dataset has a {t!r} column too; "
                    "drop or rename one with column_mapping") for s, t in clashes]
    if violations:
        (first, why), *more = violations
        raise InvalidArgument(first, why, more=more)
    if shape.rewritten:
        rows = rows.map(lambda row: convert_row(shape, row), remove_columns=rows.column_names)
    return rows


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
