"""The login page and the gate in front of the console when API keys are configured.

The browser sends its API key once, to POST /login; the console checks it against the gateway (a ListModels call
with it: anything but UNAUTHENTICATED means the gateway accepted it), keeps it server-side under a random session
id, and gives the browser only that id, in an HttpOnly cookie. Without a live session every console path answers
401 (HTML pages are redirected to /login); the API paths keep their own authentication.
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

import grpc
from fastapi import FastAPI
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from forgeway.v1 import models_pb2

from ..http.middleware import is_api_path
from .connection import SESSION_COOKIE, SESSION_SECONDS, Console

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
MAX_LOGIN_BYTES = 16 * 1024
SESSION_USER = "api-key"  # what Gradio sees as the user of a live session; the key itself never leaves Console

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Forgeway console: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;background:#f6f7f9;display:flex;justify-content:center;padding-top:12vh}}
form{{background:#fff;padding:2rem 2.5rem;border-radius:10px;box-shadow:0 2px 12px #0002;width:22rem}}
h1{{font-size:1.3rem;margin:0 0 1rem}} label{{display:block;margin-bottom:.4rem}}
input{{width:100%;box-sizing:border-box;padding:.55rem;font-size:1rem;margin-bottom:1rem}}
button{{padding:.55rem 1.2rem;font-size:1rem;background:#ea580c;color:#fff;border:0;border-radius:6px;cursor:pointer}}
.error{{color:#b91c1c;margin-bottom:1rem}}
</style></head>
<body><form method="post" action="{action}" id="login">
<h1>Forgeway console</h1>
{error}<label for="api_key">API key</label>
<input type="password" id="api_key" name="api_key" autocomplete="current-password" required autofocus>
<button type="submit" id="login-submit">Log in</button>
</form></body></html>
"""


def login_page(error: str = "", status_code: int = 200) -> HTMLResponse:
    shown = f'<p class="error" id="login-error">{html.escape(error)}</p>\n' if error else ""
    return HTMLResponse(_PAGE.format(action=LOGIN_PATH, error=shown), status_code=status_code,
                        headers={"cache-control": "no-store"})


async def check_key(console: Console, api_key: str) -> str:
    """"" when the gateway accepts `api_key`; otherwise why not."""
    try:
        await console.models.ListModels(models_pb2.ListModelsRequest(), metadata=console.key_metadata(api_key),
                                        timeout=10)
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            return "That API key was not accepted."
    return ""


def install_login(app: FastAPI, console: Console):
    """Adds /login, /logout and the gate to `app`; returns the auth_dependency that Gradio checks per request."""

    @app.get(LOGIN_PATH, include_in_schema=False)
    async def show_login(request: Request):
        if console.session_of(request.cookies):
            return RedirectResponse("/", status_code=303)
        return login_page()

    @app.post(LOGIN_PATH, include_in_schema=False)
    async def log_in(request: Request):
        body = b""
        async for chunk in request.stream():  # bounded: this route answers anyone, before any key is checked
            body += chunk
            if len(body) > MAX_LOGIN_BYTES:
                return login_page(f"request body larger than {MAX_LOGIN_BYTES} bytes", status_code=413)
        api_key = parse_qs(body.decode("utf-8", "replace")).get("api_key", [""])[0].strip()
        if not api_key:
            return login_page("api_key: required", status_code=400)
        if why := await check_key(console, api_key):
            return login_page(why, status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, console.start_session(api_key), max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    @app.get(LOGOUT_PATH, include_in_schema=False)
    async def log_out(request: Request):
        console.end_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    app.add_middleware(ConsoleGate, console=console)

    def session_user(request) -> str | None:
        return SESSION_USER if console.session_of(request.cookies) else None

    return session_user


class ConsoleGate:
    """Refuses every console path to a browser without a live session; the API and the login page pass."""

    def __init__(self, app: ASGIApp, console: Console):
        self.app = app
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._open(scope):
            await self.app(scope, receive, send)
            return
        if self.console.session_of(HTTPConnection(scope).cookies):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        request = Request(scope)
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            response = RedirectResponse(LOGIN_PATH, status_code=303)
        else:
            response = JSONResponse({"error": "Not authenticated: log in at /login"}, status_code=401)
        await response(scope, receive, send)

    @staticmethod
    def _open(scope: Scope) -> bool:
        path = scope["path"]
        return is_api_path(path) or path in (LOGIN_PATH, LOGOUT_PATH)
