"""DownloadModel, EvaluateModel and TrainRequest.resume_from through a real gateway and the real TRL trainer: a
trained tiny model downloaded byte for byte, its loss, perplexity, ROUGE and BLEU, a job resuming from another's
checkpoint, and the SDK's download writer refusing a corrupted stream."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
import transformers

from forgeway.client import Client, InvalidArgumentError, NotFoundError
from forgeway.client.downloads import DownloadError, DownloadWriter
from forgeway.testing import trainer_stack
from forgeway.v1 import models_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]
ROWS = [{"prompt": f"Where did cat {i} sit?", "completion": " On the mat."} for i in range(8)]
FAST = {"batch_size": 2, "max_seq_length": 32, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_llama, build_tiny_seq2seq

    root = tmp_path_factory.mktemp("download-evaluate")
    build_tiny_llama(root / "tiny", seed=0)
    build_tiny_seq2seq(root / "t5")
    (root / "chat.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    with trainer_stack(root, keep_checkpoints=True) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack):
    with Client(stack.target, timeout=120) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def trained(stack, client) -> str:
    """A full fine-tune (merged weights) of 2 steps with a checkpoint at each step."""
    job = client.train(str(stack.root / "tiny"), str(stack.root / "chat.jsonl"), max_steps=2, save_steps=1,
                       output_name="dl-sft", **FAST)
    assert job.wait().state == "succeeded"
    return job.id


def _digests(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_store_entry_downloads_byte_for_byte_and_loads(stack, client, trained, tmp_path):
    dest = client.models.download("dl-sft", tmp_path / "dl-sft")
    entry = stack.root / "home" / "models" / "dl-sft"
    assert dest == tmp_path / "dl-sft" and _digests(dest) == _digests(entry)
    assert {"config.json", "forgeway.json", "tokenizer.json"} <= set(_digests(dest))
    assert [p.name for p in tmp_path.iterdir()] == ["dl-sft"]  # no scratch folder left
    model = transformers.AutoModelForCausalLM.from_pretrained(dest)
    assert model.config.num_hidden_layers == 2


def test_a_jobs_checkpoint_downloads_by_name_or_latest(client, trained, tmp_path):
    latest = client.models.download("", tmp_path / "latest", checkpoint=(trained, ""))
    first = client.models.download("", tmp_path / "first", checkpoint=(trained, "checkpoint-1"))
    assert json.loads((latest / "trainer_state.json").read_text())["global_step"] == 2
    assert json.loads((first / "trainer_state.json").read_text())["global_step"] == 1


def test_unknown_names_are_not_found_and_list_what_exists(client, trained, tmp_path):
    with pytest.raises(NotFoundError, match="checkpoint-9.*known: checkpoint-1, checkpoint-2"):
        client.models.download("", tmp_path / "x", checkpoint=(trained, "checkpoint-9"))
    with pytest.raises(NotFoundError, match="nope"):
        client.models.download("nope", tmp_path / "y")
    with pytest.raises(InvalidArgumentError, match="name"):
        client.models.download("../escape", tmp_path / "z")
    assert not list(tmp_path.iterdir())


def test_evaluate_measures_loss_perplexity_rouge_and_bleu(client, trained):
    metrics = client.models.evaluate("dl-sft", ROWS[:4], generate_samples=2, max_new_tokens=6)
    assert metrics["eval_samples"] == 4 and metrics["generated_samples"] == 2
    assert math.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] > 0
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]), rel=1e-6)
    assert {"rouge1", "rouge2", "rougeL", "bleu"} <= set(metrics)
    assert all(0 <= metrics[k] <= 1 + 1e-9 for k in ("rouge1", "rouge2", "rougeL"))
    assert 0 < metrics["bleu"] <= 100 + 1e-9  # the fine-tune answers " On the mat." as it was taught
    base = client.models.evaluate("dl-sft", [{"text": "the cat sat on the mat"}])
    assert "rouge1" not in base and math.isfinite(base["eval_loss"])


def test_evaluate_reads_datasets_as_training_does(client, trained):
    # hh-rlhf dialogues: the prompt is split off as training splits it, so there are prompts to answer
    dialogues = [{"chosen": f"\n\nHuman: Where did cat {i} sit?\n\nAssistant: On the mat.",
                  "rejected": f"\n\nHuman: Where did cat {i} sit?\n\nAssistant: Go away."} for i in range(3)]
    metrics = client.models.evaluate("dl-sft", dialogues, generate_samples=2, max_new_tokens=6)
    assert metrics["eval_samples"] == 3 and metrics["generated_samples"] == 2 and "rougeL" in metrics


def test_evaluate_names_the_bad_field(client, trained):
    with pytest.raises(InvalidArgumentError, match="dataset.columns"):
        client.models.evaluate("dl-sft", [{"question": "q"}])
    with pytest.raises(InvalidArgumentError, match="generate_samples"):
        client.models.evaluate("dl-sft", [{"text": "plain text"}], generate_samples=1)
    with pytest.raises(NotFoundError, match="missing-model"):
        client.models.evaluate("missing-model", ROWS)


def test_a_new_job_resumes_from_an_earlier_jobs_checkpoint(stack, client, trained):
    job = client.train(str(stack.root / "tiny"), str(stack.root / "chat.jsonl"), max_steps=3,
                       resume_from=(trained, "checkpoint-2"), **FAST)
    events = list(job.events())
    assert job.final_state == "succeeded"
    logs = [e.message for e in events if e.kind == "log"]
    assert f"resuming from {trained}/checkpoint-2" in logs and "training 3 steps from step 2" in logs
    assert [e.progress.step for e in events if e.kind == "progress" and e.progress.loss is not None] == [3]
    assert (stack.root / "home" / "jobs" / job.id / "checkpoints" / "checkpoint-2").is_dir()


def test_resuming_from_an_unknown_checkpoint_creates_no_job(stack, client, trained):
    before = len(client.jobs.list())
    with pytest.raises(NotFoundError, match="checkpoint-7"):
        client.train(str(stack.root / "tiny"), str(stack.root / "chat.jsonl"), max_steps=3,
                     resume_from=(trained, "checkpoint-7"), **FAST)
    with pytest.raises(NotFoundError, match="job-0000000000000000"):
        client.train(str(stack.root / "tiny"), str(stack.root / "chat.jsonl"), max_steps=3,
                     resume_from="job-0000000000000000", **FAST)
    assert len(client.jobs.list()) == before


def _chunks(data: bytes, digest: str) -> list[models_pb2.DownloadModelChunk]:
    manifest = models_pb2.DownloadModelChunk(files=[models_pb2.DownloadedFile(path="w.bin", size_bytes=len(data),
                                                                              sha256=digest)])
    return [manifest, models_pb2.DownloadModelChunk(path="w.bin", offset=0, data=data)]


def test_the_writer_refuses_a_checksum_mismatch_and_leaves_nothing(tmp_path):
    writer = DownloadWriter(tmp_path / "out")
    for chunk in _chunks(b"weights", hashlib.sha256(b"other").hexdigest()):
        writer.add(chunk)
    with pytest.raises(DownloadError, match="w.bin: sha256 mismatch"):
        writer.finish()
    writer.abort()
    assert not list(tmp_path.iterdir())
    good = DownloadWriter(tmp_path / "out")
    for chunk in _chunks(b"weights", hashlib.sha256(b"weights").hexdigest()):
        good.add(chunk)
    assert (good.finish() / "w.bin").read_bytes() == b"weights" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_writer_refuses_paths_that_leave_the_download(tmp_path):
    writer = DownloadWriter(tmp_path / "out")
    with pytest.raises(DownloadError, match="not a relative path"):
        writer.add(models_pb2.DownloadModelChunk(files=[models_pb2.DownloadedFile(path="../evil", size_bytes=1)]))
    writer.abort()
    assert not list(tmp_path.iterdir())


def test_the_cli_downloads_an_entry_and_a_checkpoint(stack, trained, tmp_path):
    from forgeway.testing.processes import run_cli

    run = run_cli("models", "download", "dl-sft", str(tmp_path / "cli"), "--target", stack.target)
    assert run.returncode == 0 and f"downloaded dl-sft to {tmp_path / 'cli'}" in run.stdout, run.stderr
    assert _digests(tmp_path / "cli") == _digests(stack.root / "home" / "models" / "dl-sft")
    run = run_cli("models", "download", "", str(tmp_path / "ckpt"), "--job", trained, "--checkpoint",
                  "checkpoint-1", "--json", "--target", stack.target)
    assert run.returncode == 0 and json.loads(run.stdout)["path"] == str(tmp_path / "ckpt"), run.stderr
    missing = run_cli("models", "download", "nope", str(tmp_path / "none"), "--target", stack.target)
    assert missing.returncode != 0 and "nope" in missing.stderr and not (tmp_path / "none").exists()


def test_the_async_client_downloads_and_evaluates(stack, trained, tmp_path):
    import asyncio

    from forgeway.client import AsyncClient

    async def both():
        async with AsyncClient(stack.target, timeout=120) as sdk:
            path = await sdk.models.download("", tmp_path / "ckpt", checkpoint=(trained, "checkpoint-2"))
            metrics = await sdk.models.evaluate("dl-sft", ROWS[:2])
            with pytest.raises(NotFoundError, match="known: checkpoint-1, checkpoint-2"):
                await sdk.models.download("", tmp_path / "bad", checkpoint=(trained, "checkpoint-5"))
            return path, metrics

    path, metrics = asyncio.run(both())
    assert json.loads((path / "trainer_state.json").read_text())["global_step"] == 2
    assert metrics["eval_samples"] == 2 and math.isfinite(metrics["eval_loss"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_summarization_model_is_evaluated_as_seq2seq(stack, client):
    rows = [{"document": f"The cat number {i} sat on the mat all day long and slept.", "summary": "A cat slept."}
            for i in range(4)]
    job = client.train(str(stack.root / "t5"), rows, task="summarization", max_steps=1, batch_size=2,
                       output_name="dl-t5")
    assert job.wait().state == "succeeded"
    metrics = client.models.evaluate("dl-t5", rows, generate_samples=2, max_new_tokens=4)
    assert metrics["eval_samples"] == 4 and math.isfinite(metrics["eval_loss"]) and metrics["eval_loss"] > 0
    assert metrics["generated_samples"] == 2 and {"rouge1", "bleu"} <= set(metrics)
    with pytest.raises(InvalidArgumentError, match="dataset.columns"):
        client.models.evaluate("dl-t5", ROWS)  # prompt/completion rows are no summarization data
