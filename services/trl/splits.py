"""Split selection: names and slices as datasets writes them, AlignTune's split names, and its generated splits."""

from __future__ import annotations

import re

import datasets

from forgeway.core.errors import InvalidArgument

SPLIT = re.compile(r"^(?P<name>[\w.-]+)(\[(?P<start>-?\d+%?)?:(?P<end>-?\d+%?)?\])?$")

# AlignTune's SplitGenerator._normalize_split_names, as an exact table: a split's other names -> its canonical one.
CANONICAL = {
    **dict.fromkeys(("train_sft", "train_prefs", "train_gen", "training"), "train"),
    **dict.fromkeys(("valid", "val", "dev", "development", "valid_sft", "valid_prefs", "valid_gen"), "validation"),
    **dict.fromkeys(("test_sft", "test_prefs", "test_gen", "testing"), "test"),
}
GENERATED = ("train", "validation", "test")
HELD_OUT, SEED = 0.1, 42  # AlignTune's SplitGenerator: 10% test, then 10% of the whole as validation, seed 42


def canonical(name: str) -> str:
    return CANONICAL.get(name.lower(), name.lower())


def select_split(splits: datasets.DatasetDict, split: str, field_name: str,
                 generate: bool = False) -> tuple[datasets.Dataset, dict]:
    """A split by name, with optional slicing as datasets writes it ("train", "train[:90%]", "test[10:20]"), and how
    it was found for the provenance. A name missing from the source is looked up by its canonical name (train_sft and
    train_prefs are train; valid, val and dev are validation; test_sft and test_prefs are test). A source with one
    split that lacks the one asked for gets AlignTune's train/validation/test generated from it (80/10/10, seed 42);
    `generate` asks for the generated split even where the name exists (the train part when validation was
    generated, so that no example is both trained and evaluated on)."""
    match = SPLIT.match(split.replace(" ", ""))
    if not match:
        raise InvalidArgument(field_name, f"{split!r}: write a split name, optionally sliced ('train[:90%]')")
    rows, found = _named(splits, match["name"], field_name, generate)
    if match.group(2) is None:
        return rows, found
    n = len(rows)

    def bound(text: str | None, default: int) -> int:
        if text is None:
            return default
        value = round(n * int(text[:-1]) / 100) if text.endswith("%") else int(text)
        return max(0, min(n, value + n if value < 0 else value))

    start, end = bound(match["start"], 0), bound(match["end"], n)
    return rows.select(range(start, max(start, end))), found


def generated_splits(rows: datasets.Dataset, field_name: str) -> dict[str, datasets.Dataset]:
    """AlignTune's 80/10/10 split of one split: test first, then validation from the rest, both with seed 42."""
    if len(rows) < 3:
        raise InvalidArgument(field_name, f"{len(rows)} example(s) are too few to generate train, validation and "
                              "test splits (at least 3)")
    first = rows.train_test_split(test_size=HELD_OUT, seed=SEED)
    second = first["train"].train_test_split(test_size=HELD_OUT / (1 - HELD_OUT), seed=SEED)
    return {"train": second["train"], "validation": second["test"], "test": first["test"]}


def _named(splits: datasets.DatasetDict, name: str, field_name: str, generate: bool) -> tuple[datasets.Dataset, dict]:
    wanted, one = canonical(name), len(splits) == 1
    if not (generate and one):
        if name in splits:
            return splits[name], {}
        same = [s for s in splits if canonical(s) == wanted]
        if same:
            return splits[same[0]], {"split_source": same[0]}
    if one and wanted in GENERATED:
        source, rows = next(iter(splits.items()))
        return generated_splits(rows, field_name)[wanted], {
            "split_generated": f"{wanted} of {source} (80/10/10, seed {SEED})"}
    hint = "" if one else "; a dataset with one split gets train, validation and test generated"
    raise InvalidArgument(field_name, f"no split {name!r}; available: {', '.join(splits)}{hint}")
