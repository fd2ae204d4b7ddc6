"""For tests and benchmarks of the shim: a real `forgeway serve NAME` process on a free port, waited until SERVING."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from forgeway.client import testing as client_testing
from forgeway.up import free_port as free_port_on


def free_port() -> int:
    """A port free on 127.0.0.1 now."""
    return free_port_on("127.0.0.1")


@dataclass
class ServiceProcess:
    """A running `forgeway serve` process."""

    process: subprocess.Popen
    address: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve_process(name: str, *flags: str, timeout: float = 60.0, home: Path | None = None,
                  env: dict[str, str] | None = None) -> Iterator[ServiceProcess]:
    """`python -m forgeway.cli serve NAME --port P FLAGS...`, SERVING on yield, stopped after.

    home defaults to a fresh temporary folder; env adds to this process's environment."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"forgeway-{name}-") as tmp:
        log = Path(tmp) / "service.log"
        argv = [sys.executable, "-m", "forgeway.cli", "serve", name, "--port", str(port), "--metrics-port=-1",
                "--home", str(home or Path(tmp) / "home"), *flags]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        with log.open("w") as sink:
            process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env)
        service = ServiceProcess(process, f"127.0.0.1:{port}", log)
        try:
            client_testing.wait_serving(service.address, timeout, process, log)
            yield service
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
