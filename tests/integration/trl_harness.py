"""Shared by the TRL service tests (no tests here): tiny models built once, an in-process trl server, requests."""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from forgeway.server.server import start_server
from forgeway.v1 import backend_pb2_grpc, common_pb2, datasets_pb2_grpc, jobs_pb2, jobs_pb2_grpc, train_pb2

pytestmark = pytest.mark.trl

_MODELS: dict[str, Path] = {}
_ROOT = Path(tempfile.mkdtemp(prefix="forgeway-trl-models-"))
atexit.register(shutil.rmtree, _ROOT, True)

TEXT = [{"text": f"the cat number {i} sat on the mat and looked at the dog."} for i in range(6)]
PREFERENCES = [{"prompt": f"Question {i}: where did the cat sit?", "chosen": " On the mat.", "rejected": " Nowhere."}
               for i in range(6)]
UNPAIRED = [{"prompt": f"Say something {i}.", "completion": " The cat sat.", "label": i % 2 == 0} for i in range(6)]
PROMPTS = [{"prompt": f"Tell me about cat {i}.", "reference": "a cat"} for i in range(6)]
SUMMARIES = [{"document": f"The cat {i} sat on the mat all day while the dog slept by the door.",
              "summary": "A cat sat."} for i in range(6)]
QUESTIONS = [{"context": f"The cat {i} sat on the mat.", "question": "Where did the cat sit?",
              "answers": {"text": ["the mat"], "answer_start": [len(f"The cat {i} sat on ")]}} for i in range(6)]


def tiny(kind: str) -> Path:
    """A tiny model folder, built once per test process: llama, seq2seq, qa, reward."""
    if kind not in _MODELS:
        from forgeway import testing

        out = _ROOT / kind
        if kind == "llama":
            testing.build_tiny_llama(out, seed=0)
        elif kind == "seq2seq":
            testing.build_tiny_seq2seq(out)
        elif kind == "qa":
            testing.build_tiny_qa(out)
        elif kind == "reward":  # a sequence classifier with one label on the tiny llama's config and tokenizer
            import torch
            from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

            config = AutoConfig.from_pretrained(tiny("llama"), num_labels=1)
            torch.manual_seed(0)
            AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
            AutoTokenizer.from_pretrained(tiny("llama")).save_pretrained(out)
        _MODELS[kind] = out
    return _MODELS[kind]


def rows(items: list[dict]) -> train_pb2.DatasetSource:
    source = train_pb2.DatasetSource()
    for item in items:
        struct = struct_pb2.Struct()
        struct.update(item)
        source.inline.rows.append(struct)
    return source


def request(method: int = train_pb2.TRAINING_METHOD_SFT, dataset: train_pb2.DatasetSource | None = None,
            steps: int = 2, lora: bool = True, **fields) -> train_pb2.TrainRequest:
    """A tiny, fast TrainRequest on the tiny llama: a few steps, batch 2, short sequences."""
    fields.setdefault("base_model", str(tiny("llama")))
    req = train_pb2.TrainRequest(
        method=method, dataset=dataset or rows(TEXT),
        hyperparameters=train_pb2.Hyperparameters(max_steps=steps, batch_size=2, max_seq_length=32,
                                                  learning_rate=1e-3),
        **fields,
    )
    if method in (train_pb2.TRAINING_METHOD_GRPO, train_pb2.TRAINING_METHOD_RLOO):  # they bound prompt/completion
        req.hyperparameters.ClearField("max_seq_length")
    if lora and not req.HasField("lora"):
        req.lora.CopyFrom(train_pb2.LoraParams(r=4, alpha=8))
    return req


@dataclass
class Trainer:
    """A running in-process trl service and stubs on a channel to it."""

    address: str
    home: Path
    backend: backend_pb2_grpc.BackendServiceStub
    jobs: jobs_pb2_grpc.JobServiceStub
    datasets: datasets_pb2_grpc.DatasetServiceStub
    server: object

    async def train(self, req: train_pb2.TrainRequest) -> list[jobs_pb2.JobEvent]:
        """Every event of the job Train starts, until its final state."""
        return [r.event async for r in self.backend.Train(req, timeout=240)]

    async def wait(self, job_id: str, after: int = 0) -> list[jobs_pb2.JobEvent]:
        return [r.event async for r in self.jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=after),
                                                          timeout=240)]


def settings(home: Path, **overrides):
    from forgeway.services.trl.settings import TRLSettings

    values = dict(home=home, port=0, metrics_port=-1, host="127.0.0.1", grace_seconds=30, log_level="WARNING",
                  allowed_roots=[_ROOT], min_dataset_rows=2)
    values.update(overrides)
    return TRLSettings(**values)


@asynccontextmanager
async def trl_service(home: Path, **overrides) -> AsyncIterator[Trainer]:
    """Start the TRL trainer service on a free loopback port, wait until SERVING, stop (draining) at the end."""
    from forgeway.services.trl.service import TRLService

    running = await start_server(TRLService(settings(home, **overrides)))
    await running.startup
    assert running.service.ready, running.service.failure
    async with grpc.aio.insecure_channel(running.address) as channel:
        yield Trainer(running.address, home, backend_pb2_grpc.BackendServiceStub(channel),
                      jobs_pb2_grpc.JobServiceStub(channel), datasets_pb2_grpc.DatasetServiceStub(channel), running)
    await running.drain(grace=1)


def final_state(events: list[jobs_pb2.JobEvent]) -> int:
    return [e.state.state for e in events if e.WhichOneof("kind") == "state"][-1]


def losses(events: list[jobs_pb2.JobEvent]) -> list[float]:
    return [e.progress.loss for e in events if e.WhichOneof("kind") == "progress" and e.progress.HasField("loss")]


def assert_succeeded(events: list[jobs_pb2.JobEvent]) -> jobs_pb2.Artifact:
    """SUCCEEDED, sequence numbers 1..n with no gap, a finite loss reported, an artifact."""
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    failure = [e.state.message for e in events if e.WhichOneof("kind") == "state"]
    assert final_state(events) == jobs_pb2.JOB_STATE_SUCCEEDED, failure
    assert losses(events) and all(math.isfinite(v) for v in losses(events))
    artifacts = [e.artifact for e in events if e.WhichOneof("kind") == "artifact"]
    assert artifacts and Path(artifacts[-1].path).is_dir()
    return artifacts[-1]


QUANT_NF4 = train_pb2.QuantizationParams(quantization=common_pb2.QUANTIZATION_4BIT_NF4, double_quant=True)
