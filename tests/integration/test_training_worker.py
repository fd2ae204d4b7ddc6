"""`forgeway train-worker` as the launchers run it, a process of its own: it trains one job from the folder the trainer
prepared and reports through that folder only; the job database is the trainer service's, and the worker never opens
it (on Kubernetes its pod may not even see it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from trl_harness import request, settings

from forgeway.services.training import jobfolder

pytestmark = [pytest.mark.trl, pytest.mark.slow]


def test_a_worker_trains_from_the_job_folder_and_never_opens_the_job_database(tmp_path):
    home = tmp_path / "home"
    trainer_settings = settings(home)
    job_dir = home / "jobs" / "job-worker"
    train = request(steps=1)
    train.output.model_name = "from-worker"
    jobfolder.prepare(job_dir, "trl", "job-worker", train, trainer_settings.model_dump(mode="json"), None)

    done = subprocess.run(
        [sys.executable, "-m", "forgeway.cli", "train-worker", "--service", "trl", "--job-dir", str(job_dir)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})

    events = [json.loads(line) for line in (job_dir / jobfolder.EVENTS).read_text().splitlines()]
    assert done.returncode == 0, (done.stderr[-3000:], events[-1:])
    kind, result = next(iter(events[-1].items()))
    assert kind == "result" and result["model_name"] == "from-worker" and Path(result["path"]).is_dir()
    assert any("progress" in event for event in events)
    assert not list(home.glob("jobs.db*")), sorted(p.name for p in home.iterdir())
