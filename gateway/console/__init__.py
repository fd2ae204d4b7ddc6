"""The web console: Gradio mounted at "/" in the gateway's HTTP app, calling the gateway's own gRPC API."""

from __future__ import annotations

import gradio as gr
from fastapi import FastAPI

from .app import build_console
from .connection import Console
from .login import install_login

__all__ = ["Console", "mount_console"]


def mount_console(app: FastAPI, target: str, settings) -> None:
    """Mounts the console at "/" of `app` (after its API routes, so /v1 stays theirs).

    Args:
        app: the gateway's HTTP app (gateway.http.create_app).
        target: the gateway's own gRPC address, which `app` (create_app(target, ...)) already calls through its
            Upstream; the pages share that channel and send the session's API key with every call.
        settings: the gateway's settings: `api_keys` turns the login page on; `http` bounds uploads.
    """
    http = getattr(settings, "http", None)
    console = Console(lambda: app.state.upstream, keys_enabled=bool(getattr(settings, "api_keys", None)))
    app.state.console = console
    auth_dependency = install_login(app, console) if console.keys_enabled else None
    gr.mount_gradio_app(
        app, build_console(console), path="/", auth_dependency=auth_dependency, footer_links=[],
        max_file_size=getattr(http, "max_upload_bytes", None), show_error=True, ssr_mode=False,
        enable_monitoring=False, mcp_server=False, pwa=False, run_history=False,
    )
