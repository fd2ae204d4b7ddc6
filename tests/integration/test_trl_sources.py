"""Each dataset source trains (local file, folder split, upload, inline with a mapping), and the trained artifact
is served by name by the hf service from the same model store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import grpc
import pytest
from trl_harness import PREFERENCES, TEXT, assert_succeeded, request, rows, tiny, trl_service

from forgeway.services.runtime.service import serving
from forgeway.v1 import datasets_pb2, generate_pb2, jobs_pb2, train_pb2

pytestmark = [pytest.mark.trl, pytest.mark.slow]

M = train_pb2


@pytest.fixture(scope="module")
async def trainer(tmp_path_factory):
    async with trl_service(tmp_path_factory.mktemp("trl-sources")) as service:
        yield service


def metadata(artifact) -> dict:
    return json.loads((Path(artifact.path) / "forgeway.json").read_text())


async def test_a_local_jsonl_file(trainer):
    path = tiny("llama").parent / "text.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in TEXT))
    meta = metadata(assert_succeeded(await trainer.train(request(dataset=M.DatasetSource(path=str(path))))))
    assert meta["dataset"]["source"] == "path"
    assert meta["dataset_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_folder_with_a_sliced_split_and_max_samples(trainer):
    folder = tiny("llama").parent / "prefs"
    folder.mkdir(exist_ok=True)
    (folder / "train.json").write_text(json.dumps(PREFERENCES))
    (folder / "test.json").write_text(json.dumps(PREFERENCES[:2]))
    source = M.DatasetSource(path=str(folder), split="train[:80%]", max_samples=4)
    evaluation = M.DatasetSource(path=str(folder), split="test")
    events = await trainer.train(request(M.TRAINING_METHOD_DPO, source, eval_dataset=evaluation))
    meta = metadata(assert_succeeded(events))
    assert meta["dataset"]["rows"] == 4 and meta["eval_dataset"]["rows"] == 2 and "eval_loss" in meta["metrics"]
    evals = [e.progress for e in events if e.WhichOneof("kind") == "progress" and "eval_loss" in e.progress.metrics]
    assert evals, "eval metrics reach the job's events"


async def test_an_uploaded_dataset(trainer):
    data = "".join(json.dumps(r) + "\n" for r in TEXT).encode()
    digest = hashlib.sha256(data).hexdigest()
    header = datasets_pb2.UploadDatasetRequest(header=datasets_pb2.DatasetHeader(
        filename="text.jsonl", size_bytes=len(data), sha256=digest))

    async def parts():
        yield header
        yield datasets_pb2.UploadDatasetRequest(chunk=data[:50])
        yield datasets_pb2.UploadDatasetRequest(chunk=data[50:])

    uploaded = (await trainer.datasets.UploadDataset(parts())).dataset
    events = await trainer.train(request(dataset=M.DatasetSource(dataset_id=uploaded.id)))
    meta = metadata(assert_succeeded(events))
    assert meta["dataset"] == {**meta["dataset"], "source": "upload", "dataset_id": uploaded.id, "sha256": digest}


async def test_inline_rows_with_a_column_mapping(trainer):
    source = rows([{"question": p["prompt"], "good": p["chosen"], "bad": p["rejected"]} for p in PREFERENCES])
    source.column_mapping.update({"question": "prompt", "good": "chosen", "bad": "rejected"})
    assert_succeeded(await trainer.train(request(M.TRAINING_METHOD_ORPO, source)))


async def test_a_request_for_unsloth_that_reaches_trl_records_a_fallback(trainer):
    events = await trainer.train(request(backend=M.TRAINING_BACKEND_UNSLOTH))
    fallback = [e.fallback for e in events if e.WhichOneof("kind") == "fallback"]
    assert [(f.requested, f.used) for f in fallback] == [("unsloth", "trl")]
    job = (await trainer.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=events[0].job_id))).job
    assert job.backend == "trl"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await trainer.train(request(backend=M.TRAINING_BACKEND_UNSLOTH, allow_fallback=False))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.hf
async def test_the_trained_adapter_is_served_by_name_by_the_hf_service(trainer):
    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.settings import HFSettings
    from forgeway.server.server import start_server
    from forgeway.v1 import backend_pb2_grpc

    assert_succeeded(await trainer.train(request(steps=3, output=M.TrainOutput(model_name="served-sft"))))
    settings = HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=trainer.home, torch_threads=1,
                          models=[{"name": "served-sft", "path": "served-sft"}])  # a model-store name
    running = await start_server(serving(HFEngine(settings)))
    await running.startup
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            reply = await backend_pb2_grpc.BackendServiceStub(channel).Generate(generate_pb2.GenerateRequest(
                model="served-sft", prompt="the cat", sampling=generate_pb2.SamplingParams(max_tokens=4)), timeout=60)
        assert reply.model == "served-sft" and reply.usage.completion_tokens == 4 and reply.choices[0].text
    finally:
        await running.drain(0)
