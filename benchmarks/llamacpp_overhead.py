"""Tokens/s and time to first token through the llama.cpp service versus llama-cpp-python in-process and its server.

Three ways to run the same GGUF, greedy, same prompts, same thread count, in one run on one machine:
  in-process   in this process, Llama.generate's token loop (the baseline of every ratio) and
               Llama.create_completion(stream=True); concurrency 4 is four threads sharing the one Llama behind a
               lock, since a llama.cpp context serves one sequence at a time
  forgeway     `forgeway serve llamacpp` as its own process, over gRPC on loopback: Generate and GenerateStream
  llama_cpp.server  llama-cpp-python's OpenAI-compatible server as its own process, /v1/completions over HTTP
Prints ratios against in-process and writes benchmarks/results/llamacpp_overhead.json.

    .venv/bin/python benchmarks/llamacpp_overhead.py [--gguf PATH | --shape small|tiny] [--requests 8]
        [--max-tokens 128] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc  # noqa: E402
import httpx  # noqa: E402
import llama_cpp  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from forgeway.v1 import backend_pb2_grpc, generate_pb2  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "llamacpp_overhead.json"
WORDS = ("river", "mill", "bridge", "harbour", "gull", "net", "boat", "stone", "market", "lantern", "forest",
         "window", "garden", "letter", "train", "winter", "candle", "valley", "tower", "island")
N_CTX = 512


def prompts(count: int) -> list[str]:
    return [f"The {WORDS[i % len(WORDS)]} near the {WORDS[(i * 7 + 3) % len(WORDS)]} was number {i}, and then"
            for i in range(count)]


def build_gguf(shape: str, folder: Path) -> Path:
    """A random-weight Llama GGUF: 'small' (8 layers, 512 wide, ~26M parameters) or 'tiny' (the 2-layer test model).

    Built in a child process, so that no process of the benchmark imports torch (it slows llama.cpp down here)."""
    code = f"""
from pathlib import Path
from forgeway.services.llamacpp.export import export_gguf
from forgeway.testing.llama import TINY, LlamaShape, init_llama, save_model
from forgeway.testing.tokenizer import train_tokenizer
size = TINY if {shape!r} == "tiny" else LlamaShape(hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                                                 num_attention_heads=8, num_key_value_heads=4)
tokenizer = train_tokenizer()
model_dir = save_model(init_llama(tokenizer, size, seed=0), tokenizer, Path({str(folder)!r}) / {shape!r})
export_gguf(model_dir, Path({str(folder)!r}) / "{shape}.gguf", "f32")
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return folder / f"{shape}.gguf"


def summary(tokens: int, seconds: float, ttfts: list[float]) -> dict:
    return {"tokens": tokens, "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
            "ttft_ms": round(statistics.median(ttfts) * 1000, 2) if ttfts else None}


def run_threads(texts: list[str], concurrency: int, one) -> dict:
    """Run one(text) -> (tokens, ttft) over texts with `concurrency` threads; aggregate tokens/s."""
    results, queue, lock = [], list(texts), threading.Lock()

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                text = queue.pop()
            results.append(one(text))

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summary(sum(r[0] for r in results), time.perf_counter() - start, [r[1] for r in results if r[1]])


def in_process(llm: llama_cpp.Llama, texts: list[str], max_tokens: int, concurrency: int, api: str) -> dict:
    """api 'tokens': Llama.generate's token loop with incremental detokenizing (the floor of any wrapper's cost);
    api 'completion': Llama.create_completion(stream=True), llama-cpp-python's own streaming API."""
    lock = threading.Lock()

    def tokens(text: str) -> tuple[int, float]:
        with lock:
            start, first, count, out = time.perf_counter(), 0.0, 0, codecs.getincrementaldecoder("utf-8")("replace")
            for token in llm.generate(llm.tokenize(text.encode(), special=True), temp=0.0):
                first = first or time.perf_counter()
                if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
                    break
                out.decode(llm.detokenize([token]))
                count += 1
                if count == max_tokens:
                    break
            return count, first - start

    def completion(text: str) -> tuple[int, float]:
        with lock:
            start, first, pieces, finish = time.perf_counter(), 0.0, [], None
            for chunk in llm.create_completion(text, max_tokens=max_tokens, temperature=0.0, stream=True):
                first = first or time.perf_counter()
                pieces.append(chunk["choices"][0]["text"])
                finish = chunk["choices"][0]["finish_reason"] or finish
            count = max_tokens if finish == "length" else len(llm.tokenize("".join(pieces).encode(), add_bos=False))
            return count, first - start

    one = tokens if api == "tokens" else completion
    one(texts[0])  # warm up
    return run_threads(texts, concurrency, one)


class InProcessWorker:
    """The in-process baseline in a child process of its own, so that it competes for the CPU like the servers do."""

    def __init__(self, gguf: Path, threads: int):
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", str(gguf), "--threads", str(threads)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, texts: list[str], max_tokens: int, concurrency: int, api: str) -> dict:
        job = {"texts": texts, "max_tokens": max_tokens, "concurrency": concurrency, "api": api}
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def worker_main(gguf: Path, threads: int) -> int:
    llm = llama_cpp.Llama(str(gguf), n_ctx=N_CTX, n_threads=threads, n_threads_batch=threads, verbose=False)
    for line in sys.stdin:
        job = json.loads(line)
        result = in_process(llm, job["texts"], job["max_tokens"], job["concurrency"], job["api"])
        print(json.dumps(result), flush=True)
    llm.close()
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def forgeway(address: str, texts: list[str], max_tokens: int, concurrency: int, streaming: bool) -> dict:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        sampling = generate_pb2.SamplingParams(max_tokens=max_tokens)

        async def one(text: str) -> tuple[int, float]:
            req = generate_pb2.GenerateRequest(model="bench", prompt=text, sampling=sampling)
            start, first = time.perf_counter(), 0.0
            if not streaming:
                reply = await stub.Generate(req, timeout=600)
                return reply.usage.completion_tokens, 0.0
            async for message in stub.GenerateStream(req, timeout=600):
                if message.WhichOneof("event") == "delta":
                    first = first or time.perf_counter()
                else:
                    return message.final.usage.completion_tokens, first - start
            raise RuntimeError("stream ended without a final message")

        await one(texts[0])  # warm up
        queue, results = list(texts), []

        async def worker():
            while queue:
                results.append(await one(queue.pop()))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return summary(sum(r[0] for r in results), time.perf_counter() - start, [r[1] for r in results if r[1]])


def llama_cpp_server(base: str, tokenize, texts: list[str], max_tokens: int, concurrency: int, streaming: bool) -> dict:
    client = httpx.Client(base_url=base, timeout=600)

    def one(text: str) -> tuple[int, float]:
        body = {"prompt": text, "max_tokens": max_tokens, "temperature": 0.0, "stream": streaming}
        start = time.perf_counter()
        if not streaming:
            return client.post("/v1/completions", json=body).json()["usage"]["completion_tokens"], 0.0
        first, pieces, finish = 0.0, [], None
        with client.stream("POST", "/v1/completions", json=body) as reply:
            for line in reply.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choice = json.loads(line[6:])["choices"][0]
                first = first or time.perf_counter()
                pieces.append(choice["text"])
                finish = choice["finish_reason"] or finish
        return (max_tokens if finish == "length" else len(tokenize("".join(pieces)))), first - start

    one(texts[0])  # warm up
    return run_threads(texts, concurrency, one)


def serve(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_grpc(address: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                if health.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{address} not serving")


def wait_http(base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{base} not serving")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


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
    parser.add_argument("--requests", type=int, default=4, help="requests per configuration and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every configuration; medians reported")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads, everywhere")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # the in-process baseline's child process
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.threads)
    texts = prompts(args.requests)
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="forgeway-bench-") as tmp:
        tmp = Path(tmp)
        gguf = args.gguf or build_gguf(args.shape, tmp)
        fw_port, lcs_port = free_port(), free_port()
        models = [{"name": "bench", "source": str(gguf), "n_ctx": N_CTX, "n_threads": args.threads, "max_queue": 64}]
        ours = serve([sys.executable, "-m", "forgeway.cli", "serve", "llamacpp", "--port", str(fw_port),
                      "--metrics-port", "-1", "--home", str(tmp), "--models", json.dumps(models)], tmp / "fw.log")
        theirs = serve([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--n_ctx", str(N_CTX),
                        "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
                        "--interrupt_requests", "false", "--host", "127.0.0.1", "--port", str(lcs_port)],
                       tmp / "lcs.log")
        baseline_worker = InProcessWorker(gguf, args.threads)
        vocab = llama_cpp.Llama(str(gguf), vocab_only=True, verbose=False)
        try:
            address, base = f"127.0.0.1:{fw_port}", f"http://127.0.0.1:{lcs_port}"
            wait_grpc(address)
            try:
                wait_http(base)
            except TimeoutError:
                print("llama_cpp.server did not start (needs llama-cpp-python[server]: sse-starlette, "
                      f"starlette-context): {(tmp / 'lcs.log').read_text()[-400:]}", file=sys.stderr)
                base = ""
            tokenize = lambda text: vocab.tokenize(text.encode(), add_bos=False)  # noqa: E731
            configs = {}
            for c in (1, 4):
                for api in ("tokens", "completion"):
                    configs[f"in-process {api} c={c}"] = lambda c=c, api=api: baseline_worker.run(
                        texts, args.max_tokens, c, api)
                for streaming, kind in ((True, "stream"), (False, "unary")):
                    configs[f"forgeway {kind} c={c}"] = lambda c=c, s=streaming: asyncio.run(
                        forgeway(address, texts, args.max_tokens, c, s))
                    if base:
                        configs[f"llama_cpp.server {kind} c={c}"] = lambda c=c, s=streaming: llama_cpp_server(
                            base, tokenize, texts, args.max_tokens, c, s)
            for _ in range(args.rounds):  # interleaved, so load from elsewhere hits every configuration alike
                for name, run in configs.items():
                    runs.setdefault(name, []).append(run())
        finally:
            baseline_worker.close()
            stop(ours)
            stop(theirs)

    rows = {name: median_row(results) for name, results in runs.items()}
    baseline = rows["in-process tokens c=1"]["tokens_per_s"]
    print(f"{'configuration':32} {'tokens/s':>9} {'min..max':>15} {'vs in-process':>14} {'TTFT ms':>8}")
    for name, row in sorted(rows.items(), key=lambda kv: (kv[0].split()[-1], kv[0])):
        row["ratio_vs_in_process"] = round(row["tokens_per_s"] / baseline, 3)
        ttft = "" if row["ttft_ms"] is None else f"{row['ttft_ms']:.2f}"
        spread = f"{row['tokens_per_s_min']:.0f}..{row['tokens_per_s_max']:.0f}"
        print(f"{name:32} {row['tokens_per_s']:9.1f} {spread:>15} {row['ratio_vs_in_process']:14.3f} {ttft:>8}")
    ours_tps, server = rows["forgeway stream c=1"]["tokens_per_s"], rows.get("llama_cpp.server stream c=1")
    verdict = {"stream_vs_in_process": round(ours_tps / baseline, 3),
               "stream_vs_llama_cpp_server": round(ours_tps / server["tokens_per_s"], 3) if server else None}
    print(f"streaming through forgeway: {verdict['stream_vs_in_process']:.3f}x in-process (target >= 0.95), "
          f"{verdict['stream_vs_llama_cpp_server']}x llama_cpp.server (target >= 1)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "llamacpp_overhead", "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg(),
                    "python": platform.python_version(), "llama_cpp_python": llama_cpp.__version__},
        "model": str(args.gguf) if args.gguf else f"random {args.shape} Llama (f32 GGUF)",
        "requests": args.requests, "rounds": args.rounds, "max_tokens": args.max_tokens, "threads": args.threads,
        "results": rows, "verdict": verdict,
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


def median_row(results: list[dict]) -> dict:
    speeds = sorted(r["tokens_per_s"] for r in results)
    ttfts = [r["ttft_ms"] for r in results if r["ttft_ms"] is not None]
    return {"tokens_per_s": round(statistics.median(speeds), 1), "tokens_per_s_min": speeds[0],
            "tokens_per_s_max": speeds[-1], "ttft_ms": round(statistics.median(ttfts), 2) if ttfts else None,
            "tokens": sum(r["tokens"] for r in results), "runs": len(results)}


if __name__ == "__main__":
    raise SystemExit(main())
