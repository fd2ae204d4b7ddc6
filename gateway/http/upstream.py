"""The gRPC side of the shim: one channel to the target, its stubs, per-request metadata and cancellation."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable

import grpc
from fastapi import Request

from forgeway.v1 import backend_pb2_grpc, datasets_pb2_grpc, jobs_pb2_grpc, models_pb2_grpc

from .errors import OpenAIHTTPError, ParamOf, from_grpc, identity_param
from .middleware import SCOPE_REQUEST_ID
from .settings import HttpSettings

_PRINTABLE = re.compile(r"^[\x20-\x7e]*$")


class Upstream:
    """A grpc.aio channel to an endpoint serving forgeway.v1 (the gateway, or one backend) and its stubs."""

    def __init__(self, target: str, settings: HttpSettings):
        self.target = target
        self.settings = settings
        self.channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", settings.max_message_bytes),
                ("grpc.max_receive_message_length", settings.max_message_bytes),
            ],
        )
        self.backend = backend_pb2_grpc.BackendServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.datasets = datasets_pb2_grpc.DatasetServiceStub(self.channel)
        self.models = models_pb2_grpc.ModelServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()


async def upstream(request: Request) -> Upstream:
    """FastAPI dependency: the app's upstream (async, so FastAPI does not hop to a worker thread for it)."""
    return request.app.state.upstream


def call_metadata(request: Request) -> tuple[tuple[str, str], ...]:
    """gRPC metadata of the call made for this request: its request id and the caller's credentials."""
    metadata = [("x-request-id", request.scope.get(SCOPE_REQUEST_ID, ""))]
    authorization = request.headers.get("authorization")
    if authorization is not None:
        if not _PRINTABLE.match(authorization):
            raise OpenAIHTTPError(401, "malformed Authorization header", code="invalid_api_key")
        metadata.append(("authorization", authorization))
    return tuple(metadata)


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client goes away (the body has been read, so only http.disconnect can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def answer(request: Request, call: Awaitable, param_of: ParamOf = identity_param):
    """Await one unary gRPC call, cancelling it if the client disconnects first; gRPC errors become OpenAIHTTPErrors."""
    return (await answers(request, [call], param_of))[0]


async def answers(request: Request, calls: list, param_of: ParamOf = identity_param) -> list:
    """Await several unary calls together; a disconnect or the first failure cancels the rest."""
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    gathered = asyncio.gather(*calls)
    try:
        done, _ = await asyncio.wait({watcher, gathered}, return_when=asyncio.FIRST_COMPLETED)
        if gathered not in done:
            for call in calls:
                call.cancel()
            gathered.cancel()
            raise OpenAIHTTPError(499, "client closed the request", code="client_closed_request")
        return gathered.result()
    except grpc.RpcError as error:
        for call in calls:
            call.cancel()
        raise from_grpc(error, param_of) from None
    finally:
        watcher.cancel()
