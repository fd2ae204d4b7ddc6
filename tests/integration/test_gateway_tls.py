"""mTLS from the gateway to a backend: certificates from files in the config, the backend's name checked."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from forgeway.services.runtime.service import serving
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.server.server import start_server
from forgeway.testing import gateway_settings, start_gateway, stop_now
from forgeway.v1 import backend_pb2_grpc, generate_pb2

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command to make certificates")


def make_certificates(folder: Path) -> None:
    """A CA, and a server (backend.test) and a client certificate it signed."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=forgeway-test-ca")
    for name, subject in (("server", "backend.test"), ("client", "gateway")):
        (folder / f"{name}.ext").write_text(f"subjectAltName=DNS:{subject}\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={subject}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")


async def test_gateway_reaches_an_mtls_backend_only_with_its_client_certificate(tmp_path):
    make_certificates(tmp_path)
    engine = EchoEngine(EchoSettings(
        port=0, metrics_port=-1, model_name="secure", tls_cert_file=tmp_path / "server.pem",
        tls_key_file=tmp_path / "server.key", tls_client_ca_file=tmp_path / "ca.pem"))
    running = await start_server(serving(engine))  # the runtime serves mTLS from the settings' files
    await running.startup
    port = running.port
    tls = {"ca_file": str(tmp_path / "ca.pem"), "server_name": "backend.test"}
    mutual = {**tls, "cert_file": str(tmp_path / "client.pem"), "key_file": str(tmp_path / "client.key")}
    gateway = await start_gateway(gateway_settings(
        [{"name": "mtls", "address": f"127.0.0.1:{port}", "tls": mutual},
         {"name": "no-client-cert", "address": f"127.0.0.1:{port}", "tls": tls}]), endpoints=1)
    try:
        endpoints = {e.key: e for e in gateway.service.state.pool}
        assert endpoints["mtls"].healthy and not endpoints["no-client-cert"].healthy
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel:
            reply = await backend_pb2_grpc.BackendServiceStub(channel).Generate(
                generate_pb2.GenerateRequest(model="secure", prompt="over tls"), timeout=10)
        assert reply.choices[0].text == "over tls"
    finally:
        await stop_now(gateway)
        await running.drain(0)
