"""The SDK over TLS and mTLS: a real grpc.aio server with the echo engine's servicers and certificates made by openssl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from forgeway.client import AsyncClient, Tls, UnavailableError
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.services.runtime.service import serving

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make certificates")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by the CA."""
    folder = tmp_path_factory.mktemp("tls")
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=forgeway-test-ca",
            cwd=folder)
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ext in (("server", ("-extfile", "server.ext")), ("client", ())):
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "1", *ext, cwd=folder)
    return folder


async def serve_tls(folder: Path, require_client_cert: bool) -> tuple[grpc.aio.Server, int]:
    engine = EchoEngine(EchoSettings(host="127.0.0.1", port=0, metrics_port=-1))
    await engine.start()
    engine.ready = True  # what the runtime's server does once start() returned
    server = grpc.aio.server()
    for add, servicer, _ in serving(engine).servicers():
        add(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [((folder / "server.key").read_bytes(), (folder / "server.pem").read_bytes())],
        root_certificates=(folder / "ca.pem").read_bytes(), require_client_auth=require_client_cert)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


async def test_tls_with_a_private_ca(certificates):
    server, port = await serve_tls(certificates, require_client_cert=False)
    try:
        async with AsyncClient(f"localhost:{port}", tls=Tls(ca_file=str(certificates / "ca.pem"))) as client:
            assert (await client.generate("echo", "over tls")).text == "over tls"
        async with AsyncClient(f"127.0.0.1:{port}", retry=0) as plaintext:
            with pytest.raises(UnavailableError):
                await plaintext.generate("echo", "x")
    finally:
        await server.stop(0)


async def test_mutual_tls_needs_the_client_certificate(certificates):
    server, port = await serve_tls(certificates, require_client_cert=True)
    ca = str(certificates / "ca.pem")
    try:
        mutual = Tls(ca_file=ca, cert_file=str(certificates / "client.pem"), key_file=str(certificates / "client.key"))
        async with AsyncClient(f"localhost:{port}", tls=mutual) as client:
            assert (await client.generate("echo", "mutual")).text == "mutual"
        async with AsyncClient(f"localhost:{port}", tls=Tls(ca_file=ca), retry=0) as anonymous:
            with pytest.raises(UnavailableError):
                await anonymous.generate("echo", "x")
    finally:
        await server.stop(0)
