"""Prometheus metrics of the HTTP shim (the runtime's forgeway_* metrics share the same registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from forgeway.server.metrics import LATENCY_BUCKETS

HTTP_REQUESTS = Counter(
    "forgeway_http_requests", "HTTP requests answered by the shim, by route, method and status.",
    ["route", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "forgeway_http_request_seconds", "HTTP request latency in seconds (to the end of the body, streams included).",
    ["route", "method"], buckets=LATENCY_BUCKETS,
)
