"""Tokens/s and time to first token through the llama.cpp service versus llama-cpp-python in-process and its server.

Three ways to run the same GGUF, greedy, same prompts, same thread count, in one run on one machine:
  in-process   llama-cpp-python in a child process of its own that does nothing else: Llama.generate's token
               loop (the baseline of every ratio) and Llama.create_completion(stream=True); concurrency 4 is four
               threads sharing the one Llama behind a lock, since a context serves one sequence at a time
  forgeway     `forgeway serve llamacpp` as its own process, over gRPC on loopback: Generate and GenerateStream
  llama_cpp.server  llama-cpp-python's OpenAI-compatible server as its own process, /v1/completions over HTTP
Configurations run in interleaved rounds (load from elsewhere hits all alike); medians are reported with their
spread. Prints ratios against in-process and writes benchmarks/results/llamacpp_overhead.json (-tiny.json for
--shape tiny). No process of the benchmark imports torch: the model is built in a child process.

    .venv/bin/python benchmarks/llamacpp_overhead.py [--gguf PATH | --shape small|tiny] [--requests 4]
        [--rounds 3] [--max-tokens 128] [--threads 1]
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

import httpx  # noqa: E402
import llama_cpp  # noqa: E402

from forgeway.testing import wait_serving  # noqa: E402
from forgeway.up import free_port  # noqa: E402

from llamacpp_contenders import N_CTX, InProcessWorker, forgeway, llama_cpp_server, worker_main  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "llamacpp_overhead.json"
WORDS = ("river", "mill", "bridge", "harbour", "gull", "net", "boat", "stone", "market", "lantern", "forest",
         "window", "garden", "letter", "train", "winter", "candle", "valley", "tower", "island")


def prompts(count: int) -> list[str]:
    return [f"The {WORDS[i % len(WORDS)]} near the {WORDS[(i * 7 + 3) % len(WORDS)]} was number {i}, and then"
            for i in range(count)]


def build_gguf(shape: str, folder: Path) -> Path:
    """A random-weight Llama GGUF: 'small' (8 layers, 512 wide, ~26M parameters) or 'tiny' (the 2-layer test model).

    Built in a child process, so that no process of the benchmark imports torch (it slows llama.cpp down here)."""
    code = f"""
from pathlib import Path
from forgeway.services.llamacpp.export import export_gguf
from forgeway.demo.llama import LlamaShape, init_llama, save_model
from forgeway.demo.tokenizer import train_tokenizer
from forgeway.testing.llama import TINY
size = TINY if {shape!r} == "tiny" else LlamaShape(hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                                                 num_attention_heads=8, num_key_value_heads=4)
tokenizer = train_tokenizer()
model_dir = save_model(init_llama(tokenizer, size, seed=0), tokenizer, Path({str(folder)!r}) / {shape!r})
export_gguf(model_dir, Path({str(folder)!r}) / "{shape}.gguf", "f32")
"""
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return folder / f"{shape}.gguf"


def serve(command: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


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
        fw_port, lcs_port = free_port("127.0.0.1"), free_port("127.0.0.1")
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
            wait_serving(address, 120, ours, tmp / "fw.log")
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
    out = RESULTS if args.gguf or args.shape == "small" else RESULTS.with_name(f"llamacpp_overhead-{args.shape}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "llamacpp_overhead", "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg(),
                    "python": platform.python_version(), "llama_cpp_python": llama_cpp.__version__},
        "model": str(args.gguf) if args.gguf else f"random {args.shape} Llama (f32 GGUF)",
        "requests": args.requests, "rounds": args.rounds, "max_tokens": args.max_tokens, "threads": args.threads,
        "results": rows, "verdict": verdict,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def median_row(results: list[dict]) -> dict:
    speeds = sorted(r["tokens_per_s"] for r in results)
    ttfts = [r["ttft_ms"] for r in results if r["ttft_ms"] is not None]
    return {"tokens_per_s": round(statistics.median(speeds), 1), "tokens_per_s_min": speeds[0],
            "tokens_per_s_max": speeds[-1], "ttft_ms": round(statistics.median(ttfts), 2) if ttfts else None,
            "tokens": sum(r["tokens"] for r in results), "runs": len(results)}


if __name__ == "__main__":
    raise SystemExit(main())
