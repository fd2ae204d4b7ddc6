"""The Unsloth availability probe: each way an install can fail is told apart, in a child process that a broken
unsloth may crash or hang without taking the service down. The broken installs are real packages on PYTHONPATH."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from forgeway.services.unsloth import environment
from forgeway.services.unsloth.availability import IMPORT_FAILURE, NOT_INSTALLED, classify, probe

pytestmark = pytest.mark.skipif(importlib.util.find_spec("unsloth") is not None,
                                reason="unsloth is installed in this interpreter: these tests probe broken installs")


def broken(tmp_path: Path, package: str, body: str) -> dict[str, str]:
    """A package named `package` whose import runs `body`, first on the probe's path."""
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text(body)
    return {"PYTHONPATH": str(tmp_path)}


def test_not_installed_names_the_environment_and_how_to_build_it():
    verdict = probe()
    assert not verdict.available and verdict.category == NOT_INSTALLED
    assert str(Path(sys.executable).parent.parent) in verdict.reason and "make unsloth-env" in verdict.reason


@pytest.mark.parametrize(("body", "kind", "named"), [
    ("import xformers_missing_here\n", "missing dependency", "xformers_missing_here"),
    ("raise ImportError('Unsloth: transformers 5.24.0 is too new; requires transformers<=5.17.0')\n",
     "incompatible versions", "transformers<=5.17.0"),
    ("raise RuntimeError('Found no NVIDIA driver on your system')\n", "CUDA/driver error", "NVIDIA driver"),
    ("raise NotImplementedError('Unsloth does not run on this operating system')\n", "unsupported platform",
     "operating system"),
])
def test_an_import_failure_is_reported_with_its_category(tmp_path, body, kind, named):
    verdict = probe(env=broken(tmp_path, "unsloth", body))
    assert not verdict.available and verdict.category == IMPORT_FAILURE and verdict.kind == kind
    assert verdict.reason.startswith(f"unsloth import failed ({kind})") and named in verdict.reason


def test_a_broken_torch_is_named_as_torch(tmp_path):
    env = broken(tmp_path, "torch", "raise OSError('libtorch_cuda.so: cannot open shared object file')\n")
    (tmp_path / "unsloth").mkdir()
    (tmp_path / "unsloth" / "__init__.py").write_text("")
    verdict = probe(env=env)
    assert verdict.category == IMPORT_FAILURE and verdict.reason.startswith("torch import failed (CUDA/driver error)")


def test_an_import_that_crashes_the_interpreter_is_reported_not_fatal(tmp_path):
    verdict = probe(env=broken(tmp_path, "unsloth", "import os\nos.abort()\n"))
    assert not verdict.available and verdict.kind == "crash" and "SIGABRT" in verdict.reason


def test_an_import_that_hangs_is_cut_at_the_timeout(tmp_path):
    verdict = probe(timeout=2, env=broken(tmp_path, "unsloth", "import time\ntime.sleep(600)\n"))
    assert not verdict.available and verdict.category == IMPORT_FAILURE and verdict.kind == "timeout"
    assert verdict.reason == "unsloth import failed (timeout): importing it took over 2 s"


@pytest.mark.parametrize(("error_type", "message", "kind"), [
    ("ModuleNotFoundError", "No module named 'triton'", "missing dependency"),
    ("ImportError", "cannot import name 'is_torch_xla_available' from 'transformers'", "incompatible versions"),
    ("ImportError", "libfoo.so: undefined symbol", "broken install"),
    ("RuntimeError", "CUDA error: no kernel image is available", "CUDA/driver error"),
    ("ValueError", "something else", "error while importing (ValueError)"),
])
def test_classify(error_type, message, kind):
    assert classify(error_type, message) == kind


def test_up_runs_unsloth_from_its_own_environment_and_the_rest_from_this_one(tmp_path, monkeypatch):
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    monkeypatch.setenv(environment.PYTHON_ENV, str(python))
    assert environment.command(["unsloth", "--port", "1"]) == [str(python), "-m", "forgeway.cli", "serve", "unsloth",
                                                            "--port", "1"]
    assert environment.command(["trl", "--port", "2"])[0] == sys.executable
    monkeypatch.setenv(environment.PYTHON_ENV, str(tmp_path / "absent" / "python"))
    assert environment.command(["unsloth"])[0] == sys.executable
