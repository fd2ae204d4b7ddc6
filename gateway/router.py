"""Router.pick: capability filter -> health -> circuit breaker -> power of two choices on load."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from forgeway.core.errors import ForgewayError, NotFound, ResourceExhausted, Unavailable, Unimplemented
from forgeway.core.models import Request, check_servable

from .endpoint import UNKNOWN, Endpoint
from .settings import GatewaySettings

GENERATE = "forgeway.v1.BackendService/Generate"
GENERATE_STREAM = "forgeway.v1.BackendService/GenerateStream"
EMBED = "forgeway.v1.BackendService/Embed"
RERANK = "forgeway.v1.BackendService/Rerank"

# Why an endpoint was left out, most to least fundamental; the error raised follows the most hopeful category.
CAPABILITY, MODEL, HEALTH, BREAKER, LOAD = "capability", "model", "health", "breaker", "load"


@dataclass(frozen=True)
class Route:
    """Where to send one attempt, and under which model name."""

    endpoint: Endpoint
    model: str


@dataclass(frozen=True)
class Exclusion:
    endpoint: str
    category: str
    reason: str
    error: ForgewayError | None = None


def usable(endpoint: Endpoint, limit: int) -> Exclusion | None:
    """Health, availability, breaker and load: whether the endpoint can take a call now."""
    if not endpoint.healthy:
        why = endpoint.unavailable_reason if endpoint.capabilities is not None and not endpoint.available else (
            endpoint.health_reason)
        return Exclusion(endpoint.key, HEALTH, f"health {endpoint.health} ({why})")
    if not endpoint.available:
        return Exclusion(endpoint.key, HEALTH, f"unavailable: {endpoint.unavailable_reason}")
    if not endpoint.breaker.available():
        return Exclusion(endpoint.key, BREAKER, endpoint.breaker.why_not())
    if limit and endpoint.in_flight >= limit:
        return Exclusion(endpoint.key, LOAD, f"at its limit of {limit} calls in flight")
    return None


def order_by_load(endpoints: list[Endpoint], preferred: set[str] = frozenset()) -> list[Endpoint]:
    """Power of two choices for the first pick (among preferred endpoints if any), then the rest by load."""
    if not endpoints:
        return []
    first_pool = [e for e in endpoints if e.key in preferred] or endpoints
    pair = random.sample(first_pool, 2) if len(first_pool) > 1 else first_pool
    first = min(pair, key=lambda e: e.score)
    rest = sorted((e for e in endpoints if e is not first), key=lambda e: (e.key not in preferred, e.score))
    return [first, *rest]


def no_route(
    what: str, exclusions: list[Exclusion], known: Iterable[str] | None = None, name: str = ""
) -> ForgewayError:
    """The error for a call no endpoint can take, listing why each endpoint was excluded."""
    if not exclusions:
        return Unavailable(f"no backend endpoints are configured for {what}", retry_after=1.0)
    why = "; ".join(f"{e.endpoint}: {e.reason}" for e in exclusions)
    categories = {e.category for e in exclusions}
    if categories == {MODEL} and known is not None:
        return NotFound("model", name, sorted(known))
    if categories & {HEALTH, BREAKER}:
        return Unavailable(f"no endpoint can serve {what} now ({why})", retry_after=1.0)
    if LOAD in categories:
        return ResourceExhausted(f"every endpoint for {what} is busy ({why})", retry_after=0.5, reason="OVERLOADED")
    # an endpoint of another kind than the request's backend hint says least: any other endpoint's reason comes first
    errors = [e.error for e in exclusions if e.error is not None]
    capability = next((err for err in errors if err.metadata.get("field") != "backend"), errors[0] if errors else None)
    if capability is not None:
        # the other endpoints' reasons; the error's own endpoint said it already
        others = "; ".join(f"{e.endpoint}: {e.reason}" for e in exclusions if e.error is not capability)
        if others:
            capability.message = f"{capability.message} ({others})"
            capability.args = (capability.message,)
        return capability
    return Unavailable(f"no endpoint can serve {what} ({why})", retry_after=1.0)


class Router:
    """Chooses endpoints for each call from the pool's current state and the routing config."""

    def __init__(self, endpoints: Iterable[Endpoint], settings: GatewaySettings):
        self.pool = endpoints
        self.settings = settings

    def models_for(self, requested: str) -> list[str]:
        """The model names to try, in order: an alias resolved, a group's members in weighted random order."""
        name = self.settings.resolve_alias(requested)
        members = self.settings.model_groups.get(name)
        if not members:
            return [name]
        remaining = list(members)
        ordered = []
        while remaining:
            pick = random.choices(remaining, weights=[m.weight for m in remaining])[0]
            remaining.remove(pick)
            ordered.append(self.settings.resolve_alias(pick.model))
        return ordered

    @staticmethod
    def _capable(endpoint: Endpoint, model: str, request: Request) -> Exclusion | None:
        """Whether the endpoint's model can serve the request: core's check_servable, as an exclusion."""
        if endpoint.capabilities is None:
            return Exclusion(endpoint.key, HEALTH, endpoint.unavailable_reason)
        info = endpoint.model_index.get(model)
        if info is None:
            return Exclusion(endpoint.key, MODEL, f"does not serve model {model!r}")
        try:
            check_servable(request, info, endpoint.feature_names, endpoint.kind)
        except ForgewayError as error:
            return Exclusion(endpoint.key, CAPABILITY, error.message, error)
        return None

    async def refresh(self, rpc: str = GENERATE) -> None:
        """Read Capabilities now from every endpoint that serves rpc (a model was just published, or asked for and
        not found): concurrent callers share one read per endpoint."""
        since = time.monotonic()
        await asyncio.gather(*(e.refresh_shared(since) for e in self.pool if e.capabilities is None or e.serves(rpc)))

    async def plan_fresh(self, request: Request, rpc: str = GENERATE) -> list[Route]:
        """plan(), but a model no endpoint knows is looked for once more after refreshing their Capabilities, so a
        model published a moment ago (a training job that just succeeded) is found rather than NOT_FOUND."""
        try:
            return self.plan(request, rpc)
        except NotFound as error:
            if error.kind != "model":
                raise
        await self.refresh(rpc)
        return self.plan(request, rpc)

    def plan(self, request: Request, rpc: str = GENERATE) -> list[Route]:
        """Every route worth trying for a generation, best first. Raises the table's error when there is none.

        Endpoints that do not serve rpc (a trainer, for Generate) are no candidates at all: an unknown model is
        NOT_FOUND whatever else is in the pool."""
        limit = self.settings.limits.endpoint_max_in_flight
        routes: list[Route] = []
        exclusions: list[Exclusion] = []
        candidates = [e for e in self.pool if e.capabilities is None or e.serves(rpc)]
        if self.pool and not candidates:
            raise Unimplemented(f"no backend serves {rpc}")
        for model in self.models_for(request.model):
            eligible: list[Endpoint] = []
            preferred: set[str] = set()
            for endpoint in candidates:
                excluded = self._capable(endpoint, model, request) or usable(endpoint, limit)
                if excluded is not None:
                    exclusions.append(excluded)
                    continue
                eligible.append(endpoint)
                info = endpoint.model_index[model]
                if (request.adapter in info.adapters) if request.adapter else info.loaded:
                    preferred.add(endpoint.key)
            routes += [Route(e, model) for e in order_by_load(eligible, preferred)]
        if routes:
            return routes
        known = None
        if all(e.capabilities is not None for e in candidates):
            known = {name for e in candidates for name in e.model_index}
            known |= set(self.settings.model_aliases) | set(self.settings.model_groups)
        raise no_route(f"model {request.model!r}", exclusions, known, request.model)

    def pick(self, request: Request, rpc: str = GENERATE) -> Route:
        """The best route for a generation."""
        return self.plan(request, rpc)[0]

    def serving(self, rpc: str) -> list[Endpoint]:
        """Usable endpoints that serve an RPC, least loaded first (for job, dataset and model calls)."""
        limit = self.settings.limits.endpoint_max_in_flight
        found = [e for e in self.pool if e.serves(rpc) and usable(e, limit) is None]
        return sorted(found, key=lambda e: e.score)

    def reachable(self, rpc: str) -> tuple[list[Endpoint], list[str]]:
        """Endpoints serving rpc that answer at all, even if not ready for new work (a trainer without a GPU still
        answers for its jobs), least loaded first; and the keys of those that served it but cannot be reached now."""
        serving = [e for e in self.pool if e.serves(rpc)]
        up = sorted((e for e in serving if e.health != UNKNOWN and e.breaker.available()), key=lambda e: e.score)
        down = [e.key for e in serving if e not in up]
        if not up and not down:
            self.serving_or_raise(rpc)  # raises why nothing serves it
        return up, down

    def serving_or_raise(self, rpc: str) -> list[Endpoint]:
        found = self.serving(rpc)
        if found:
            return found
        limit = self.settings.limits.endpoint_max_in_flight
        exclusions = []
        for e in self.pool:
            if e.capabilities is None:
                exclusions.append(Exclusion(e.key, HEALTH, e.unavailable_reason))
            elif not e.serves(rpc):
                exclusions.append(Exclusion(e.key, CAPABILITY, f"does not serve {rpc}",
                                            Unimplemented(f"no backend serves {rpc}")))
            else:
                exclusions.append(usable(e, limit))
        raise no_route(rpc, [x for x in exclusions if x is not None])
