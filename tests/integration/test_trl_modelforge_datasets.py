"""ModelForge's dataset files against the real TRL trainer and a real gateway: input/output JSONL trains text
generation (as TRL's prompt/completion); ModelForge's bad datasets are refused naming row and field, and no job
exists afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeway.client import Client, InvalidArgumentError
from forgeway.testing import trainer_stack

pytestmark = [pytest.mark.trl, pytest.mark.slow]
FAST = {"batch_size": 2, "max_seq_length": 32, "learning_rate": 1e-3, "lora": {"r": 4, "alpha": 8}}
CONTEXT = "The cat number {i} sat on the mat while the dog slept."


def io_rows(n: int = 12) -> list[dict]:
    return [{"input": f"Where did cat {i} sit?", "output": "On the mat."} for i in range(n)]


def qa_rows(n: int = 10) -> list[dict]:
    return [{"context": CONTEXT.format(i=i), "question": "Where did the cat sit?",
             "answers": {"text": ["the mat"], "answer_start": [CONTEXT.format(i=i).index("the mat")]}}
            for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The TRL trainer with its default minimum of 10 examples (ModelForge's), behind a gateway."""
    from forgeway.testing import build_tiny_llama, build_tiny_qa, build_tiny_seq2seq

    root = tmp_path_factory.mktemp("modelforge-datasets")
    build_tiny_llama(root / "tiny", seed=0)
    build_tiny_qa(root / "qa")
    build_tiny_seq2seq(root / "seq2seq")
    write_jsonl(root / "train.jsonl", io_rows())
    with trainer_stack(root, min_dataset_rows=10) as running:
        yield running


def metadata(stack, name: str) -> dict:
    return json.loads((stack.root / "home" / "models" / name / "forgeway.json").read_text())


def test_input_output_jsonl_trains_text_generation_through_the_gateway(stack):
    with Client(stack.target, timeout=60) as client:
        dataset = client.upload_dataset(stack.root / "train.jsonl")
        assert dataset.rows == 12
        job = client.train(str(stack.root / "tiny"), dataset, max_steps=2, output_name="mf-io-upload", **FAST)
        events = list(job.events())
    assert job.final_state == "succeeded", [e.state for e in events if e.kind == "state"]
    assert any(e.kind == "progress" and e.progress.loss for e in events)
    recorded = metadata(stack, "mf-io-upload")["dataset"]
    assert (recorded["format"], recorded["source_format"]) == ("prompt_completion", "input_output")
    assert recorded["rows"] == 12


def test_input_output_jsonl_trains_on_the_trainer_itself_from_a_path(stack):
    trainer = stack.addresses[0]
    with Client(trainer, timeout=60) as client:
        job = client.train(str(stack.root / "tiny"), str(stack.root / "train.jsonl"), max_steps=1,
                           output_name="mf-io-path", **FAST)
        record = job.wait(check=True)
    assert record.backend == "trl" and record.artifact.model_name == "mf-io-path"
    assert metadata(stack, "mf-io-path")["dataset"]["source_format"] == "input_output"


def articles() -> list[dict]:
    return [{"article": f"The cat {i} sat on the mat all day while the dog slept by the door.", "summary": "A cat sat."}
            for i in range(10)]


def scalar_answers() -> list[dict]:  # SQuAD's answers with single values instead of lists
    return [{**row, "answers": {"text": "the mat", "answer_start": row["answers"]["answer_start"][0]}}
            for row in qa_rows()]


@pytest.mark.parametrize(("task", "base", "rows", "source_format", "trained"), [
    ("summarization", "seq2seq", articles(), "article_summary", "summarization"),
    ("extractive-question-answering", "qa", scalar_answers(), None, "extractive_qa"),
])
def test_summarization_and_qa_train_from_modelforge_shapes(stack, task, base, rows, source_format, trained):
    path = write_jsonl(stack.root / f"{task}.jsonl", rows)
    with Client(stack.target, timeout=60) as client:
        job = client.train(str(stack.root / base), str(path), task=task, max_steps=1, output_name=f"mf-{task}", **FAST)
        job.wait(check=True)
    recorded = metadata(stack, f"mf-{task}")["dataset"]
    assert (recorded["format"], recorded.get("source_format")) == (trained, source_format)


def missing_output() -> list[dict]:
    rows = io_rows()
    del rows[3]["output"]
    return rows


def answer_elsewhere() -> list[dict]:
    rows = qa_rows()
    rows[6]["answers"] = {"text": ["the rug"], "answer_start": [28]}
    return rows


@pytest.mark.parametrize(("name", "rows", "options", "violation"), [
    ("nine-rows", io_rows(9), {},
     ("dataset.rows", "9 example(s) after split, percent and max_samples; at least 10 are required")),
    ("qa-answer-not-in-context", answer_elsewhere(), {"task": "extractive-question-answering", "base": "qa"},
     ("dataset.rows[6].answers.text[0]", "'the rug' is not at answer_start 28 of the context; it does not occur in "
                                         "the context")),
    ("missing-output", missing_output(), {}, ("dataset.rows[3].output", "missing or empty")),
])
def test_bad_modelforge_datasets_are_refused_naming_row_and_field_and_no_job_exists(stack, name, rows, options,
                                                                                  violation):
    options = dict(options)
    path = write_jsonl(stack.root / f"{name}.jsonl", rows)
    base = str(stack.root / options.pop("base", "tiny"))
    with Client(stack.target, timeout=60) as client, Client(stack.addresses[0], timeout=60) as trainer:
        before = [j.id for j in trainer.jobs.list()]
        for dataset in (str(path), client.upload_dataset(path)):  # a file path, and the same file uploaded
            with pytest.raises(InvalidArgumentError) as refused:
                client.train(base, dataset, max_steps=1, **options, **FAST)
            assert refused.value.field_violations == [violation]
            with pytest.raises(InvalidArgumentError):  # CreateJob answers the same, creating nothing
                client.jobs.create(base, dataset, max_steps=1, **options, **FAST)
        assert [j.id for j in trainer.jobs.list()] == before
