"""The Node.js client (clients/node, @grpc/grpc-js) against a real gateway: in front of an echo backend
(test/client.test.js), and in front of hf serving the tiny Llama for tool calls (test/tools.test.js).

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

from forgeway.testing import ECHO_RETRIEVAL, ServiceProcess

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


def node_test(node_client: Path, test_file: str, backends: dict[str, str], **env: str) -> str:
    """`node --test test_file` against a gateway in front of `backends`; its report, checked to have passed."""
    with ServiceProcess("gateway", "--http-port", "-1", env={"FORGEWAY_BACKENDS": json.dumps(backends)}) as gateway:
        result = subprocess.run(["node", "--test", test_file], cwd=node_client, capture_output=True, text=True,
                                timeout=300, env={**os.environ, "FORGEWAY_TARGET": gateway.address, **env})
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-4000:]
    return report


def test_node_client_against_a_gateway(node_client):
    with ServiceProcess("echo", "--model-name", "echo", *ECHO_RETRIEVAL) as echo:
        report = node_test(node_client, "test/client.test.js", {"echo": echo.address}, FORGEWAY_TEST_MODEL="echo")
    assert "# pass 7" in report and "# fail 0" in report and "# skipped 0" in report, report[-4000:]


@pytest.mark.hf
def test_node_client_makes_tool_calls_through_a_gateway(node_client, tmp_path):
    from forgeway.testing import build_tiny_llama

    tiny = build_tiny_llama(tmp_path / "tiny")
    with ServiceProcess("hf", "--model", str(tiny), "--model-name", "tiny", "--torch-threads", "1",
                        "--grace-seconds", "1", timeout=180) as hf:
        report = node_test(node_client, "test/tools.test.js", {"hf": hf.address}, FORGEWAY_TOOLS_MODEL="tiny")
    assert "# pass 3" in report and "# fail 0" in report and "# skipped 0" in report, report[-4000:]
