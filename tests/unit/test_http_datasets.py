"""Fine-tuning files: every line a JSON object of one known format, or a 400 naming the first bad line."""

from __future__ import annotations

import json

import pytest

from forgeway.gateway.http.datasets import validate_jsonl
from forgeway.gateway.http.errors import OpenAIHTTPError


def jsonl(*rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize(("rows", "kind"), [
    ([CHAT, CHAT], "conversational"),
    ([{"prompt": "a", "completion": "b"}], "prompt_completion"),
    ([{"prompt": "a", "chosen": "b", "rejected": "c"}], "preference"),
    ([{"prompt": "a", "completion": "b", "label": True}], "unpaired_preference"),
    ([{"prompt": [{"role": "user", "content": "q"}]}], "prompt_only"),
    ([{"text": "plain text"}], "language_modeling"),
    ([{"input": "a", "output": "b"}], "input_output"),  # ModelForge's shapes (stored as uploaded)
    ([{"document": "a long text", "summary": "short"}], "summarization"),
    ([{"article": "a long text", "summary": "short"}], "article_summary"),
    ([{"context": "the cat sat", "question": "who?", "answers": {"text": ["cat"], "answer_start": [4]}}],
     "extractive_qa"),
    ([{"context": "the cat sat", "question": "who?", "answers": {"text": "cat", "answer_start": 4}}], "extractive_qa"),
])
def test_known_formats_pass_unchanged(rows, kind):
    data = jsonl(*rows)
    checked = validate_jsonl(data)
    assert (checked.format, checked.rows, checked.content) == (kind, len(rows), data)


def test_openai_preference_rows_are_stored_as_prompt_chosen_rejected():
    row = {"input": {"messages": [{"role": "user", "content": "q"}]},
           "preferred_output": [{"role": "assistant", "content": "good"}],
           "non_preferred_output": [{"role": "assistant", "content": "bad"}]}
    checked = validate_jsonl(jsonl(row))
    stored = json.loads(checked.content)
    assert checked.format == "preference"
    assert stored == {"prompt": row["input"]["messages"], "chosen": row["preferred_output"],
                      "rejected": row["non_preferred_output"]}


@pytest.mark.parametrize(("data", "line", "words"), [
    (jsonl(CHAT, "{not json"), 2, "not valid JSON"),
    (jsonl(CHAT, [1, 2]), 2, "JSON object"),
    (jsonl(CHAT, {"question": "x"}), 2, "known format"),
    (jsonl(CHAT, {"prompt": "a", "completion": "b"}), 2, "differs from the format conversational of line 1"),
    (jsonl({"prompt": "a", "completion": "b"}, {"prompt": "a", "completion": "b", "label": True}), 2,
     "format unpaired_preference differs from the format prompt_completion of line 1"),
    (jsonl({"input": "a", "output": "b"}, {"input": "c"}), 2, "output: missing (the format input_output of line 1)"),
    (jsonl({"input": "a", "output": "b"}, {"input": "c", "output": " "}), 2, "output: missing or empty"),
    (jsonl({"context": "the cat sat", "question": "who?", "answers": {"text": ["cat"], "answer_start": [0]}}), 1,
     "answers.text[0]: 'cat' is not at answer_start 0 of the context; it occurs at 4"),
    (jsonl(CHAT, {"messages": [{"role": "wizard", "content": "x"}]}), 2, "role"),
    (jsonl(CHAT, CHAT, {"messages": []}), 3, "non-empty list"),
    (jsonl({"prompt": "a", "completion": "b", "label": "yes"}), 1, "label"),
    (b'{"text": "ok"}\n\xff\n', 2, "UTF-8"),
])
def test_bad_lines_are_named(data, line, words):
    with pytest.raises(OpenAIHTTPError) as info:
        validate_jsonl(data)
    error = info.value
    assert error.status == 400 and error.param == "file"
    assert f"line {line}:" in error.message and words in error.message


def test_blank_lines_are_skipped_but_an_empty_file_is_rejected():
    assert validate_jsonl(b"\n" + jsonl(CHAT) + b"\r\n\n").rows == 1
    with pytest.raises(OpenAIHTTPError, match="no examples"):
        validate_jsonl(b"\n\n")
