"""Validation of fine-tuning files: JSON Lines whose every line is an example of one known format."""

from __future__ import annotations

import json
from dataclasses import dataclass

from forgeway.core.datasetformats import FORMATS, detect, row_problems

from .errors import OpenAIHTTPError

# OpenAI's preference rows, stored as prompt/chosen/rejected; every other format is the trainers' table
# (forgeway.core.datasetformats: TRL's formats and ModelForge's).
OPENAI_PREFERENCE = frozenset({"input", "preferred_output", "non_preferred_output"})
# The formats this module checks itself (stricter message rules); the rest are checked by the table's row checks.
_OWN_CHECKS = {"conversational", "language_modeling", "unpaired_preference", "preference", "prompt_completion",
               "prompt_only"}
FORMAT_HELP = (
    'each line must be a JSON object of one known format: {"messages": [...]} (chat), {"prompt", "completion"}, '
    '{"prompt", "chosen", "rejected"} (dpo), {"prompt", "completion", "label"} (kto), {"prompt"} (grpo/rloo), '
    '{"text"}, ModelForge\'s {"input", "output"}, {"document" or "article", "summary"}, '
    '{"context", "question", "answers": {"text", "answer_start"}}, AlignTune\'s alpaca {"instruction", "input", '
    '"output"}, hh-rlhf {"chosen", "rejected"} dialogues, UltraFeedback {"instruction", "completions"}, '
    'or OpenAI\'s {"input": {"messages"}, "preferred_output", "non_preferred_output"}'
)
ROLES = {"system", "developer", "user", "assistant", "tool"}


@dataclass(frozen=True)
class TrainingFile:
    """A validated file: the bytes to store (OpenAI preference rows rewritten as prompt/chosen/rejected)."""

    content: bytes
    rows: int
    format: str


def _bad(line: int, why: str) -> OpenAIHTTPError:
    return OpenAIHTTPError(400, f"invalid training file: line {line}: {why}", param="file", code="invalid_file_format")


def _check_messages(value, line: int, where: str, *, allow_empty: bool = False) -> None:
    if not isinstance(value, list) or (not value and not allow_empty):
        raise _bad(line, f"{where} must be a non-empty list of messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise _bad(line, f"{where}[{i}] must be an object with role and content")
        if message.get("role") not in ROLES:
            raise _bad(line, f"{where}[{i}].role must be one of {', '.join(sorted(ROLES))}")
        content = message.get("content")
        if not isinstance(content, str) and not (content is None and message.get("role") == "assistant"):
            raise _bad(line, f"{where}[{i}].content must be a string")


def _check_text_or_messages(value, line: int, where: str) -> None:
    if isinstance(value, str):
        return
    _check_messages(value, line, where)


def _check(kind: str, row: dict, line: int) -> dict:
    """Checks one example; returns it as stored."""
    if kind == "openai_preference":
        source = row["input"]
        if not isinstance(source, dict):
            raise _bad(line, "input must be an object with messages")
        _check_messages(source.get("messages"), line, "input.messages")
        _check_messages(row["preferred_output"], line, "preferred_output")
        _check_messages(row["non_preferred_output"], line, "non_preferred_output")
        return {"prompt": source["messages"], "chosen": row["preferred_output"],
                "rejected": row["non_preferred_output"]}
    if kind not in _OWN_CHECKS:
        problems = row_problems(FORMATS[kind], row)
        if problems:
            raise _bad(line, "; ".join(f"{column}: {why}" for column, why in problems))
        return row
    if kind == "conversational":
        _check_messages(row["messages"], line, "messages")
        return row
    if kind == "language_modeling":
        if not isinstance(row["text"], str) or not row["text"]:
            raise _bad(line, "text must be a non-empty string")
        return row
    if kind == "unpaired_preference" and not isinstance(row["label"], bool):
        raise _bad(line, "label must be true or false")
    for key in ("prompt", "completion", "chosen", "rejected"):
        if key in FORMATS[kind].checked(row):
            _check_text_or_messages(row[key], line, key)
    return row


def identify(row: dict) -> str | None:
    if OPENAI_PREFERENCE <= set(row):
        return "openai_preference"
    shape = detect(row)
    return shape.name if shape else None


def validate_jsonl(data: bytes) -> TrainingFile:
    """Checks every line of a JSON Lines training file; the error names the first bad line (1-based)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(data.count(b"\n", 0, exc.start) + 1, "not valid UTF-8") from None
    kind: str | None = None
    first_line = 0
    rewritten: list[str] = []
    rows = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        raw = raw.removesuffix("\r")
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _bad(number, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise _bad(number, f"{FORMAT_HELP}; got {type(row).__name__}")
        found = identify(row)
        needed = FORMATS[kind].required(row) if kind in FORMATS and found != kind else []
        missing = [c for c in needed if c not in row]
        if 0 < len(missing) < len(needed):  # a line with some of the file's columns but not all
            raise _bad(number, f"{', '.join(missing)}: missing (the format {kind} of line {first_line})")
        if found is None:
            raise _bad(number, f"{FORMAT_HELP}; got keys {sorted(row)}")
        if kind is not None and found != kind:
            raise _bad(number, f"format {found} differs from the format {kind} of line {first_line}")
        if kind is None:
            kind, first_line = found, number
        stored = _check(found, row, number)
        rewritten.append(json.dumps(stored, ensure_ascii=False) if stored is not row else raw)
        rows += 1
    if not rows:
        raise OpenAIHTTPError(400, "invalid training file: no examples", param="file", code="invalid_file_format")
    content = data if kind != "openai_preference" else ("\n".join(rewritten) + "\n").encode()
    return TrainingFile(content=content, rows=rows, format="preference" if kind == "openai_preference" else kind)
