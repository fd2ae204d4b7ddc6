"""What the OpenAI proxy adds: unary latency and streamed tokens/s, the upstream called directly vs through the proxy.

The upstream is llama-cpp-python's OpenAI-compatible server on the tiny GGUF (its own process); the proxy is
`forgeway serve openai` (its own process); this process is the client. Same run, same machine, same requests:
  direct  the official `openai` client (AsyncOpenAI) against the upstream: the baseline of every ratio
  proxy   grpc.aio Generate / GenerateStream against the proxy
  unary      p50/p99 round trip of a greedy completion of max_tokens 1 (so upstream compute stays small)
  streaming  a greedy completion of 64 tokens: tokens/s
Rounds alternate direct and proxy so both see the same machine load. Target (issue 5): under 2 ms added at p50
for unary calls. Writes benchmarks/results/openai_proxy_overhead.json.

    .venv/bin/python benchmarks/openai_proxy_overhead.py [--requests 600] [--streams 30] [--rounds 3]
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
import tempfile
import time
from pathlib import Path

import grpc
import openai
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forgeway.testing import LLAMA_CPP_SETTINGS, free_port, start_llama_server, tiny_model
from forgeway.v1 import backend_pb2_grpc, generate_pb2

RESULTS = Path(__file__).parent / "results" / "openai_proxy_overhead.json"
PROMPT = "The river carried the small boat past the old mill"
STREAM_TOKENS = 64


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Direct:
    def __init__(self, base_url: str):
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)

    async def unary(self) -> None:
        await self.client.completions.create(model="tiny", prompt=PROMPT, max_tokens=1, temperature=0)

    async def stream(self) -> int:
        chunks = await self.client.completions.create(model="tiny", prompt=PROMPT, max_tokens=STREAM_TOKENS,
                                                      temperature=0, stream=True)  # fmt: skip
        return len([chunk async for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason is None])


class Proxied:
    def __init__(self, address: str):
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = backend_pb2_grpc.BackendServiceStub(self.channel)
        self.short = generate_pb2.GenerateRequest(model="tiny", prompt=PROMPT,
                                                  sampling=generate_pb2.SamplingParams(max_tokens=1))  # fmt: skip
        self.long = generate_pb2.GenerateRequest(model="tiny", prompt=PROMPT,
                                                 sampling=generate_pb2.SamplingParams(max_tokens=STREAM_TOKENS))

    async def unary(self) -> None:
        await self.stub.Generate(self.short, timeout=30)

    async def stream(self) -> int:
        final = None
        async for message in self.stub.GenerateStream(self.long, timeout=60):
            final = message.final if message.HasField("final") else final
        return final.usage.completion_tokens


async def measure(targets: dict[str, Direct | Proxied], requests: int, streams: int, rounds: int) -> dict:
    latency = {name: [] for name in targets}
    streamed = {name: [0, 0.0] for name in targets}
    for target in targets.values():  # warm up: connections, the upstream's prompt cache
        for _ in range(20):
            await target.unary()
        await target.stream()
    for _ in range(rounds):
        for name, target in targets.items():
            for _ in range(requests // rounds):
                start = time.perf_counter()
                await target.unary()
                latency[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            tokens = sum([await target.stream() for _ in range(streams // rounds)])
            streamed[name] = [streamed[name][0] + tokens, streamed[name][1] + time.perf_counter() - start]
    return {
        name: {"p50_ms": round(statistics.median(latency[name]) * 1000, 3),
               "p99_ms": round(percentile(latency[name], 0.99) * 1000, 3),
               "stream_tokens": streamed[name][0],
               "stream_tokens_per_s": round(streamed[name][0] / streamed[name][1], 1)}
        for name in targets
    }  # fmt: skip


def start_proxy(base_url: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port("127.0.0.1")
    flags = [f"--{k.replace('_', '-')}={json.dumps(v) if isinstance(v, dict) else v}"
             for k, v in LLAMA_CPP_SETTINGS.items()]
    command = [sys.executable, "-m", "forgeway.cli", "serve", "openai", "--port", str(port), "--metrics-port=-1",
               "--log-level", "WARNING", "--base-url", base_url, "--models", json.dumps([{"name": "tiny"}]), *flags]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"

    async def serving() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(600):
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"the proxy never served: {log.read_text()[-2000:]}")

    asyncio.run(serving())
    return process, address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600, help="unary calls per target")
    parser.add_argument("--streams", type=int, default=30, help="streams per target")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of direct and proxy runs")
    args = parser.parse_args(argv)
    gguf, _ = tiny_model()
    upstream = start_llama_server(gguf, model="tiny", n_ctx=512)
    proxy, address = start_proxy(upstream.base_url, Path(tempfile.gettempdir()) / "openai-proxy-bench.log")

    async def run() -> dict:
        targets = {"direct": Direct(upstream.base_url), "proxy": Proxied(address)}
        try:
            return await measure(targets, args.requests, args.streams, args.rounds)
        finally:
            await targets["proxy"].channel.close()
            await targets["direct"].client.close()

    try:
        results = asyncio.run(run())
    finally:
        proxy.terminate()
        proxy.wait(10)
        upstream.stop()
    direct, proxied = results["direct"], results["proxy"]
    ratios = {
        "added_p50_ms": round(proxied["p50_ms"] - direct["p50_ms"], 3),
        "added_p99_ms": round(proxied["p99_ms"] - direct["p99_ms"], 3),
        "stream_ratio": round(proxied["stream_tokens_per_s"] / direct["stream_tokens_per_s"], 3),
    }
    targets = {"added_p50_ms < 2": ratios["added_p50_ms"] < 2}
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "grpcio": grpc.__version__, "openai": openai.__version__},
        "requests": args.requests, "streams": args.streams, "rounds": args.rounds, "stream_tokens": STREAM_TOKENS,
        "direct": direct, "proxy": proxied, "ratios": ratios, "targets_met": targets, "date": time.strftime("%Y-%m-%d"),
    }  # fmt: skip
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"direct {json.dumps(direct)}\nproxy  {json.dumps(proxied)}")
    for name, value in ratios.items():
        print(f"{name:<14} {value}")
    for name, met in targets.items():
        print(f"target {name:<18} {'met' if met else 'MISSED'}")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
