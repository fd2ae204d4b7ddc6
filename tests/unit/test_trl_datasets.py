"""The TRL service's dataset loading: file formats, folders, splits and slices, selection, mapping, validation."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from forgeway.core.datasetformats import FORMATS
from forgeway.core.errors import InvalidArgument, NotFound, PermissionDenied
from forgeway.services.training.datasets import DatasetStore
from forgeway.services.training.spec import DatasetSpec
from forgeway.services.trl.datasets import DatasetLoader, detect_format, file_digest, validate_rows

pytestmark = pytest.mark.trl

ROWS = [{"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(10)]


@pytest.fixture
def loader(tmp_path):
    root = tmp_path / "allowed"
    root.mkdir()

    def allowed(path, field_name):
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            raise PermissionDenied(f"{field_name}: outside")
        return resolved

    return DatasetLoader(allowed, DatasetStore(tmp_path / "uploads", 1 << 20), tmp_path / "cache"), root


def write(path, rows, fmt):
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_each_file_format_loads_with_a_checksum(loader, fmt):
    load, root = loader
    path = write(root / f"prefs.{fmt}", ROWS, fmt)
    rows, provenance = load.load(DatasetSpec("path", str(path)), "dataset")
    assert rows.to_list() == ROWS
    assert provenance["sha256"] == file_digest(path) and provenance["rows"] == 10


def test_a_folder_with_split_files_and_slices(loader):
    load, root = loader
    folder = root / "data"
    folder.mkdir()
    write(folder / "train.jsonl", ROWS, "jsonl")
    write(folder / "test.jsonl", ROWS[:3], "jsonl")
    assert len(load.load(DatasetSpec("path", str(folder), split="test"), "d")[0]) == 3
    head, _ = load.load(DatasetSpec("path", str(folder), split="train[:40%]"), "d")
    tail, _ = load.load(DatasetSpec("path", str(folder), split="train[-2:]"), "d")
    assert [r["prompt"] for r in head] == ["p0", "p1", "p2", "p3"] and [r["prompt"] for r in tail] == ["p8", "p9"]
    with pytest.raises(InvalidArgument) as caught:
        load.load(DatasetSpec("path", str(folder), split="validation"), "dataset")
    assert caught.value.field == "dataset.split" and "train" in caught.value.message


def test_percent_then_max_samples_and_column_mapping(loader):
    load, _ = loader
    spec = DatasetSpec("inline", rows=tuple(ROWS), percent=50.0, max_samples=3,
                       column_mapping={"prompt": "question", "chosen": "good"})
    rows, provenance = load.load(spec, "dataset")
    assert rows.column_names == ["question", "good", "rejected"] and len(rows) == 3
    assert len(provenance["sha256"]) == 64 and provenance["percent"] == 50.0


def test_missing_files_and_paths_outside_the_roots(loader, tmp_path):
    load, root = loader
    with pytest.raises(NotFound):
        load.load(DatasetSpec("path", str(root / "nope.jsonl")), "dataset")
    with pytest.raises(PermissionDenied):
        load.load(DatasetSpec("path", str(tmp_path / "cache")), "dataset")
    with pytest.raises(InvalidArgument) as caught:
        load.load(DatasetSpec("path", str(write(root / "x.txt", ROWS, "jsonl"))), "dataset")
    assert ".txt" in caught.value.message


def test_a_malformed_file_or_mixed_inline_types_are_invalid(loader):
    load, root = loader
    with pytest.raises(InvalidArgument) as caught:
        load.load(DatasetSpec("inline", rows=({"label": True}, {"label": "maybe"})), "dataset")
    assert caught.value.field == "dataset.inline.rows"
    (root / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(InvalidArgument) as caught:
        load.load(DatasetSpec("path", str(root / "bad.jsonl")), "dataset")
    assert caught.value.field == "dataset.path"


@pytest.mark.parametrize(("columns", "accepted", "expected"), [
    (["prompt", "chosen", "rejected"], ("preference",), "preference"),
    (["chosen", "rejected"], ("preference",), "preference"),
    (["prompt", "completion", "label"], ("unpaired_preference", "preference"), "unpaired_preference"),
    (["messages"], ("conversational", "prompt_completion", "language_modeling"), "conversational"),
    (["prompt", "completion"], ("conversational", "prompt_completion", "language_modeling"), "prompt_completion"),
    (["text", "id"], ("conversational", "prompt_completion", "language_modeling"), "language_modeling"),
    (["context", "question", "answer"], ("extractive_qa",), "extractive_qa"),
    (["document", "summary"], ("summarization",), "summarization"),
    (["prompt", "reference"], ("prompt_only",), "prompt_only"),
])
def test_format_detection(columns, accepted, expected):
    assert detect_format(columns, accepted, "dataset", "x").name == expected


def test_validation_names_column_and_row():
    import datasets

    rows = datasets.Dataset.from_list([{"prompt": "a", "completion": "b", "label": "yes"},
                                       {"prompt": "a", "completion": "b", "label": "maybe"}])
    with pytest.raises(InvalidArgument) as caught:
        validate_rows(rows, FORMATS["unpaired_preference"], "dataset", 1)
    assert caught.value.violations == [("dataset.rows[1].label", "must be true or false, not 'maybe'")]
    qa = datasets.Dataset.from_list([{"context": "the cat sat", "question": "who?", "answer": "the dog"}])
    with pytest.raises(InvalidArgument) as caught:
        validate_rows(qa, FORMATS["extractive_qa"], "dataset", 1)
    assert caught.value.violations == [("dataset.rows[0].answer", "'the dog' does not occur in the context")]
    ok = validate_rows(datasets.Dataset.from_list([{"context": "the cat sat", "question": "who?", "answer": "cat"}]),
                       FORMATS["extractive_qa"], "dataset", 1)
    assert ok[0]["answers"] == {"text": ["cat"], "answer_start": [4]}
    chat = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "hi"},
                                                     {"role": "assistant", "content": ""}]}])
    with pytest.raises(InvalidArgument) as caught:
        validate_rows(chat, FORMATS["conversational"], "dataset", 1)
    assert caught.value.field == "dataset.rows[0].messages[1]" and "content" in caught.value.message
