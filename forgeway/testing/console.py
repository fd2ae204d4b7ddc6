"""Browser tests of the console: trl and hf processes sharing one model store with the tiny model, a gateway process
serving its HTTP port (the console at `/`), and Playwright driving Debian's chromium against it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from forgeway.core.modelstore import ModelStore
from forgeway.testing.processes import ServiceProcess, free_port

__all__ = ["ConsoleStack", "browser_page", "chromium_browser", "chromium_path", "console_stack", "screenshot"]

TINY_MODEL = "tiny"  # the tiny Llama's name in the shared store (chat template, text generation)
TASK_MODELS = {"tiny-t5": "summarization", "tiny-qa": "extractive-question-answering"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"


@dataclass
class ConsoleStack:
    """What `console_stack` started: `url` is the console (http://127.0.0.1:PORT), `target` the gateway's gRPC
    address, `home` the FORGEWAY_HOME shared by trl and hf (its models/ is the store), `root` the test's folder,
    `api_keys` the plain keys the gateway accepts (empty: auth off)."""

    url: str
    target: str
    home: Path
    root: Path
    api_keys: list[str]
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def models(self) -> Path:
        return self.home / "models"

    def headers(self) -> dict[str, str]:
        """HTTP headers of an API call with the first key (none without keys)."""
        return {"Authorization": f"Bearer {self.api_keys[0]}"} if self.api_keys else {}

    def logs(self) -> str:
        """The last lines of every process's log, for a failing assertion's message."""
        return "\n".join(f"--- {name}\n{service.log_text()[-3000:]}" for name, service in self.services.items())


def _store_model(home: Path, name: str, build, task: str) -> None:
    """Build a tiny model straight into the shared store as `name`, with provenance like a trained one has."""
    folder = build(home / "models" / name)
    ModelStore.write_metadata(Path(folder), task=task, description=f"tiny {task} model built for the console tests",
                              created=datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"))


@contextmanager
def console_stack(root: str | Path, *, api_keys: list[str] | None = None, task_models: bool = False,
                  gateway_env: dict[str, str] | None = None, timeout: float = 180.0) -> Iterator[ConsoleStack]:
    """Real `forgeway serve` processes: trl and hf on one FORGEWAY_HOME whose store holds the tiny Llama ("tiny",
    plus "tiny-t5" for summarization and "tiny-qa" for extractive QA with `task_models`), and a gateway in front of
    both with its HTTP port and the console on; `api_keys` (plain keys) turn auth on. Yields once the HTTP API lists
    the tiny model; everything stops on exit."""
    from forgeway.testing import build_tiny_llama  # torch and transformers only when a stack is started

    root = Path(root)
    home, logs = root / "home", root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _store_model(home, TINY_MODEL, build_tiny_llama, "text-generation")
    if task_models:
        from forgeway.testing import build_tiny_qa, build_tiny_seq2seq

        _store_model(home, "tiny-t5", build_tiny_seq2seq, TASK_MODELS["tiny-t5"])
        _store_model(home, "tiny-qa", build_tiny_qa, TASK_MODELS["tiny-qa"])
    keys = list(api_keys or [])
    common = ("--torch-threads", "1", "--grace-seconds", "1", "--log-level", "WARNING")
    with ExitStack() as stack:
        trl = ServiceProcess("trl", *common, home=home, log_dir=logs, timeout=timeout).start()
        hf = ServiceProcess("hf", *common, home=home, log_dir=logs, timeout=timeout).start()
        stack.callback(hf.stop)
        stack.callback(trl.stop)
        trl.wait_serving()
        hf.wait_serving()
        http_port = free_port("127.0.0.1")
        env = {"FORGEWAY_BACKENDS": json.dumps({"trl": trl.address, "hf": hf.address}), **(gateway_env or {})}
        if keys:
            hashed = [{"name": f"key-{i}", "sha256": hashlib.sha256(key.encode()).hexdigest()}
                      for i, key in enumerate(keys)]
            env["FORGEWAY_API_KEYS"] = json.dumps(hashed)
        gateway = stack.enter_context(ServiceProcess("gateway", "--http-port", str(http_port), "--grace-seconds", "1",
                                                     home=home, env=env, log_dir=logs, timeout=60))
        console = ConsoleStack(url=f"http://127.0.0.1:{http_port}", target=gateway.address, home=home, root=root,
                               api_keys=keys, services={"trl": trl, "hf": hf, "gateway": gateway})
        _wait_listed(console, TINY_MODEL, timeout=60)
        yield console


def _wait_listed(console: ConsoleStack, model: str, timeout: float) -> None:
    """Poll the gateway's /v1/models until it lists `model` (the HTTP API is up and the hf backend is routed)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{console.url}/v1/models", headers=console.headers(), timeout=5)
            if answer.status_code == 200 and model in [m["id"] for m in answer.json()["data"]]:
                return
            last = f"{answer.status_code}: {answer.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise TimeoutError(f"{console.url}/v1/models did not list {model!r} after {timeout:.0f}s (last: {last})\n"
                       f"{console.logs()}")


def chromium_path() -> str:
    """Debian's chromium (Playwright's own browser download cannot work here); skips the test without it, unless
    the CI environment variable is set: then a missing browser fails."""
    import pytest

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = "no chromium on PATH: install Debian's package (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@contextmanager
def chromium_browser() -> Iterator[Any]:
    """A headless Playwright Browser on Debian's chromium (--no-sandbox), closed on exit: one per test module."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"], headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def browser_page(url: str, browser: Any | None = None, *, viewport: tuple[int, int] = (1400, 1000)) -> Iterator[Any]:
    """A Playwright Page opened at `url` (in a fresh context of `browser`, or in a browser of its own), closed on
    exit. Every Playwright wait is bounded by its default timeout, so a page that never shows fails the test."""
    with ExitStack() as stack:
        if browser is None:
            browser = stack.enter_context(chromium_browser())
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        stack.callback(context.close)
        page = context.new_page()
        page.goto(url)
        yield page


def screenshot(page: Any, name: str) -> Path:
    """Write a full-page screenshot to test-artifacts/console/NAME.png (git-ignored); returns its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
