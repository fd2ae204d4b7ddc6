"""Streaming time to first token and tokens/s through the HTTP shim vs direct gRPC to the same target, same run;
plus requests/s of short unary completions both ways.

The target is `forgeway serve echo` (token delay 0: the shim's own cost dominates) or, with --hf, `forgeway serve hf`
on the tiny Llama. The shim runs as its own process (`python -m forgeway.gateway.http`); both clients run here.
Prints shim/direct ratios and writes benchmarks/results/http_shim[_hf].json.

With --vs-llamacpp: requests/s of short completions (official `openai` client, AsyncOpenAI) through Forgeway's
shim (`forgeway serve gateway` with its HTTP API, in front of `forgeway serve llamacpp`) vs llama-cpp-python's own
OpenAI server on the same GGUF, same threads, concurrency 1 and 16, in interleaved rounds; medians and
shim/server ratios, written to benchmarks/results/http_shim_vs_llamacpp[-small].json.

    .venv/bin/python benchmarks/http_shim.py [--hf] [--requests 40] [--tokens 256] [--concurrency 16]
    .venv/bin/python benchmarks/http_shim.py --vs-llamacpp [--shape tiny|small] [--short-requests 64] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
import httpx
import openai

from forgeway.testing import ServiceProcess, free_port
from forgeway.v1 import backend_pb2_grpc, generate_pb2

RESULTS = Path(__file__).parent / "results"
LLAMACPP_MODEL, LLAMACPP_N_CTX = "tiny", 512  # --vs-llamacpp: the model's name on both servers, its context
WORDS = ("river", "mill", "bridge", "harbour", "gull", "net", "boat", "stone", "market", "lantern")


def prompt(words: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(words))


def summary(runs: list[tuple[float, float, int]]) -> dict:
    """runs: (ttft s, total s, tokens) per request."""
    ttft = sorted(r[0] for r in runs)
    rates = [r[2] / r[1] for r in runs if r[1] > 0]
    return {"requests": len(runs), "ttft_p50_ms": round(statistics.median(ttft) * 1000, 3),
            "ttft_p90_ms": round(ttft[int(0.9 * (len(ttft) - 1))] * 1000, 3),
            "tokens_per_s_p50": round(statistics.median(rates), 1), "tokens": sum(r[2] for r in runs)}


async def grpc_stream(stub, model: str, text: str, tokens: int) -> tuple[float, float, int]:
    request = generate_pb2.GenerateRequest(model=model, prompt=text,
                                           sampling=generate_pb2.SamplingParams(max_tokens=tokens))
    start = time.perf_counter()
    first, count = 0.0, 0
    async for message in stub.GenerateStream(request, timeout=120):
        if message.HasField("final"):
            count = message.final.usage.completion_tokens
        elif message.delta.text and not first:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start, count


async def http_stream(http: httpx.AsyncClient, url: str, model: str, text: str,
                      tokens: int) -> tuple[float, float, int]:
    body = {"model": model, "prompt": text, "max_tokens": tokens, "stream": True,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first, count = 0.0, 0
    async with http.stream("POST", f"{url}/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                count = event["usage"]["completion_tokens"]
            elif event["choices"] and event["choices"][0]["text"] and not first:
                first = time.perf_counter() - start
    return first, time.perf_counter() - start, count


async def openai_stream(client: openai.AsyncOpenAI, model: str, text: str, tokens: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first, count = 0.0, 0
    stream = await client.completions.create(model=model, prompt=text, max_tokens=tokens, stream=True,
                                             stream_options={"include_usage": True})
    async for chunk in stream:
        if chunk.usage:
            count = chunk.usage.completion_tokens
        elif chunk.choices and chunk.choices[0].text and not first:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start, count


async def requests_per_second(call, requests: int, concurrency: int) -> float:
    queue = iter(range(requests))

    async def worker():
        for _ in queue:
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return round(requests / (time.perf_counter() - start), 1)


async def measure(target: str, url: str, model: str, args) -> dict:
    text = prompt(args.prompt_words)
    short = generate_pb2.GenerateRequest(model=model, prompt="hello there",
                                         sampling=generate_pb2.SamplingParams(max_tokens=2))
    async with grpc.aio.insecure_channel(target) as channel, httpx.AsyncClient(timeout=120) as http:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0, http_client=http)
        ways = {"grpc": lambda: grpc_stream(stub, model, text, args.tokens),
                "http": lambda: http_stream(http, url, model, text, args.tokens),
                "openai_client": lambda: openai_stream(client, model, text, args.tokens)}
        for way in ways.values():  # warm up channels, connections and the backend
            for _ in range(3):
                await way()
        runs: dict[str, list] = {name: [] for name in ways}
        for _ in range(args.requests):  # interleaved, so drift on a shared machine hits every way alike
            for name, way in ways.items():
                runs[name].append(await way())
        streaming = {name: summary(r) for name, r in runs.items()}
        unary = {
            "grpc": await requests_per_second(lambda: stub.Generate(short, timeout=60), args.unary, args.concurrency),
            "http": await requests_per_second(
                lambda: http.post(f"{url}/v1/completions", json={"model": model, "prompt": "hello there",
                                                                 "max_tokens": 2}), args.unary, args.concurrency),
        }
    return {"streaming": streaming, "unary_requests_per_s": unary}


async def short_completions(bases: dict[str, str], texts: list[str], args) -> dict:
    """Requests/s of short completions per way and concurrency: one AsyncOpenAI client per way, interleaved rounds
    (the order of the ways alternates between rounds), medians with their spread."""
    clients = {name: openai.AsyncOpenAI(base_url=base, api_key="bench", max_retries=0, timeout=120)
               for name, base in bases.items()}

    async def measure_once(client: openai.AsyncOpenAI, requests: int, concurrency: int) -> tuple[float, float, float]:
        """(requests/s, median latency in ms, completion tokens per request)."""
        order, latencies, tokens = itertools.cycle(texts), [], []

        async def one() -> None:
            start = time.perf_counter()
            reply = await client.completions.create(model=LLAMACPP_MODEL, prompt=next(order), temperature=0,
                                                    max_tokens=args.short_tokens)
            latencies.append(time.perf_counter() - start)
            tokens.append(reply.usage.completion_tokens)

        rate = await requests_per_second(one, requests, concurrency)
        return rate, statistics.median(latencies) * 1000, sum(tokens) / len(tokens)

    runs: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
    try:
        for client in clients.values():  # warm up connections, the gateway's channel and both models
            await measure_once(client, 32, 16)
        for round_ in range(args.rounds):
            for concurrency in (1, 16):
                names = list(clients) if round_ % 2 == 0 else list(reversed(clients))
                for name in names:
                    runs.setdefault((name, concurrency), []).append(
                        await measure_once(clients[name], args.short_requests, concurrency))
    finally:
        for client in clients.values():
            await client.close()
    rows: dict[str, dict] = {}
    for (name, concurrency), results in runs.items():
        rates = sorted(r[0] for r in results)
        rows.setdefault(f"concurrency_{concurrency}", {})[name] = {
            "requests_per_s": round(statistics.median(rates), 1), "min": rates[0], "max": rates[-1],
            "latency_p50_ms": round(statistics.median(r[1] for r in results), 2),
            "completion_tokens_per_request": round(statistics.mean(r[2] for r in results), 2)}
    return rows


def vs_llamacpp(args) -> int:
    """The shim through the gateway in front of `forgeway serve llamacpp` vs `python -m llama_cpp.server`."""
    import llama_cpp
    from forgeway.testing import start_llama_server
    from llama_cpp.server.settings import ModelSettings
    from llamacpp_overhead import build_gguf, cpu_model, prompts

    # Both serve with llama_cpp.server's default threads (cores // 2 to decode, all cores for prompts).
    threads = {key: ModelSettings.model_fields[key].default for key in ("n_threads", "n_threads_batch")}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="forgeway-bench-") as tmp:
        gguf = build_gguf(args.shape, Path(tmp))  # in a child process: no torch in this one
        models = [{"name": LLAMACPP_MODEL, "source": str(gguf), "n_ctx": LLAMACPP_N_CTX, "max_queue": 64, **threads}]
        with ServiceProcess("llamacpp", "--models", json.dumps(models), "--grace-seconds", "1", timeout=120) as backend:
            http_port = free_port("127.0.0.1")
            gateway_env = {"FORGEWAY_BACKENDS": json.dumps({"llamacpp": backend.address}),
                           "FORGEWAY_HTTP_PORT": str(http_port)}
            with ServiceProcess("gateway", "--grace-seconds", "1", env=gateway_env):
                upstream = start_llama_server(gguf, model=LLAMACPP_MODEL, n_ctx=LLAMACPP_N_CTX)
                try:
                    bases = {"forgeway_shim": f"http://127.0.0.1:{http_port}/v1",
                             "llama_cpp_server": upstream.base_url}
                    rows = asyncio.run(short_completions(bases, prompts(64), args))
                finally:
                    upstream.stop()

    ratios = {level: round(row["forgeway_shim"]["requests_per_s"] / row["llama_cpp_server"]["requests_per_s"], 3)
              for level, row in rows.items()}
    result = {
        "benchmark": "http_shim --vs-llamacpp", "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_before": load_before,
                    "load_average_after": os.getloadavg(), "python": platform.python_version(),
                    "llama_cpp_python": llama_cpp.__version__, "openai": openai.__version__},
        "model": f"random {args.shape} Llama (f32 GGUF), n_ctx {LLAMACPP_N_CTX}", "threads": threads,
        "ways": {"forgeway_shim": "openai client -> gateway HTTP shim -> gateway gRPC -> forgeway serve llamacpp",
                 "llama_cpp_server": "openai client -> python -m llama_cpp.server"},
        "settings": {"max_tokens": args.short_tokens, "temperature": 0, "requests": args.short_requests,
                     "rounds": args.rounds},
        "requests_per_s": rows, "ratios_shim_over_llama_cpp_server": ratios,
    }
    suffix = "" if args.shape == "tiny" else f"-{args.shape}"
    out = RESULTS / f"http_shim_vs_llamacpp{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{'requests/s (p50 latency)':24} {'forgeway shim':>30} {'llama_cpp.server':>30} {'shim/server':>12}")
    for level, row in rows.items():
        cells = [f"{w['requests_per_s']:6.1f} ({w['min']:.0f}..{w['max']:.0f}) {w['latency_p50_ms']:6.2f} ms"
                 for w in (row["forgeway_shim"], row["llama_cpp_server"])]
        print(f"{level:24} {cells[0]:>30} {cells[1]:>30} {ratios[level]:12.3f}")
    print("completion tokens/request: " + ", ".join(
        f"{name} {w['completion_tokens_per_request']}" for name, w in rows["concurrency_1"].items()))
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hf", action="store_true", help="the tiny Llama on `forgeway serve hf` instead of echo")
    parser.add_argument("--requests", type=int, default=40, help="streamed requests per way")
    parser.add_argument("--tokens", type=int, default=256, help="max_tokens of each streamed request")
    parser.add_argument("--prompt-words", type=int, default=64)
    parser.add_argument("--unary", type=int, default=400, help="short unary requests per way")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrency of the unary requests")
    parser.add_argument("--vs-llamacpp", action="store_true",
                        help="requests/s of short completions: the shim vs llama-cpp-python's server, same GGUF")
    parser.add_argument("--shape", choices=["tiny", "small"], default="tiny",
                        help="--vs-llamacpp: the 2-layer test Llama or the random 8-layer one (~26M parameters)")
    parser.add_argument("--short-requests", type=int, default=64, help="--vs-llamacpp: requests per measurement")
    parser.add_argument("--short-tokens", type=int, default=8, help="--vs-llamacpp: max_tokens of each request")
    parser.add_argument("--rounds", type=int, default=7, help="--vs-llamacpp: interleaved rounds; medians reported")
    args = parser.parse_args(argv)
    if args.vs_llamacpp:
        return vs_llamacpp(args)
    if args.hf:
        args.tokens, args.requests, args.unary = min(args.tokens, 64), min(args.requests, 20), min(args.unary, 64)

    with tempfile.TemporaryDirectory(prefix="forgeway-bench-") as tmp:
        if args.hf:
            from forgeway.testing import build_tiny_llama

            model, flags = "tiny", ("--model", str(build_tiny_llama(Path(tmp) / "tiny")), "--model-name", "tiny",
                                    "--torch-threads", "1")
        else:
            model, flags = "echo", ("--token-delay", "0", "--context-length", "100000")
        with ServiceProcess("hf" if args.hf else "echo", *flags, "--grace-seconds", "1", timeout=180) as backend:
            port = free_port("127.0.0.1")
            shim = subprocess.Popen([sys.executable, "-m", "forgeway.gateway.http", "--target", backend.address,
                                     "--port", str(port)], env={**os.environ, "HF_HUB_OFFLINE": "1"})
            try:
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline or shim.poll() is not None:
                        raise RuntimeError("the shim did not become ready")
                    time.sleep(0.1)
                measured = asyncio.run(measure(backend.address, url, model, args))
            finally:
                shim.terminate()
                shim.wait(timeout=15)

    s, u = measured["streaming"], measured["unary_requests_per_s"]
    ratios = {
        "ttft_p50_http_over_grpc": round(s["http"]["ttft_p50_ms"] / s["grpc"]["ttft_p50_ms"], 2),
        "ttft_added_p50_ms": round(s["http"]["ttft_p50_ms"] - s["grpc"]["ttft_p50_ms"], 3),
        "tokens_per_s_http_over_grpc": round(s["http"]["tokens_per_s_p50"] / s["grpc"]["tokens_per_s_p50"], 3),
        "tokens_per_s_openai_client_over_grpc": round(
            s["openai_client"]["tokens_per_s_p50"] / s["grpc"]["tokens_per_s_p50"], 3),
        "unary_rps_http_over_grpc": round(u["http"] / u["grpc"], 3),
    }
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "grpcio": grpc.__version__},
        "target": "hf tiny llama" if args.hf else "echo (token delay 0)",
        "settings": {k: getattr(args, k) for k in ("requests", "tokens", "prompt_words", "unary", "concurrency")},
        **measured, "ratios": ratios,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("http_shim_hf.json" if args.hf else "http_shim.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name, row in s.items():
        print(f"{name:>14}: TTFT p50 {row['ttft_p50_ms']:8.2f} ms  p90 {row['ttft_p90_ms']:8.2f} ms  "
              f"{row['tokens_per_s_p50']:9.1f} tokens/s")
    print(f"unary requests/s at concurrency {args.concurrency}: grpc {u['grpc']}, http {u['http']}")
    for name, value in ratios.items():
        print(f"{name}: {value}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
