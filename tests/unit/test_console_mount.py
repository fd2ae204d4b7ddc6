"""The console mounted beside the HTTP API: turned off by --no-console / FORGEWAY_CONSOLE / YAML, its routes free
of the API's JSON rules, and with API keys configured nothing but the login page served without a session."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from forgeway.gateway.console import mount_console
from forgeway.gateway.http import create_app
from forgeway.gateway.http.middleware import is_api_path
from forgeway.gateway.settings import GatewaySettings
from forgeway.server.settings import build_settings

UNREACHABLE = "127.0.0.1:9"  # nothing serves gRPC here: these checks never get past the console's own routes


def console_app(settings: GatewaySettings):
    app = create_app(UNREACHABLE, settings)
    mount_console(app, UNREACHABLE, settings)
    return app


@pytest.mark.parametrize("argv, env, yaml, expected", [
    ([], {}, None, True),
    (["--no-console"], {}, None, False),
    (["--console", "false"], {}, None, False),
    ([], {"FORGEWAY_CONSOLE": "false"}, None, False),
    ([], {}, "console: false\n", False),
])
def test_the_console_setting_from_flags_env_and_yaml(tmp_path, monkeypatch, argv, env, yaml, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if yaml is not None:
        (tmp_path / "gateway.yaml").write_text(yaml)
        argv = [*argv, "--config", str(tmp_path / "gateway.yaml")]
    assert build_settings(GatewaySettings, argv).console is expected


def test_api_paths_are_the_shims_and_the_rest_is_the_consoles():
    assert all(is_api_path(p) for p in ("/v1", "/v1/models", "/v2/rerank", "/rerank", "/healthz", "/metrics",
                                        "/openapi.json", "/docs"))
    assert not any(is_api_path(p) for p in ("/", "/config", "/gradio_api/queue/join", "/login", "/v1x"))


def test_without_keys_the_console_page_is_served_and_its_posts_are_not_forced_to_json():
    with TestClient(console_app(GatewaySettings())) as http:
        page = http.get("/")
        assert page.status_code == 200 and "gradio" in page.text.lower()
        assert http.get("/config").json()["mode"] == "blocks"
        upload = http.post("/gradio_api/upload", files={"files": ("rows.jsonl", b'{"text": "hi"}\n')})
        assert upload.status_code == 200, upload.text  # multipart: the API's JSON-only rule would answer 415
        refused = http.post("/v1/chat/completions", content=b"x", headers={"content-type": "text/plain"})
        assert refused.status_code == 415  # the API keeps its rules
        assert 'name="api_key"' not in http.get("/login", follow_redirects=False).text  # no login page without keys


def test_with_keys_only_the_login_page_is_served_without_a_session():
    key = {"name": "ops", "sha256": hashlib.sha256(b"secret-key").hexdigest()}
    with TestClient(console_app(GatewaySettings(api_keys=[key]))) as http:
        page = http.get("/", headers={"accept": "text/html"}, follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login"
        login = http.get("/login")
        assert login.status_code == 200 and 'type="password"' in login.text
        for path in ("/config", "/gradio_api/info", "/gradio_api/upload", "/theme.css"):
            assert http.get(path).status_code == 401, path
        assert http.post("/gradio_api/upload", files={"files": ("a", b"x")}).status_code == 401
        assert http.post("/login", data={"api_key": ""}).status_code == 400
        assert http.post("/login", data={"api_key": "k" * 20000}).status_code == 413
        forged = http.get("/config", cookies={"forgeway-console-session": "made-up"})
        assert forged.status_code == 401
        assert http.get("/healthz").status_code == 200  # the API is not behind the console's gate
        assert "/v1/chat/completions" in http.get("/openapi.json").json()["paths"]


def test_the_console_brings_neither_torch_nor_transformers_nor_the_sdk_into_the_gateway():
    code = ("import sys, forgeway.gateway.console, forgeway.gateway.service; "
            "print(sorted(m for m in ('torch', 'transformers', 'forgeway.client') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_session_holds_its_key_server_side_until_it_ends():
    from starlette.requests import Request

    from forgeway.gateway.console.connection import SESSION_COOKIE, Console

    console = Console(lambda: None, keys_enabled=True)
    session = console.start_session("sk-secret")
    assert "sk-secret" not in session

    def request(cookie: str) -> Request:
        return Request({"type": "http", "headers": [(b"cookie", f"{SESSION_COOKIE}={cookie}".encode())]})

    assert console.metadata(request(session)) == (("authorization", "Bearer sk-secret"),)
    assert console.metadata(request("forged")) == ()
    console.end_session(session)
    assert console.metadata(request(session)) == ()
    assert Console(lambda: None, keys_enabled=False).metadata(request(session)) == ()
