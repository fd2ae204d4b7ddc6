"""The gateway's Prometheus metrics (forgeway_gateway_*), beside the runtime's per-RPC ones."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from forgeway.server.metrics import LATENCY_BUCKETS

FINE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)

REQUESTS = Counter(
    "forgeway_gateway_requests", "Forwarded calls, by backend endpoint, model, RPC and status code.",
    ["backend", "model", "method", "code"],
)
ADDED_LATENCY = Histogram(
    "forgeway_gateway_added_seconds",
    "Time the gateway adds to a call (its total, or its time to the first chunk, minus the backend's).",
    ["method"], buckets=FINE_BUCKETS,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "forgeway_gateway_time_to_first_token_seconds", "Time from arrival at the gateway to the first streamed chunk.",
    ["model"], buckets=LATENCY_BUCKETS,
)
TOKENS = Counter("forgeway_gateway_tokens", "Tokens served, by backend, model and kind.", ["backend", "model", "kind"])
RETRIES = Counter("forgeway_gateway_retries", "Calls retried on another endpoint, by the failed one's code.", ["code"])
FALLBACKS = Counter("forgeway_gateway_fallbacks", "Training requests sent to another trainer.", ["requested", "used"])
BREAKER_STATE = Gauge(
    "forgeway_gateway_breaker_state", "Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open.", ["endpoint"]
)
ENDPOINT_HEALTHY = Gauge("forgeway_gateway_endpoint_healthy", "1 while an endpoint reports SERVING.", ["endpoint"])
ENDPOINT_IN_FLIGHT = Gauge(
    "forgeway_gateway_endpoint_in_flight", "Calls the gateway has open to an endpoint.", ["endpoint"]
)
REJECTED = Counter("forgeway_gateway_rejected", "Calls refused before routing, by reason.", ["reason"])
CONFIG_RELOADS = Counter("forgeway_gateway_config_reloads", "Config reload attempts, by result.", ["result"])
