"""The Node.js client (clients/node, @grpc/grpc-js) against a real gateway in front of an echo backend: `npm test`.

Its dependencies come from the npm registry, installed here into clients/node/node_modules (git-ignored) by
`npm ci` from the committed package-lock.json when they are missing. Skipped only where node or npm is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from forgeway.testing import ServiceProcess

NODE_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node"
pytestmark = pytest.mark.node


@pytest.fixture(scope="module")
def node_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the Node.js client's test needs them (https://nodejs.org)")
    if not (NODE_CLIENT / "node_modules" / "@grpc" / "grpc-js").is_dir():
        install = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_CLIENT, capture_output=True,
                                 text=True, timeout=600)
        assert install.returncode == 0, f"npm ci failed:\n{install.stdout[-2000:]}\n{install.stderr[-2000:]}"
    return NODE_CLIENT


def test_node_client_against_a_gateway(node_client):
    with ServiceProcess("echo", "--model-name", "echo") as echo:
        env = {"FORGEWAY_BACKENDS": json.dumps({"echo": echo.address})}
        with ServiceProcess("gateway", "--http-port", "-1", env=env) as gateway:
            result = subprocess.run(["npm", "test"], cwd=node_client, capture_output=True, text=True, timeout=300,
                                    env={**os.environ, "FORGEWAY_TARGET": gateway.address,
                                         "FORGEWAY_TEST_MODEL": "echo"})
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-4000:]
    assert "# pass 5" in report and "# fail 0" in report and "# skipped 0" in report, report[-4000:]
