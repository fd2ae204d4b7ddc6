"""The layering of DESIGN.md holds: import-linter's contracts in pyproject.toml, over the package as installed."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def package_roots() -> dict[str, str]:
    """setup.py's ROOTS: import name -> folder (read, not run: setup.py calls setup())."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ROOTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no ROOTS mapping")


def stage(into: Path) -> Path:
    """The `forgeway` package laid out as an install lays it out (grimp reads files, not setuptools' mapping)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "data", "node_modules")
    for name, folder in sorted(package_roots().items(), key=lambda item: item[0].count(".")):
        shutil.copytree(ROOT / folder, into / name.replace(".", "/"), ignore=ignore, dirs_exist_ok=True)
    return into


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), str(ROOT / "pyproject.toml")], cwd=tree, env=env,
                          capture_output=True, text=True)


def test_the_import_contracts_are_kept(tmp_path):
    result = lint(stage(tmp_path))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_a_broken_layer_is_caught(tmp_path):
    """The check can fail: core importing the gateway breaks the first contract."""
    tree = stage(tmp_path)
    errors = tree / "forgeway" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom forgeway.gateway import router  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0
    assert "forgeway.core.errors -> forgeway.gateway.router" in result.stdout


@pytest.mark.parametrize("name", ["forgeway.gateway", "forgeway.services", "forgeway.client"])
def test_every_mapped_package_is_staged(tmp_path, name):
    tree = stage(tmp_path)
    assert (tree / name.replace(".", "/") / "__init__.py").is_file()
