"""What the gateway adds: unary latency and streamed chunks/s, direct to the echo backend vs through the gateway.

Both run as their own processes (`forgeway serve echo`, `forgeway serve gateway`); this process is the client
(grpc.aio). Same run, same machine, same requests: the direct numbers are the baseline of every ratio.
  unary      p50/p99 round trip of a short Generate, at concurrency 1 and 64
  streaming  GenerateStream of a 256-word prompt (one chunk per word, no token delay): tokens/s at concurrency 1, 64
             (the gateway merges deltas that queue up while its caller is slower, so it may send fewer, larger chunks:
             tokens/s is the throughput compared; chunks/s is reported too)
The measurements alternate between direct and gateway, round by round, so both see the same machine load.
Targets (issue 8): under 1 ms added at p50 and 3 ms at p99 at concurrency 1; streaming at least 80% of direct.
Writes benchmarks/results/gateway_overhead.json.

    .venv/bin/python benchmarks/gateway_overhead.py [--requests 2000] [--streams 40] [--rounds 5] [--token-delay 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

from forgeway.testing import echo_process, free_port, wait_serving
from forgeway.v1 import backend_pb2_grpc, generate_pb2

RESULTS = Path(__file__).parent / "results" / "gateway_overhead.json"
SHORT = generate_pb2.GenerateRequest(model="echo", prompt="hello gateway")
LONG = generate_pb2.GenerateRequest(model="echo", prompt=" ".join(f"w{i}" for i in range(256)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def unary(stub, requests: int, concurrency: int, latencies: list[float]) -> float:
    """Round trips of a short Generate; appends each latency, returns the elapsed seconds."""
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            start = time.perf_counter()
            await stub.Generate(SHORT, timeout=30)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def streaming(stub, streams: int, concurrency: int) -> tuple[int, int, float]:
    """Streams of LONG: (delta messages, words received, elapsed seconds)."""
    chunks = words = 0
    remaining = iter(range(streams))

    async def worker() -> None:
        nonlocal chunks, words
        for _ in remaining:
            async for message in stub.GenerateStream(LONG, timeout=60):
                if message.HasField("delta"):
                    chunks += 1
                    words += len(message.delta.text.split())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return chunks, words, time.perf_counter() - start


class Tally:
    """One target's measurements, summed over the rounds."""

    def __init__(self) -> None:
        self.latency = {1: [], 64: []}
        self.unary_seconds = {1: 0.0, 64: 0.0}
        self.stream = {1: [0, 0, 0.0], 64: [0, 0, 0.0]}

    def summary(self, requests: int) -> dict:
        out = {}
        for c in (1, 64):
            lat = self.latency[c]
            out[f"unary_c{c}"] = {"p50_ms": round(statistics.median(lat) * 1000, 3),
                                  "p99_ms": round(percentile(lat, 0.99) * 1000, 3),
                                  "requests_per_s": round(len(lat) / self.unary_seconds[c], 1)}
            chunks, words, seconds = self.stream[c]
            out[f"stream_c{c}"] = {"chunks": chunks, "tokens": words, "seconds": round(seconds, 3),
                                   "chunks_per_s": round(chunks / seconds, 1),
                                   "tokens_per_s": round(words / seconds, 1)}
        return out


async def measure(targets: dict[str, str], requests: int, streams: int, rounds: int) -> dict[str, dict]:
    """Alternate the targets round by round, so both see the same machine load."""
    tallies = {name: Tally() for name in targets}
    channels = {name: grpc.aio.insecure_channel(address) for name, address in targets.items()}
    stubs = {name: backend_pb2_grpc.BackendServiceStub(channel) for name, channel in channels.items()}
    for stub in stubs.values():  # warm up: connections, caches, the gateway's first routes
        await unary(stub, 200, 1, [])
        await streaming(stub, 2, 1)
    for _ in range(rounds):
        for name, stub in stubs.items():
            tally = tallies[name]
            for c in (1, 64):
                tally.unary_seconds[c] += await unary(stub, requests // rounds, c, tally.latency[c])
                chunks, words, seconds = await streaming(stub, streams // rounds * (4 if c == 64 else 1), c)
                tally.stream[c] = [a + b for a, b in zip(tally.stream[c], (chunks, words, seconds), strict=True)]
    for channel in channels.values():
        await channel.close()
    return {name: tally.summary(requests) for name, tally in tallies.items()}


def start_gateway(backend: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port("127.0.0.1")
    command = [sys.executable, "-m", "forgeway.cli", "serve", "gateway", "--port", str(port), "--http-port", "-1",
               "--metrics-port", "-1", "--log-level", "WARNING", "--backends", json.dumps({"echo": backend})]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_serving(f"127.0.0.1:{port}", 30, process, log)
    return process, f"127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="unary calls per measurement")
    parser.add_argument("--streams", type=int, default=40, help="streams per measurement at concurrency 1 (x4 at 64)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of direct and gateway runs")
    parser.add_argument("--token-delay", type=float, default=0.0,
                        help="the echo's seconds per token (0: as fast as it can; 0.01: an LLM's decode pace)")
    args = parser.parse_args(argv)
    logs = Path(os.environ.get("TMPDIR", "/tmp"))
    echo = echo_process("echo", args.token_delay, log_dir=logs).start().wait_serving()
    gateway, address = start_gateway(echo.address, logs / "gateway-bench.log")
    try:
        results = asyncio.run(measure({"direct": echo.address, "gateway": address}, args.requests, args.streams,
                                      args.rounds))
    finally:
        gateway.terminate()
        gateway.wait(10)
        echo.stop()
    direct, through = results["direct"], results["gateway"]
    ratios = {
        "added_p50_ms_c1": round(through["unary_c1"]["p50_ms"] - direct["unary_c1"]["p50_ms"], 3),
        "added_p99_ms_c1": round(through["unary_c1"]["p99_ms"] - direct["unary_c1"]["p99_ms"], 3),
        "added_p50_ms_c64": round(through["unary_c64"]["p50_ms"] - direct["unary_c64"]["p50_ms"], 3),
        "unary_rps_ratio_c64": round(through["unary_c64"]["requests_per_s"] / direct["unary_c64"]["requests_per_s"], 3),
        "stream_ratio_c1": round(through["stream_c1"]["tokens_per_s"] / direct["stream_c1"]["tokens_per_s"], 3),
        "stream_ratio_c64": round(through["stream_c64"]["tokens_per_s"] / direct["stream_c64"]["tokens_per_s"], 3),
    }
    targets = {"added_p50_ms_c1 < 1": ratios["added_p50_ms_c1"] < 1,
               "added_p99_ms_c1 < 3": ratios["added_p99_ms_c1"] < 3,
               "stream_ratio_c1 >= 0.8": ratios["stream_ratio_c1"] >= 0.8,
               "stream_ratio_c64 >= 0.8": ratios["stream_ratio_c64"] >= 0.8}
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "grpcio": grpc.__version__},
        "requests": args.requests, "streams": args.streams, "rounds": args.rounds, "token_delay": args.token_delay,
        "direct": direct, "gateway": through, "ratios": ratios, "targets_met": targets,
        "date": time.strftime("%Y-%m-%d"),
    }
    path = RESULTS
    if args.token_delay:
        path = RESULTS.with_name(f"gateway_overhead_delay{args.token_delay * 1000:g}ms.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    for name in ("unary_c1", "unary_c64", "stream_c1", "stream_c64"):
        print(f"{name:<11} direct {json.dumps(direct[name])}\n{'':<11} gateway {json.dumps(through[name])}")
    for name, value in ratios.items():
        print(f"{name:<22} {value}")
    for name, met in targets.items():
        print(f"target {name:<26} {'met' if met else 'MISSED'}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
