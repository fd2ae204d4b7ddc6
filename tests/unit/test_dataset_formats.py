"""The dataset format table: detection by column set (TRL's formats and ModelForge's), row checks that name the row
and column, conversion onto the trained formats; and the TRL service's validation built on it."""

from __future__ import annotations

import json

import datasets
import pytest

from forgeway.core.datasetformats import FORMATS, convert_row, detect, row_problems
from forgeway.core.errors import InvalidArgument
from forgeway.services.training.datasets import DatasetStore
from forgeway.services.training.spec import DatasetSpec
from forgeway.services.trl.datasets import MAX_VIOLATIONS, DatasetLoader, detect_format, validate_rows

SFT = ("conversational", "prompt_completion", "language_modeling")
QA_CONTEXT = "The cat sat on the mat."


def qa(text="the mat", start=15, **extra) -> dict:
    return {"context": QA_CONTEXT, "question": "Where did the cat sit?",
            "answers": {"text": text, "answer_start": start}, **extra}


@pytest.mark.parametrize(("columns", "accepted", "name", "trained"), [
    (["input", "output"], SFT, "input_output", "prompt_completion"),
    (["input", "output", "text"], SFT, "input_output", "prompt_completion"),  # two columns outrank one
    (["prompt", "completion"], SFT, "prompt_completion", "prompt_completion"),
    (["document", "summary"], ("summarization",), "summarization", "summarization"),
    (["article", "summary"], ("summarization",), "article_summary", "summarization"),
    (["context", "question", "answers"], ("extractive_qa",), "extractive_qa", "extractive_qa"),
    (["prompt", "chosen", "rejected"], ("unpaired_preference", "preference"), "preference", "preference"),
    (["prompt", "completion", "label"], ("unpaired_preference", "preference"), "unpaired_preference",
     "unpaired_preference"),
    (["messages", "text"], SFT, "conversational", "conversational"),  # a tie goes to the accepted order
])
def test_detection_by_column_set(columns, accepted, name, trained):
    shape = detect(columns, accepted)
    assert (shape.name, shape.trained) == (name, trained)


def test_a_format_is_only_found_among_the_accepted_ones():
    assert detect(["input", "output"], ("summarization",)) is None
    assert detect(["article", "summary"], SFT) is None
    with pytest.raises(InvalidArgument) as caught:
        detect_format(["article", "summary"], SFT, "dataset", "method sft")
    assert caught.value.field == "dataset.columns"
    assert "input_output: input, output [modelforge, trains as prompt_completion]" in caught.value.message


def test_row_problems_name_the_column_as_the_dataset_spells_it():
    shape = FORMATS["input_output"]
    assert row_problems(shape, {"input": "hi", "output": "hello"}) == []
    assert row_problems(shape, {"input": "hi"}) == [("output", "missing or empty")]
    assert row_problems(shape, {"input": "hi", "output": "  "}) == [("output", "missing or empty")]
    assert row_problems(shape, {"input": 3, "output": "x"}) == [  # input is read as a prompt: text or messages
        ("input", "must be text or a list of messages, not int")]
    assert row_problems(FORMATS["article_summary"], {"article": "", "summary": None}) == [
        ("article", "missing or empty"), ("summary", "missing or empty")]
    assert row_problems(FORMATS["preference"], {"prompt": "", "chosen": "a", "rejected": "b"}) == [
        ("prompt", "missing or empty")]
    assert row_problems(FORMATS["conversational"], {"messages": [{"role": "user", "content": "hi"}, {"role": "x"}]}) \
        == [("messages[1]", "a message needs a role and non-empty content")]


@pytest.mark.parametrize(("row", "problems"), [
    (qa(), []),
    (qa(["the mat"], [15]), []),
    (qa("the mat", 4), [("answers.text", "'the mat' is not at answer_start 4 of the context; it occurs at 15")]),
    (qa(["the dog"], [15]), [("answers.text[0]", "'the dog' is not at answer_start 15 of the context; it does not "
                                                 "occur in the context")]),
    (qa(["the mat", "mat"], [15]), [("answers", "needs as many answer_start values as texts (got 2 and 1)")]),
    (qa("the mat", 1.5), [("answers.answer_start", "must be a character offset, not 1.5")]),
    (qa("the mat", 15.0), []),  # inline rows arrive through a protobuf Struct, whose numbers are floats
    ({"context": QA_CONTEXT, "question": "Where?", "answers": "the mat"},
     [("answers", "must be {'text': ..., 'answer_start': ...} (SQuAD's shape; lists or single values)")]),
    ({"context": QA_CONTEXT, "question": "Where?", "answer": "the rug"},
     [("answer", "'the rug' does not occur in the context")]),
])
def test_extractive_qa_answers_must_be_where_they_say(row, problems):
    assert row_problems(FORMATS["extractive_qa"], row) == problems


def test_conversion_onto_the_trained_formats():
    assert convert_row(FORMATS["input_output"], {"input": "a", "output": "b", "id": 7}) == \
        {"prompt": "a", "completion": "b", "id": 7}
    assert convert_row(FORMATS["article_summary"], {"article": "a", "summary": "b"}) == \
        {"document": "a", "summary": "b"}
    assert convert_row(FORMATS["extractive_qa"], qa("the mat", 15.0))["answers"] == \
        {"text": ["the mat"], "answer_start": [15]}
    assert convert_row(FORMATS["extractive_qa"], {"context": QA_CONTEXT, "question": "q", "answer": "mat"})[
        "answers"] == {"text": ["mat"], "answer_start": [19]}
    assert convert_row(FORMATS["unpaired_preference"], {"prompt": "p", "completion": "c", "label": "yes"})["label"] \
        is True


def io_rows(n: int, **changes) -> datasets.Dataset:
    rows = [{"input": f"question {i}", "output": f"answer {i}"} for i in range(n)]
    for index, row in changes.items():
        rows[int(index.removeprefix("r"))] = row
    return datasets.Dataset.from_list(rows)


def test_validation_lists_every_violation_with_row_and_field():
    rows = io_rows(9, r3={"input": "q", "output": None}, r5={"input": " ", "output": "a"})
    with pytest.raises(InvalidArgument) as caught:
        validate_rows(rows, FORMATS["input_output"], "dataset", 10)
    assert caught.value.violations == [
        ("dataset.rows", "9 example(s) after split, percent and max_samples; at least 10 are required"),
        ("dataset.rows[3].output", "missing or empty"),
        ("dataset.rows[5].input", "missing or empty"),
    ]


def test_violations_are_capped_and_the_rest_counted():
    rows = datasets.Dataset.from_list([{"input": "", "output": ""} for _ in range(30)])
    with pytest.raises(InvalidArgument) as caught:
        validate_rows(rows, FORMATS["input_output"], "eval_dataset", 1)
    violations = caught.value.violations
    assert len(violations) == MAX_VIOLATIONS + 1 and violations[0] == ("eval_dataset.rows[0].input", "missing or empty")
    assert violations[-1] == ("eval_dataset.rows", f"{60 - MAX_VIOLATIONS} more problem(s) not listed")


def test_valid_rows_come_back_in_the_trained_format():
    rows = validate_rows(io_rows(10), FORMATS["input_output"], "dataset", 10)
    assert rows.column_names == ["prompt", "completion"]
    assert rows[0] == {"prompt": "question 0", "completion": "answer 0"}
    squad = datasets.Dataset.from_list([qa() for _ in range(2)])
    assert validate_rows(squad, FORMATS["extractive_qa"], "dataset", 1)[1]["answers"] == \
        {"text": ["the mat"], "answer_start": [15]}


def test_a_renamed_column_that_exists_already_is_refused():
    rows = datasets.Dataset.from_list([{"input": "a", "output": "b", "prompt": "c"}])
    with pytest.raises(InvalidArgument) as caught:
        validate_rows(rows, detect_format(rows.column_names, SFT, "dataset", "x"), "dataset", 1)
    assert caught.value.field == "dataset.columns" and "'input' as 'prompt'" in caught.value.message


def test_a_jsonl_file_with_a_row_lacking_a_key_names_that_row(tmp_path):
    lines = [{"input": f"q{i}", "output": f"a{i}"} for i in range(10)]
    del lines[4]["output"]
    path = tmp_path / "modelforge.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    loader = DatasetLoader(lambda p, _: p.resolve(), DatasetStore(tmp_path / "uploads", 1 << 20), tmp_path / "cache")
    for spec in (DatasetSpec("path", str(path)), DatasetSpec("inline", rows=tuple(lines[4:] + lines[:4]))):
        rows, _ = loader.load(spec, "dataset")
        with pytest.raises(InvalidArgument) as caught:
            validate_rows(rows, detect_format(rows.column_names, SFT, "dataset", "x"), "dataset", 10)
        row = 4 if spec.kind == "path" else 0  # inline: the keyless row comes first, and its columns still count
        assert caught.value.violations == [(f"dataset.rows[{row}].output", "missing or empty")]
