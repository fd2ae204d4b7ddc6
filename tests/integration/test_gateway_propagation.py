"""What the gateway passes on: the caller's deadline and request id, its cancel; and a breaker that opens and heals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client import REGISTRY

from forgeway.services.runtime.service import serving
from forgeway import __version__
from forgeway.services.echo.engine import EchoEngine, EchoSettings
from forgeway.core.errors import Unavailable
from forgeway.server.server import start_server
from forgeway.server.settings import ServiceSettings
from forgeway.testing import gateway_settings, start_echoes, start_gateway, stop_now, wait_until
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, generate_pb2, models_pb2

LONG = "w " * 40  # 40 tokens at 0.1 s: four seconds of generation


class RecordingBackend(backend_pb2_grpc.BackendServiceServicer):
    """A BackendService that answers at once and remembers the deadline and request id each call arrived with."""

    kind = "probe"

    def __init__(self) -> None:
        self.settings = ServiceSettings(port=0, metrics_port=-1)
        self.ready, self.failure = False, ""
        self.seen: list[tuple[float | None, dict]] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def servicers(self):
        return [(backend_pb2_grpc.add_BackendServiceServicer_to_server, self, "forgeway.v1.BackendService")]

    async def Capabilities(self, request, context):
        return capabilities_pb2.CapabilitiesResponse(
            backend="probe", version=__version__, availability=capabilities_pb2.Availability(available=True),
            rpcs=["forgeway.v1.BackendService/Generate"], models=[models_pb2.ModelInfo(name="probe", loaded=True)],
            generation=capabilities_pb2.GenerationFeatures(streaming=True),
        )

    async def Generate(self, request, context):
        self.seen.append((context.time_remaining(), dict(context.invocation_metadata())))
        return generate_pb2.GenerateResponse(model=request.model, served_by="probe")


class FlakyEcho(EchoEngine):
    """The echo engine, answering UNAVAILABLE while `broken` although its health still says SERVING."""

    broken = False

    def admit(self, request):
        if self.broken:
            raise Unavailable("flaky backend is broken")
        return super().admit(request)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory) -> AsyncIterator[dict]:
    (slow,) = start_echoes(("slow", 0.1), log_dir=tmp_path_factory.mktemp("logs"))
    (steady,) = start_echoes(("flaky", 0.0), log_dir=tmp_path_factory.mktemp("logs"))
    probe = RecordingBackend()
    flaky = FlakyEcho(EchoSettings(port=0, metrics_port=-1, model_name="flaky"))
    servers = [await start_server(probe), await start_server(serving(flaky))]
    settings = gateway_settings(
        [{"name": "slow", "address": slow.address}, {"name": "steady", "address": steady.address},
         {"name": "probe", "address": f"127.0.0.1:{servers[0].port}"},
         {"name": "flaky", "address": f"127.0.0.1:{servers[1].port}"}],
        breaker={"failure_threshold": 2, "open_seconds": 0.3, "jitter": 0.0},
    )
    gateway = await start_gateway(settings)
    gateway_channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}")
    slow_channel = grpc.aio.insecure_channel(slow.address)
    yield {
        "stub": backend_pb2_grpc.BackendServiceStub(gateway_channel),
        "slow": backend_pb2_grpc.BackendServiceStub(slow_channel),
        "probe": probe, "flaky": flaky, "gateway": gateway,
    }
    await gateway_channel.close()
    await slow_channel.close()
    await stop_now(gateway)
    for server in servers:
        await stop_now(server)
    slow.stop()
    steady.stop()


async def backend_in_flight(stub) -> int:
    return (await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=5)).load.in_flight


async def wait_backend_idle(stub, timeout: float = 2.0) -> None:
    """The backend stops well before its four seconds of generation would have ended."""
    deadline = asyncio.get_running_loop().time() + timeout
    while await backend_in_flight(stub):
        assert asyncio.get_running_loop().time() < deadline, "the backend kept generating"
        await asyncio.sleep(0.05)


async def test_deadline_and_request_id_reach_the_backend(stack):
    remaining = {}
    for timeout in (100, 1000):
        await stack["stub"].Generate(generate_pb2.GenerateRequest(model="probe", prompt="x"), timeout=timeout,
                                     metadata=(("x-request-id", f"req-gateway-{timeout}"),))
        remaining[timeout], metadata = stack["probe"].seen[-1]
        assert metadata["x-request-id"] == f"req-gateway-{timeout}"
    # What was left of each caller's own deadline, give or take gRPC rounding it up on the wire on each of the two
    # hops (to a few significant figures: up to about 1% a hop; 101.9995 s was seen for 100 s); the 1000 s call got
    # more than the whole 100 s one had, so no shorter deadline replaced it on the way.
    assert 0 < remaining[100] <= 103 < remaining[1000] <= 1030
    await stack["stub"].Generate(generate_pb2.GenerateRequest(model="probe", prompt="x"))
    assert stack["probe"].seen[-1][0] is None, "no deadline from the caller, none invented"


@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream"])
async def test_expired_deadline_is_deadline_exceeded_and_stops_the_backend(stack, rpc):
    request = generate_pb2.GenerateRequest(model="slow", prompt=LONG)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        if rpc == "Generate":
            await stack["stub"].Generate(request, timeout=0.5)
        else:
            async for _ in stack["stub"].GenerateStream(request, timeout=0.5):
                pass
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await wait_backend_idle(stack["slow"])


async def test_cancelled_stream_cancels_the_backend_call(stack):
    call = stack["stub"].GenerateStream(generate_pb2.GenerateRequest(model="slow", prompt=LONG), timeout=20)
    assert (await call.read()).HasField("delta")
    assert await backend_in_flight(stack["slow"]) == 1
    call.cancel()
    await wait_backend_idle(stack["slow"])


def retries() -> float:
    return REGISTRY.get_sample_value("forgeway_gateway_retries_total", {"code": "UNAVAILABLE"}) or 0.0


async def test_breaker_opens_on_failures_behind_a_serving_health_and_recovers(stack):
    stub, flaky = stack["stub"], stack["flaky"]
    endpoint = next(e for e in stack["gateway"].service.state.pool if e.key == "flaky")
    request = generate_pb2.GenerateRequest(model="flaky", prompt="still served")
    before = retries()
    flaky.broken = True
    for _ in range(16):  # every call is still answered: the steady replica takes the retries
        reply = await stub.Generate(request, timeout=10)
        assert reply.choices[0].text == "still served"
        if endpoint.breaker.state.value == "open":
            break
    assert endpoint.breaker.state.value == "open" and endpoint.healthy
    assert retries() - before == 2
    caps = await stub.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=5)
    assert {e.address: e.breaker for e in caps.endpoints}[endpoint.spec.address] == "open"
    flaky.broken = False
    served_by_flaky = f"echo/{flaky.settings.instance_id}"
    await wait_until(endpoint.breaker.available, 5, "the half-open wait")
    for _ in range(30):  # the probe goes out when the router picks it; it succeeds and closes the breaker
        reply = await stub.Generate(request, timeout=10)
        if reply.served_by == served_by_flaky:
            break
    assert reply.served_by == served_by_flaky and endpoint.breaker.state.value == "closed"
