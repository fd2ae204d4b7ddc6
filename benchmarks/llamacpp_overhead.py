"""Completion tokens/s of the llama.cpp service under load versus llama.cpp's own llama-server alone, and the prompt
cache's time to first token.

Three ways to the same GGUF, greedy, the same prompts, the same threads and slots, in one run on one machine:
  llama-server   llama.cpp's own server alone (the baseline of every ratio), its native /completion over HTTP
  grpc           `forgeway serve llamacpp` (which runs that same llama-server as its child) over gRPC Generate
  shim           `forgeway serve gateway` in front of it, the OpenAI API's /v1/completions over HTTP
Each round runs every contender at every concurrency (interleaved, so load from elsewhere hits all alike); medians
are reported with their spread, and each ratio is the median of the rounds' ratios to llama-server in that round. Then the prompt cache: time to first token of a request sharing a 1,000-token prefix
with the one before it, against the first's. Writes benchmarks/results/llamacpp_overhead.json.

    .venv/bin/python benchmarks/llamacpp_overhead.py [--shape small|tiny] [--prompts 32] [--max-tokens 64]
        [--rounds 3] [--threads 2] [--concurrency 1 16]
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc  # noqa: E402
import httpx  # noqa: E402

from forgeway.core.generation import GenerationRequest  # noqa: E402
from forgeway.services.llamacpp.llama_server import command, find_binary  # noqa: E402
from forgeway.services.llamacpp.native import completion_body  # noqa: E402
from forgeway.services.llamacpp.settings import ModelConfig  # noqa: E402
from forgeway.testing import free_port, wait_serving  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, generate_pb2  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "llamacpp_overhead.json"
N_CTX = 2048
WORDS = ("river", "mill", "bridge", "harbour", "gull", "net", "boat", "stone", "market", "lantern", "forest",
         "window", "garden", "letter", "train", "winter", "candle", "valley", "tower", "island")


def prompts(count: int) -> list[str]:
    return [f"The {WORDS[i % len(WORDS)]} near the {WORDS[(i * 7 + 3) % len(WORDS)]} was number {i}, and then"
            for i in range(count)]


def build_gguf(shape: str, folder: Path) -> Path:
    """A random-weight Llama GGUF (f16): 'small' (8 layers, 512 wide, ~24M parameters) or 'tiny' (2 layers).
    Built in a child process, so no process of the benchmark imports torch."""
    code = f"""
from pathlib import Path
from forgeway.services.llamacpp.export import export_gguf
from forgeway.demo.llama import LlamaShape, init_llama, save_model
from forgeway.demo.tokenizer import train_tokenizer
size = LlamaShape(max_position_embeddings={N_CTX}) if {shape!r} == "tiny" else LlamaShape(
    hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
    max_position_embeddings={N_CTX})
tokenizer = train_tokenizer()
model_dir = save_model(init_llama(tokenizer, size, seed=0), tokenizer, Path({str(folder)!r}) / {shape!r})
export_gguf(model_dir, Path({str(folder)!r}) / "{shape}.gguf", "f16")
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return folder / f"{shape}.gguf"


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def wait_http(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not serving")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


async def load(texts: list[str], concurrency: int, one) -> dict:
    """Every text through `one` (text -> completion tokens) by `concurrency` workers; tokens/s over the wall time."""
    queue = list(texts)
    total = 0

    async def worker():
        nonlocal total
        while queue:
            tokens = await one(queue.pop())  # not `total += await ...`: that reads total before the await
            total += tokens

    start_at = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start_at
    return {"tokens": total, "seconds": round(seconds, 4), "tokens_per_s": round(total / seconds, 1)}


class Contenders:
    """The three ways in, each a coroutine factory: text -> completion tokens."""

    def __init__(self, server_url: str, grpc_address: str, shim_url: str, max_tokens: int, config: ModelConfig):
        self.max_tokens, self.config = max_tokens, config
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)
        self.server = httpx.AsyncClient(base_url=server_url, timeout=300, limits=limits)
        self.shim = httpx.AsyncClient(base_url=shim_url, timeout=300, limits=limits)
        self.channel = grpc.aio.insecure_channel(grpc_address)
        self.stub = backend_pb2_grpc.BackendServiceStub(self.channel)

    async def llama_server(self, text: str) -> int:
        """The very body the service sends its llama-server for the same request: only the way in differs."""
        request = GenerationRequest.from_proto(generate_pb2.GenerateRequest(
            model="bench", prompt=text, sampling=generate_pb2.SamplingParams(max_tokens=self.max_tokens)))
        body = {**completion_body(request, self.config, text, self.max_tokens, 0), "stream": False}
        reply = await self.server.post("/completion", json=body)
        return reply.json()["tokens_predicted"]

    async def grpc(self, text: str) -> int:
        reply = await self.stub.Generate(generate_pb2.GenerateRequest(
            model="bench", prompt=text, sampling=generate_pb2.SamplingParams(max_tokens=self.max_tokens)), timeout=300)
        return reply.usage.completion_tokens

    async def shim_http(self, text: str) -> int:
        reply = await self.shim.post("/v1/completions", json={"model": "bench", "prompt": text,
                                                             "max_tokens": self.max_tokens, "temperature": 0})
        return reply.json()["usage"]["completion_tokens"]

    async def close(self) -> None:
        await self.server.aclose()
        await self.shim.aclose()
        await self.channel.close()


async def ttft_grpc(stub, text: str) -> float:
    """Time to the first streamed text; the stream is read to its end, so the next request finds the slot free."""
    start_at, first = time.perf_counter(), None
    async for message in stub.GenerateStream(generate_pb2.GenerateRequest(
            model="bench", prompt=text, sampling=generate_pb2.SamplingParams(max_tokens=4)), timeout=300):
        if first is None and message.HasField("delta") and message.delta.text:
            first = time.perf_counter()
    return ((first or time.perf_counter()) - start_at) * 1000


async def prompt_cache(contenders: Contenders, rounds: int) -> dict:
    """TTFT of a prompt of ~1,000 tokens, then of another sharing all but its last words, through the service."""
    firsts, seconds = [], []
    for r in range(rounds):
        prefix = " ".join(f"{WORDS[(i * 3 + r) % len(WORDS)]} {i + r * 1000}" for i in range(135))
        firsts.append(await ttft_grpc(contenders.stub, prefix + " and so the first question ends"))
        seconds.append(await ttft_grpc(contenders.stub, prefix + " while the second one differs"))
    first, second = statistics.median(firsts), statistics.median(seconds)
    return {"first_ttft_ms": round(first, 2), "second_ttft_ms": round(second, 2), "ratio": round(second / first, 3)}


async def measure(contenders: Contenders, texts: list[str], rounds: int, levels: list[int]) -> dict[str, list[dict]]:
    ways = {"llama-server": contenders.llama_server, "grpc": contenders.grpc, "shim": contenders.shim_http}
    for one in ways.values():  # warm every path once
        await load(texts[:2], 2, one)
    runs: dict[str, list[dict]] = {}
    for _ in range(rounds):
        for c in levels:
            for name, one in ways.items():
                runs.setdefault(f"{name} c={c}", []).append(await load(texts, c, one))
    return runs


def median_row(results: list[dict]) -> dict:
    speeds = sorted(r["tokens_per_s"] for r in results)
    return {"tokens_per_s": round(statistics.median(speeds), 1), "min": speeds[0], "max": speeds[-1],
            "tokens": results[0]["tokens"], "runs": len(results)}


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, help="GGUF to serve (default: build a random one of --shape)")
    parser.add_argument("--shape", choices=["small", "tiny"], default="small")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads, on both sides")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args(argv)
    slots = max(args.concurrency)
    texts = prompts(args.prompts)
    with tempfile.TemporaryDirectory(prefix="forgeway-bench-") as tmp:
        tmp = Path(tmp)
        gguf = args.gguf or build_gguf(args.shape, tmp)
        config = {"name": "bench", "source": str(gguf), "n_ctx": N_CTX, "n_threads": args.threads,
                  "instances": slots, "max_queue": 256}
        server_port, service_port, gateway_port, http_port = (free_port("127.0.0.1") for _ in range(4))
        # llama-server alone, with the very flags the service gives its child
        alone = start(command(find_binary(None), ModelConfig(**config), gguf, server_port), tmp / "alone.log")
        service = start([sys.executable, "-m", "forgeway.cli", "serve", "llamacpp", "--port", str(service_port),
                         "--metrics-port", "-1", "--home", str(tmp / "home"), "--models", json.dumps([config])],
                        tmp / "service.log")
        gateway = start([sys.executable, "-m", "forgeway.cli", "serve", "gateway", "--port", str(gateway_port),
                         "--http-port", str(http_port), "--metrics-port", "-1", "--home", str(tmp / "home")],
                        tmp / "gateway.log", {"FORGEWAY_BACKENDS": json.dumps({"llamacpp": f"127.0.0.1:{service_port}"})})
        try:
            wait_http(f"http://127.0.0.1:{server_port}/health")
            wait_serving(f"127.0.0.1:{service_port}", 120, service, tmp / "service.log")
            wait_serving(f"127.0.0.1:{gateway_port}", 120, gateway, tmp / "gateway.log")
            wait_http(f"http://127.0.0.1:{http_port}/readyz")

            async def run():
                contenders = Contenders(f"http://127.0.0.1:{server_port}", f"127.0.0.1:{service_port}",
                                        f"http://127.0.0.1:{http_port}", args.max_tokens, ModelConfig(**config))
                try:
                    runs = await measure(contenders, texts, args.rounds, args.concurrency)
                    cache = await prompt_cache(contenders, args.rounds)
                finally:
                    await contenders.close()
                return runs, cache

            runs, cache = asyncio.run(run())
        finally:
            for process in (gateway, service, alone):
                stop(process)

    rows = {name: median_row(results) for name, results in runs.items()}
    verdict = {}
    print(f"{'configuration':22} {'tokens/s':>9} {'min..max':>13} {'vs llama-server':>16}")
    for c in args.concurrency:
        bases = [r["tokens_per_s"] for r in runs[f"llama-server c={c}"]]
        for way in ("llama-server", "grpc", "shim"):
            row = rows[f"{way} c={c}"]
            # the median of each round's ratio to llama-server in that round: drift between rounds cancels out
            row["ratio"] = round(statistics.median(
                r["tokens_per_s"] / b for r, b in zip(runs[f"{way} c={c}"], bases, strict=True)), 3)
            verdict[f"{way} c={c}"] = row["ratio"]
            print(f"{way + ' c=' + str(c):22} {row['tokens_per_s']:9.1f} {row['min']:6.0f}..{row['max']:<6.0f} "
                  f"{row['ratio']:16.3f}")
    print(f"prompt cache: TTFT {cache['first_ttft_ms']:.1f} ms, then {cache['second_ttft_ms']:.1f} ms sharing the "
          f"prefix ({cache['ratio']:.3f}x; target <= 0.3)")
    print("targets: grpc >= 0.95x and shim >= 0.9x llama-server at every concurrency")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    out = RESULTS if args.gguf or args.shape == "small" else RESULTS.with_name(f"llamacpp_overhead-{args.shape}.json")
    out.write_text(json.dumps({
        "benchmark": "llamacpp_overhead", "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg(),
                    "python": platform.python_version()},
        "model": str(args.gguf) if args.gguf else f"random {args.shape} Llama (f16 GGUF)",
        "prompts": args.prompts, "max_tokens": args.max_tokens, "rounds": args.rounds, "threads": args.threads,
        "slots": slots, "results": rows, "prompt_cache": cache, "verdict": verdict,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
