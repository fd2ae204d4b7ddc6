"""Prometheus metrics every service exports; names start with forgeway_."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

REQUESTS = Counter("forgeway_requests", "RPCs served, by service, method and status code.", ["service", "method", "code"])
LATENCY = Histogram(
    "forgeway_request_seconds", "RPC latency in seconds.", ["service", "method"], buckets=LATENCY_BUCKETS
)
IN_FLIGHT = Gauge("forgeway_in_flight", "RPCs being served now.", ["service", "method"])
TIME_TO_FIRST_TOKEN = Histogram(
    "forgeway_time_to_first_token_seconds", "Time to the first generated token.", ["service", "model"],
    buckets=LATENCY_BUCKETS,
)
TIME_PER_OUTPUT_TOKEN = Histogram(
    "forgeway_time_per_output_token_seconds", "Mean time per generated token after the first.", ["service", "model"],
    buckets=LATENCY_BUCKETS,
)
TOKENS = Counter("forgeway_tokens", "Tokens processed, by kind (prompt, completion).", ["service", "model", "kind"])
TOOL_CALL_PARSE_FAILURES = Counter(
    "forgeway_tool_call_parse_failures", "Tool calls a model wrote that did not parse (given back as content).",
    ["service", "model"],
)
QUEUE_DEPTH = Gauge("forgeway_queue_depth", "Requests waiting for a slot.", ["service"])
EMBEDDING_BATCH_SIZE = Histogram(
    "forgeway_embedding_batch_size", "Inputs per embedding or rerank forward pass (its count: the passes).",
    ["service", "model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
)


def start_metrics_server(host: str, port: int) -> int:
    """Serve /metrics over HTTP; returns the bound port (port 0 picks a free one). -1 disables and returns -1."""
    if port < 0:
        return -1
    server, _thread = start_http_server(port, addr=host)
    return server.server_address[1]
