"""The gateway serves the OpenAI-compatible HTTP API beside its gRPC port, in the same event loop."""

from __future__ import annotations

import httpx
import openai
import pytest

from forgeway.services.runtime.service import serving
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.server.server import start_server
from forgeway.testing import gateway_settings, start_gateway, stop_now


async def test_http_api_runs_inside_the_gateway():
    echo = await start_server(serving(EchoEngine(EchoSettings(port=0, metrics_port=-1, model_name="echo"))))
    gateway = await start_gateway(gateway_settings([f"127.0.0.1:{echo.port}"], http_port=0))
    service = gateway.service
    try:
        assert service.http_port > 0
        base = f"http://127.0.0.1:{service.http_port}"
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/readyz")).status_code == 200
        client = openai.AsyncOpenAI(base_url=f"{base}/v1", api_key="unused")
        reply = await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi there"}])
        assert reply.choices[0].message.content == "hi there"
        await client.close()
    finally:
        await stop_now(gateway)
        await stop_now(echo)
    with pytest.raises(httpx.ConnectError):  # stopping the gateway stopped its HTTP server
        httpx.get(f"{base}/healthz", timeout=2)
