"""The service registry: lazy built-ins, out-of-tree backends through the forgeway.backends entry points, no torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from forgeway.server import registry
from forgeway.services.echo.engine import EchoEngine
from forgeway.services.echo.service import EchoService

PLUGIN_MODULE = "forgeway_conformance_toy_backend"


def test_unknown_name_lists_known_names():
    with pytest.raises(registry.UnknownService) as caught:
        registry.load("no-such-backend")
    message = str(caught.value)
    assert "'no-such-backend'" in message
    assert "echo" in message and all(name in message for name in registry.BUILTIN)


def test_builtin_loads_its_class():
    assert registry.load("echo") is EchoService and EchoService.Engine is EchoEngine
    assert EchoService.Settings is EchoEngine.Settings  # `forgeway serve echo --help` lists the engine's settings


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A third-party distribution on sys.path (a module plus its dist-info), as pip would install it."""
    (tmp_path / f"{PLUGIN_MODULE}.py").write_text(textwrap.dedent('''
        """A backend that lives outside Forgeway."""
        from forgeway.services.echo.engine import EchoEngine

        class ToyEngine(EchoEngine):
            kind = "toy"
    '''))
    dist_info = tmp_path / "forgeway_toy_backend-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: forgeway-toy-backend\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[forgeway.backends]\ntoy = {PLUGIN_MODULE}:ToyEngine\necho = {PLUGIN_MODULE}:ToyEngine\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "toy"
    sys.modules.pop(PLUGIN_MODULE, None)


def test_entry_point_backend_is_discovered_and_loaded(installed_plugin):
    assert registry.available()[installed_plugin] == f"{PLUGIN_MODULE}:ToyEngine"
    engine_class = registry.load(installed_plugin)
    assert engine_class.kind == "toy" and issubclass(engine_class, EchoEngine)


def test_entry_point_cannot_replace_a_builtin(installed_plugin):
    assert registry.load("echo") is EchoService


def test_runtime_and_echo_never_import_torch():
    code = textwrap.dedent("""
        import sys
        import forgeway.services.runtime
        from forgeway.server import registry, server, settings, interceptor
        from forgeway.services.runtime import servicers
        import forgeway.cli
        registry.load("echo")
        heavy = sorted(m for m in ("torch", "transformers", "llama_cpp", "trl") if m in sys.modules)
        print(",".join(heavy))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"imported: {done.stdout.strip()}"


def test_serve_help_lists_every_service_and_what_it_needs():
    done = subprocess.run([sys.executable, "-m", "forgeway.cli", "serve", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    for name in registry.BUILTIN:
        assert f"  {name} " in done.stdout
    assert "needs: FORGEWAY_OPENAI_BASE_URL" in done.stdout and "make unsloth-env" in done.stdout
    assert "`forgeway serve SERVICE --help`" in done.stdout


def test_serve_without_a_service_says_which_are_there_and_fails():
    done = subprocess.run([sys.executable, "-m", "forgeway.cli", "serve"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "a SERVICE is required" in done.stderr and "  llamacpp " in done.stderr


def test_serve_service_help_lists_its_settings():
    done = subprocess.run([sys.executable, "-m", "forgeway.cli", "serve", "echo", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--token-delay" in done.stdout and "--model-name" in done.stdout
