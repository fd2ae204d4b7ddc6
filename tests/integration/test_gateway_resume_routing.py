"""A job resuming from another job's checkpoint goes to the trainer holding that checkpoint, when the gateway has
several trainers (real gateway, two real TRL trainers with their own homes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forgeway.client import Client, NotFoundError
from forgeway.testing.stacks import InProcessStack

pytestmark = [pytest.mark.trl, pytest.mark.slow]
ROWS = [{"prompt": f"Where did cat {i} sit?", "completion": " On the mat."} for i in range(6)]
FAST = {"batch_size": 2, "max_seq_length": 32, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.services.trl.service import TRLService
    from forgeway.services.trl.settings import TRLSettings
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("resume-routing")
    build_tiny_llama(root / "tiny", seed=0)
    (root / "chat.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))

    def trainer(home: str):
        return lambda: TRLService(TRLSettings(home=Path(root) / home, port=0, metrics_port=-1, host="127.0.0.1",
                                              grace_seconds=5, log_level="WARNING", allowed_roots=[Path(root)],
                                              min_dataset_rows=2))

    with InProcessStack(trainer("a"), trainer("b"), root=root) as running:
        yield running


def test_resumed_jobs_land_on_the_trainer_with_the_checkpoint(stack):
    with Client(stack.target, timeout=120) as client:
        first = client.train(str(stack.root / "tiny"), str(stack.root / "chat.jsonl"), max_steps=1,
                             keep_checkpoint=True, **FAST)
        assert first.wait().state == "succeeded"
        owner = next(a for a in stack.addresses if _knows(a, first.id))
        for _ in range(6):  # by load alone, each would land on either trainer
            resumed = client.train(str(stack.root / "tiny"), str(stack.root / "chat.jsonl"), max_steps=2,
                                   resume_from=first.id, **FAST)
            assert resumed.wait().state == "succeeded"
            assert _knows(owner, resumed.id)


def _knows(address: str, job_id: str) -> bool:
    with Client(address) as trainer:
        try:
            trainer.jobs.get(job_id)
            return True
        except NotFoundError:
            return False
