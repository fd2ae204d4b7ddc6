"""Schema-driven fuzzing (schemathesis) of the shim's /openapi.json, served by uvicorn in front of a real echo
process: no 500s, statuses and bodies as documented, invalid input rejected with 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (hypothesis comes with schemathesis)
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from forgeway.gateway.http.app import create_app  # noqa: E402
from forgeway.gateway.http.serve import BackgroundServer  # noqa: E402
from forgeway.gateway.http.settings import HttpSettings  # noqa: E402
from forgeway.testing import ServiceProcess  # noqa: E402

pytestmark = pytest.mark.slow

# Echo generates max_tokens tokens however many that is: keep each generated case short.
BOUNDS = {"max_tokens": 32, "max_completion_tokens": 32, "n": 4}


@pytest.fixture(scope="module")
def shim_url() -> Iterator[str]:
    with ServiceProcess("echo", "--grace-seconds", "1") as echo:
        settings = HttpSettings(generation_timeout_seconds=20, request_timeout_seconds=10)
        with BackgroundServer(create_app(echo.address, settings)) as server:
            yield server.url


# The document the app serves (test_served_document_is_the_one_fuzzed checks they are the same), loaded at import
# so that schemathesis parametrizes one test per operation.
DOCUMENT = create_app("127.0.0.1:1").openapi()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_served_document_is_the_one_fuzzed(shim_url):
    import httpx

    assert httpx.get(f"{shim_url}/openapi.json").json() == DOCUMENT


def no_internal_error(ctx, response, case) -> bool | None:
    """500 (and 502) mean a bug; 501 (no trainer behind echo), 503 and 504 are documented answers."""
    if response.status_code in (500, 502):
        raise AssertionError(f"{response.status_code} for {case.method} {case.path}: {response.text[:500]}")
    return None


def bounded(body):
    if isinstance(body, dict):
        for name, top in BOUNDS.items():
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > top:
                body[name] = top
    return body


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_documented_answers(case, shim_url):
    case.body = bounded(case.body)
    checks = [no_internal_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              negative_data_rejection, unsupported_method]
    case.call_and_validate(base_url=shim_url, checks=checks)
