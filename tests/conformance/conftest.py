"""Fixtures of the conformance suite: one running endpoint per registered factory, and a channel to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from forgeway.testing import wait_serving
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2

from .endpoints import ENDPOINTS, Endpoint


@pytest.fixture(
    scope="session", params=[pytest.param(name, marks=r.marks, id=name) for name, r in ENDPOINTS.items()]
)
async def endpoint(request: pytest.FixtureRequest) -> AsyncIterator[Endpoint]:
    """A started endpoint, SERVING; started once per session and stopped after its last test."""
    async with ENDPOINTS[request.param].start() as ep:
        await asyncio.to_thread(wait_serving, ep.address, 120)
        yield ep


@pytest.fixture
async def channel(endpoint: Endpoint) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(endpoint.address) as chan:
        yield chan


@pytest.fixture
def backend(channel: grpc.aio.Channel) -> backend_pb2_grpc.BackendServiceStub:
    return backend_pb2_grpc.BackendServiceStub(channel)


@pytest.fixture
async def capabilities(backend: backend_pb2_grpc.BackendServiceStub) -> capabilities_pb2.CapabilitiesResponse:
    return await backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), timeout=10)
