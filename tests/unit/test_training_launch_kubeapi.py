"""KubeAPI, the Kubernetes launchers' REST client, against a local HTTPS server laid out as a pod's in-cluster config
(service-account token, CA and namespace files; KUBERNETES_SERVICE_HOST/PORT). Not a Kubernetes API server: the
wire details it checks are TLS against the CA, the bearer token (re-read per call), JSON bodies, 404 and 409."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from forgeway.core.errors import Unavailable
from forgeway.services.training.kubejobs import KubeAPI

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for certificates")


def certificates(folder: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=kubernetes-test-ca")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kubernetes")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.crt", "-days", "1", "-extfile", "server.ext")


class Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str, dict | None]] = []

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_call(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append((self.command, self.path, self.headers["Authorization"], body))
        if self.headers["Authorization"] != f"Bearer {(self.server.account / 'token').read_text()}":
            return self.answer(401, {"kind": "Status", "message": "Unauthorized"})
        if self.path.endswith("/pods/trl-0"):
            return self.answer(200, {"metadata": {"name": "trl-0"}})
        if self.command == "POST" and self.path.endswith("/jobs"):
            return self.answer(409, {"kind": "Status", "message": 'jobs.batch "x" already exists'})
        if self.path.endswith("/pytorchjobs"):
            return self.answer(403, {"kind": "Status", "message": 'pytorchjobs.kubeflow.org is forbidden'})
        return self.answer(404, {"kind": "Status", "message": "not found"})

    do_GET = do_POST = do_DELETE = handle_call

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    certificates(tmp_path)
    account = tmp_path / "serviceaccount"
    account.mkdir()
    shutil.copy(tmp_path / "ca.crt", account / "ca.crt")
    (account / "token").write_text("token-one")
    (account / "namespace").write_text("forgeway\n")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.account = account
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.server_address[1]))
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    Handler.seen = []
    yield account
    server.shutdown()
    server.server_close()


async def test_calls_carry_the_current_token_over_tls_checked_against_the_cluster_ca(cluster):
    api = KubeAPI(cluster)
    assert api.namespace == "forgeway"
    assert await api.call("GET", "/api/v1/namespaces/forgeway/pods/trl-0") == {"metadata": {"name": "trl-0"}}
    assert await api.call("GET", "/apis/batch/v1/namespaces/forgeway/jobs/absent") is None
    (cluster / "token").write_text("token-two")  # projected tokens rotate: each call reads the file
    assert await api.call("POST", "/apis/batch/v1/namespaces/forgeway/jobs", {"kind": "Job"}) is None  # exists
    with pytest.raises(Unavailable, match="403 pytorchjobs.kubeflow.org is forbidden"):
        await api.call("POST", "/apis/kubeflow.org/v1/namespaces/forgeway/pytorchjobs", {"kind": "PyTorchJob"})
    assert [(method, token) for method, _, token, _ in Handler.seen] == [
        ("GET", "Bearer token-one"), ("GET", "Bearer token-one"), ("POST", "Bearer token-two"),
        ("POST", "Bearer token-two")]
    assert Handler.seen[2][3] == {"kind": "Job"}


def test_outside_a_pod_the_kubernetes_launchers_say_why_they_cannot_run(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(Unavailable, match="need to run in a pod"):
        KubeAPI(tmp_path)


async def test_a_server_with_another_ca_is_refused(cluster, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    certificates(other)
    shutil.copy(other / "ca.crt", cluster / "ca.crt")
    with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
        await KubeAPI(cluster).call("GET", "/api/v1/namespaces/forgeway/pods/trl-0")
