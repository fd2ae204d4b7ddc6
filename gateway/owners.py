"""Finding the endpoint that holds a job or dataset: ask each trainer until one does not say NOT_FOUND."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from forgeway.core.errors import NotFound, Unavailable
from forgeway.v1 import datasets_pb2, jobs_pb2

from .endpoint import Endpoint
from .forward import call_metadata, cancel_with, remaining, translate

SKIP = frozenset({grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED})


class OwnerCache:
    """Item id -> the key of the endpoint that holds it, bounded: beyond `limit` the least recently used is forgotten.
    Every write goes through remember(), so no path can grow it past its bound."""

    def __init__(self, limit: int):
        self.limit = limit
        self._keys: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, item: str) -> str | None:
        key = self._keys.get(item)
        if key is not None:
            self._keys.move_to_end(item)
        return key

    def remember(self, item: str, endpoint_key: str) -> None:
        self._keys[item] = endpoint_key
        self._keys.move_to_end(item)
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)

    def ordered(self, item: str, endpoints: list[Endpoint]) -> list[Endpoint]:
        """The endpoints, the one remembered for item first."""
        owner = self.get(item)
        return sorted(endpoints, key=lambda e: e.key != owner)


class Owners:
    """Who holds which job, dataset and model-store entry. It only orders the search: any replica of the gateway finds the owner by
    asking."""

    def __init__(self, limit: int = 10_000):
        self.jobs = OwnerCache(limit)
        self.datasets = OwnerCache(limit)
        self.models = OwnerCache(limit)  # model-store entries, by the trainer that wrote or last exported them

    async def find_dataset(self, endpoints: list[Endpoint], dataset_id: str, timeout: float = 5.0) -> set[str]:
        """Keys of the endpoints that know a dataset (asked all at once)."""
        request = datasets_pb2.GetDatasetRequest(dataset_id=dataset_id)
        return await self._find(self.datasets, dataset_id, endpoints,
                                lambda e: e.datasets.GetDataset(request, timeout=timeout, metadata=call_metadata()))

    async def find_job(self, endpoints: list[Endpoint], job_id: str, timeout: float = 5.0) -> set[str]:
        """Keys of the endpoints that know a job (asked all at once): where its checkpoints are."""
        request = jobs_pb2.GetJobRequest(job_id=job_id)
        return await self._find(self.jobs, job_id, endpoints,
                                lambda e: e.jobs.GetJob(request, timeout=timeout, metadata=call_metadata()))

    @staticmethod
    async def _find(cache: OwnerCache, item: str, endpoints: list[Endpoint], ask) -> set[str]:
        answers = await asyncio.gather(*(ask(e) for e in endpoints), return_exceptions=True)
        found = {e.key for e, answer in zip(endpoints, answers, strict=True) if not isinstance(answer, BaseException)}
        if found and cache.get(item) not in found:
            cache.remember(item, min(found))
        return found


def _missing(kind: str, item: str, unreachable: list[str]) -> Exception:
    if unreachable:
        return Unavailable(f"{kind} {item!r} is not on any reachable endpoint; unreachable: {', '.join(unreachable)}",
                           retry_after=1.0)
    return NotFound(kind, item)


async def ask_owner(endpoints: list[Endpoint], unreachable: list[str], kind: str, item: str, context,
                    call: Callable[[Endpoint, float | None, tuple], Awaitable[Any]]) -> tuple[Any, Endpoint]:
    """The first answer other than NOT_FOUND/UNAVAILABLE/UNIMPLEMENTED, with the endpoint that gave it."""
    unreachable = list(unreachable)
    for endpoint in endpoints:
        try:
            return await call(endpoint, remaining(context), call_metadata()), endpoint
        except grpc.aio.AioRpcError as error:
            if error.code() not in SKIP:
                raise translate(error, endpoint) from None
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                unreachable.append(endpoint.key)
    raise _missing(kind, item, unreachable)


async def stream_from_owner(
    endpoints: list[Endpoint], unreachable: list[str], kind: str, item: str, context,
    call: Callable[[Endpoint, float | None, tuple], Any],
) -> AsyncIterator[tuple[Any, Endpoint]]:
    """Like ask_owner for a server stream: an endpoint is skipped only if it fails before its first message."""
    unreachable = list(unreachable)
    for endpoint in endpoints:
        stream = call(endpoint, remaining(context), call_metadata())
        cancel_with(context, stream)
        started = False
        try:
            async for message in stream:
                started = True
                yield message, endpoint
            return
        except grpc.aio.AioRpcError as error:
            if started or error.code() not in SKIP:
                raise translate(error, endpoint, started) from None
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                unreachable.append(endpoint.key)
        except BaseException:
            stream.cancel()
            raise
    raise _missing(kind, item, unreachable)
