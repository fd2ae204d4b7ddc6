"""AlignTune's dataset files against the real TRL trainer behind a real gateway: alpaca trains sft, hh-rlhf and
UltraFeedback train dpo, a one-split file gets its validation split generated, bad rows are refused naming row and
column, and an alpaca file goes through OpenAI's POST /v1/files and fine-tuning API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from forgeway.client import Client, DatasetSource, InvalidArgumentError
from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.settings import HttpSettings
from forgeway.testing import trainer_stack

pytestmark = [pytest.mark.trl, pytest.mark.slow]
FAST = {"batch_size": 2, "max_seq_length": 48, "learning_rate": 1e-3, "lora": {"r": 4, "alpha": 8}}
TURN = "\n\nHuman: Where did cat {i} sit?\n\nAssistant:"


def alpaca(n: int = 6) -> list[dict]:
    return [{"instruction": f"Where did cat {i} sit?", "input": "" if i % 2 else "It was a sunny day.",
             "output": "On the mat."} for i in range(n)]


def hh_rlhf(n: int = 6) -> list[dict]:
    return [{"chosen": TURN.format(i=i) + " On the mat.", "rejected": TURN.format(i=i) + " I will not say."}
            for i in range(n)]


def ultrafeedback(n: int = 6) -> list[dict]:
    return [{"source": "cats", "instruction": f"Where did cat {i} sit?", "models": ["a", "b", "c"],
             "completions": [{"model": "a", "response": "Somewhere.", "overall_score": 5.5},
                             {"model": "b", "response": "On the mat.", "overall_score": 9.0},
                             {"model": "c", "response": "I will not say.", "overall_score": 1.5}]} for i in range(n)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("aligntune-datasets")
    build_tiny_llama(root / "tiny", seed=0)
    with trainer_stack(root, min_dataset_rows=2) as running:
        yield running


def metadata(stack, name: str) -> dict:
    return json.loads((stack.root / "home" / "models" / name / "forgeway.json").read_text())


@pytest.mark.parametrize(("name", "rows", "method", "source_format", "trained"), [
    ("alpaca", alpaca(), "sft", "alpaca", "prompt_completion"),
    ("hh-rlhf", hh_rlhf(), "dpo", "hh_rlhf", "preference"),
    ("ultrafeedback", ultrafeedback(), "dpo", "ultrafeedback", "preference"),
])
def test_aligntune_files_train_through_the_gateway(stack, name, rows, method, source_format, trained):
    path = write_jsonl(stack.root / f"{name}.jsonl", rows)
    with Client(stack.target, timeout=60) as client:
        job = client.train(str(stack.root / "tiny"), str(path), method=method, max_steps=1,
                           output_name=f"at-{name}", **FAST)
        record = job.wait(check=True)
    assert record.backend == "trl"
    recorded = metadata(stack, f"at-{name}")["dataset"]
    assert (recorded["format"], recorded["source_format"], recorded["rows"]) == (trained, source_format, len(rows))


def test_a_one_split_file_gets_its_validation_split_generated(stack):
    path = write_jsonl(stack.root / "one-split.jsonl", alpaca(20))
    with Client(stack.target, timeout=60) as client:
        job = client.train(str(stack.root / "tiny"), str(path), eval_dataset=DatasetSource(path=str(path),
                                                                                           split="validation"),
                           max_steps=1, output_name="at-generated", **FAST)
        job.wait(check=True)
    recorded = metadata(stack, "at-generated")
    # AlignTune's 80/10/10 with seed 42: the eval set is the generated validation, the training set the generated
    # train part, so no example is both trained and evaluated on
    assert recorded["eval_dataset"]["rows"] == 2 and "80/10/10" in recorded["eval_dataset"]["split_generated"]
    assert recorded["dataset"]["rows"] == 16 and "split_generated" in recorded["dataset"]


def bad_hh_rlhf() -> list[dict]:
    rows = hh_rlhf()
    rows[2]["rejected"] = "I will not say."
    rows[4]["chosen"] = TURN.format(i=4)[:-len("\n\nAssistant:")]
    return rows


def bad_ultrafeedback() -> list[dict]:
    rows = ultrafeedback()
    rows[1]["completions"][2]["overall_score"] = None
    return rows


@pytest.mark.parametrize(("name", "rows", "method", "violations"), [
    ("bad-hh-rlhf", bad_hh_rlhf(), "dpo", [
        ("dataset.rows[2].rejected", "must be a Human/Assistant dialogue with a '\\n\\nAssistant:' turn (hh-rlhf)"),
        ("dataset.rows[4].chosen", "must be a Human/Assistant dialogue with a '\\n\\nAssistant:' turn (hh-rlhf)")]),
    ("bad-ultrafeedback", bad_ultrafeedback(), "dpo", [
        ("dataset.rows[1].completions[2]", "needs a non-empty response or text and a numeric overall_score or "
                                           "overall")]),
    ("bad-alpaca", [*alpaca(3), {"instruction": "", "input": "", "output": "On the mat."}], "sft", [
        ("dataset.rows[3].instruction", "missing or empty")]),
])
def test_bad_aligntune_rows_are_refused_naming_row_and_column_and_no_job_exists(stack, name, rows, method,
                                                                               violations):
    path = write_jsonl(stack.root / f"{name}.jsonl", rows)
    with Client(stack.target, timeout=60) as client, Client(stack.addresses[0], timeout=60) as trainer:
        before = [j.id for j in trainer.jobs.list()]
        with pytest.raises(InvalidArgumentError) as refused:
            client.train(str(stack.root / "tiny"), str(path), method=method, max_steps=1, **FAST)
        assert refused.value.field_violations == violations
        assert [j.id for j in trainer.jobs.list()] == before


def test_an_alpaca_file_through_openai_files_and_fine_tuning(stack):
    data = "".join(json.dumps(row) + "\n" for row in alpaca()).encode()
    with TestClient(create_app(stack.target, HttpSettings())) as http:
        upload = http.post("/v1/files", data={"purpose": "fine-tune"},
                           files={"file": ("alpaca.jsonl", data, "application/jsonl")})
        assert upload.status_code == 200, upload.text
        assert upload.json()["rows"] == 6
        created = http.post("/v1/fine_tuning/jobs", json={
            "model": str(stack.root / "tiny"), "training_file": upload.json()["id"], "suffix": "alpaca",
            "method": {"type": "supervised", "supervised": {"hyperparameters": {
                "batch_size": 2, "max_steps": 1, "max_seq_length": 48, "learning_rate": 1e-3}}},
            "lora": {"r": 4, "alpha": 8}, "backend": "trl"})
        assert created.status_code == 200, created.text
        job = created.json()
        while job["status"] not in ("succeeded", "failed", "cancelled"):  # bounded by the job, not by a clock
            time.sleep(0.5)
            job = http.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
    assert job["status"] == "succeeded", job.get("error")
    assert metadata(stack, job["fine_tuned_model"])["dataset"]["source_format"] == "alpaca"
