"""Training dataset formats by their columns: the one table the trainers and the HTTP upload detect and check rows with.

Each format is a set of columns; some are read as they are (TRL's formats), others are renamed onto one of those
(ModelForge's `input`/`output` trains as TRL's prompt/completion). Detection is by column set: among the formats a
method or task accepts, the one with the most of its columns present wins (so `instruction`/`input`/`output` can
later outrank `input`/`output`), ties going to the accepted order and then to this table's order.
Row checks name the row (counted from 0) and the column as the dataset spells it: `rows[3].output`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# A required column, or a tuple of alternatives ("answers" or "answer").
Need = str | tuple[str, ...]


@dataclass(frozen=True)
class DatasetFormat:
    """One shape of training examples.

    Args:
        name: the format's name, as provenance and errors show it.
        columns: the columns that identify it and that every row must fill.
        trains_as: the trained (TRL) format it is read as; empty means itself.
        renames: column here -> column of the trained format.
        optional: columns checked when present (a preference dataset's prompt).
        origin: whose dataset shape this is ("trl", "modelforge").
    """

    name: str
    columns: tuple[Need, ...]
    trains_as: str = ""
    renames: Mapping[str, str] = field(default_factory=dict)
    optional: tuple[str, ...] = ()
    origin: str = "trl"

    @property
    def trained(self) -> str:
        return self.trains_as or self.name

    @property
    def rewritten(self) -> bool:
        """Whether convert_row changes its rows (renamed columns, labels made booleans, answers made SQuAD lists)."""
        return bool(self.renames) or self.trained in ("unpaired_preference", "extractive_qa")

    def required(self, columns: Iterable[str]) -> list[str]:
        """The columns it reads, alternatives resolved against the dataset's columns (the first one otherwise)."""
        present = set(columns)
        return [next((c for c in need if c in present), need[0]) if isinstance(need, tuple) else need
                for need in self.columns]

    def checked(self, columns: Iterable[str]) -> list[str]:
        """Required columns, then the optional ones the dataset has."""
        present = list(columns)
        return self.required(present) + [c for c in self.optional if c in present]

    def matches(self, columns: Iterable[str]) -> bool:
        present = set(columns)
        return all(c in present for c in self.required(present))

    def describe(self) -> str:
        needs = ", ".join("|".join(n) if isinstance(n, tuple) else n for n in self.columns)
        optional = f" (optional {', '.join(self.optional)})" if self.optional else ""
        source = f" [{self.origin}, trains as {self.trained}]" if self.trains_as else ""
        return f"{self.name}: {needs}{optional}{source}"


FORMATS: dict[str, DatasetFormat] = {f.name: f for f in [
    # The formats TRL and the task trainers read.
    DatasetFormat("preference", ("chosen", "rejected"), optional=("prompt",)),  # TRL extracts an implicit prompt
    DatasetFormat("unpaired_preference", ("prompt", "completion", "label")),
    DatasetFormat("prompt_completion", ("prompt", "completion")),
    DatasetFormat("conversational", ("messages",)),
    DatasetFormat("language_modeling", ("text",)),
    DatasetFormat("extractive_qa", ("context", "question", ("answers", "answer"))),  # SQuAD answers, or one string
    DatasetFormat("summarization", ("document", "summary")),
    DatasetFormat("prompt_only", ("prompt",)),
    # ModelForge's own shapes (its document/summary, context/question/answers and prompt/chosen/rejected are above).
    DatasetFormat("input_output", ("input", "output"), trains_as="prompt_completion",
                  renames={"input": "prompt", "output": "completion"}, origin="modelforge"),
    DatasetFormat("article_summary", ("article", "summary"), trains_as="summarization",
                  renames={"article": "document"}, origin="modelforge"),
]}
TRAINED = tuple(dict.fromkeys(f.trained for f in FORMATS.values()))

# How a trained format's column is checked; any other column holds non-empty text.
_KINDS = {"messages": "messages", "prompt": "text_or_messages", "completion": "text_or_messages",
          "chosen": "text_or_messages", "rejected": "text_or_messages", "label": "label", "answers": "answers",
          "answer": "answer"}


def detect(columns: Iterable[str], accepted: Iterable[str] = TRAINED) -> DatasetFormat | None:
    """The format of a dataset with these columns among those trained as one of `accepted`; None when none fits."""
    present = list(columns)
    order = list(accepted)
    candidates = sorted((f for f in FORMATS.values() if f.trained in order and f.matches(present)),
                        key=lambda f: order.index(f.trained))
    return max(candidates, key=lambda f: len(f.checked(present)), default=None)


def candidates(accepted: Iterable[str] = TRAINED) -> list[DatasetFormat]:
    """The formats read as one of `accepted`, for an error message listing what would fit."""
    order = list(accepted)
    return sorted((f for f in FORMATS.values() if f.trained in order), key=lambda f: order.index(f.trained))


def row_problems(shape: DatasetFormat, row: Mapping) -> list[tuple[str, str]]:
    """What is wrong with one example, as (column path, why): missing or empty values, wrong types, labels that are
    not booleans, messages without role or content, answers that are not where they say in the context."""
    problems: list[tuple[str, str]] = []
    for column in shape.checked(row.keys()):
        value = row.get(column)
        if _empty(value):
            problems.append((column, "missing or empty"))
            continue
        kind = _KINDS.get(shape.renames.get(column, column), "text")
        if kind == "text" and not isinstance(value, str):
            problems.append((column, f"must be text, not {_type(value)}"))
        elif kind == "text_or_messages" and not isinstance(value, str):
            problems += _messages(column, value)
        elif kind == "messages":
            problems += _messages(column, value)
        elif kind == "label" and as_label(value) is None:
            problems.append((column, f"must be true or false, not {value!r}"))
        elif kind in ("answers", "answer") and isinstance(row.get("context"), str):
            problems += _answers(column, value, row["context"])
    return problems


def convert_row(shape: DatasetFormat, row: Mapping) -> dict:
    """A checked example in its trained format: columns renamed, labels as booleans, answers as SQuAD lists
    ({"text": [...], "answer_start": [...]}); other columns kept."""
    out = {shape.renames.get(k, k): v for k, v in row.items()}
    if "label" in shape.checked(row.keys()):
        out["label"] = as_label(out["label"])
    if shape.trained == "extractive_qa":
        if "answer" in out and "answers" not in row:
            text = out.pop("answer")
            out["answers"] = {"text": [text], "answer_start": [out["context"].find(text)]}
        else:
            texts, starts = _spans(out["answers"])
            out["answers"] = {"text": texts, "answer_start": [int(s) for s in starts]}
    return out


def as_label(value) -> bool | None:
    """A KTO label as a boolean (true/false, 1/0, yes/no); None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return None


def _messages(column: str, value) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return [(column, f"must be text or a list of messages, not {_type(value)}")]
    return [(f"{column}[{i}]", "a message needs a role and non-empty content") for i, m in enumerate(value)
            if not (isinstance(m, Mapping) and isinstance(m.get("role"), str) and m["role"]
                    and not _empty(m.get("content")))]


def _spans(answers) -> tuple[list, list]:
    """SQuAD answers with lists or scalars -> (texts, starts) as lists."""
    texts, starts = answers.get("text"), answers.get("answer_start")
    return (texts if isinstance(texts, list) else [texts]), (starts if isinstance(starts, list) else [starts])


def _answers(column: str, value, context: str) -> list[tuple[str, str]]:
    if column == "answer":
        if not isinstance(value, str):
            return [(column, f"must be text, not {_type(value)}")]
        return [] if value in context else [(column, f"{value!r} does not occur in the context")]
    if not isinstance(value, Mapping) or "text" not in value or "answer_start" not in value:
        return [(column, "must be {'text': ..., 'answer_start': ...} (SQuAD's shape; lists or single values)")]
    texts, starts = _spans(value)
    if not texts or len(texts) != len(starts):
        return [(column, f"needs as many answer_start values as texts (got {len(texts)} and {len(starts)})")]
    problems = []
    for i, (text, start) in enumerate(zip(texts, starts, strict=True)):
        where = f"{column}.text[{i}]" if isinstance(value["text"], list) else f"{column}.text"
        if not isinstance(text, str) or not text.strip():
            problems.append((where, "must be non-empty text"))
        elif not isinstance(start, (int, float)) or isinstance(start, bool) or not math.isfinite(start) \
                or start != int(start) or start < 0:
            problems.append((where.replace(".text", ".answer_start"), f"must be a character offset, not {start!r}"))
        elif context[int(start):int(start) + len(text)] != text:
            found = context.find(text)
            hint = f"; it occurs at {found}" if found >= 0 else "; it does not occur in the context"
            problems.append((where, f"{text!r} is not at answer_start {int(start)} of the context{hint}"))
    return problems


def _empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict)):
        return not value
    return False


def _type(value) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean"}.get(type(value), type(value).__name__)
