"""`forgeway models export|delete` as subprocesses against the real TRL trainer (which edits the store) behind a
real gateway."""

from __future__ import annotations

import json

import pytest

from forgeway.core.modelstore import ModelStore
from forgeway.testing import one_line_error, run_cli, trainer_stack

pytestmark = [pytest.mark.slow, pytest.mark.trl]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_llama

    root = tmp_path_factory.mktemp("cli-store")
    ModelStore.write_metadata(build_tiny_llama(root / "home" / "models" / "tiny", seed=0), task="text-generation")
    with trainer_stack(root) as running:
        yield running


def cli(stack, *args: str, input: str | None = None):
    return run_cli(*args, "--target", stack.target, input=input)


def test_export_then_delete_after_typing_the_name(stack):
    models = stack.root / "home" / "models"
    exported = cli(stack, "models", "export", "tiny", "--format", "gguf")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("exported tiny to tiny-gguf (") and str(models / "tiny-gguf") in exported.stdout
    assert (models / "tiny-gguf" / "model.gguf").stat().st_size > 0

    kept = cli(stack, "models", "delete", "tiny-gguf", input="tiny\n")
    assert kept.returncode == 1 and "not confirmed" in one_line_error(kept)
    assert (models / "tiny-gguf").is_dir()
    deleted = cli(stack, "models", "delete", "tiny-gguf", input="tiny-gguf\n")
    assert deleted.returncode == 0 and deleted.stdout.endswith("deleted tiny-gguf\n"), deleted.stderr
    assert not (models / "tiny-gguf").exists()

    again = cli(stack, "models", "delete", "tiny-gguf", "--yes")
    assert again.returncode == 1 and "not found" in one_line_error(again)


def test_errors_are_one_line_and_name_the_field(stack):
    outside = cli(stack, "models", "delete", "../tiny", "--yes")
    assert outside.returncode == 1 and "name" in one_line_error(outside)
    assert (stack.root / "home" / "models" / "tiny").is_dir()
    taken = cli(stack, "models", "export", "tiny", "--output-name", "tiny", "--json")
    assert taken.returncode == 1 and "output_name" in one_line_error(taken)
    q8 = cli(stack, "models", "export", "tiny", "--output-name", "tiny-q8", "--outtype", "q8_0", "--json")
    assert q8.returncode == 0, q8.stderr
    answer = json.loads(q8.stdout)
    assert answer["model"]["name"] == "tiny-q8" and answer["model"]["quantization"] == "gguf"
    assert answer["size_bytes"] == (stack.root / "home" / "models" / "tiny-q8" / "model.gguf").stat().st_size + (
        stack.root / "home" / "models" / "tiny-q8" / "forgeway.json").stat().st_size
