"""Aggregate tokens/s of the hf service at concurrency 1, 4 and 16 versus plain model.generate one by one.

The service runs as its own process (`forgeway serve hf`) and is called over real gRPC on loopback; the
baseline runs the same requests one after another through `model.generate` in this process, in the same run.
Both use the same torch thread count. Prints the ratios and writes benchmarks/results/hf_batching.json.

    .venv/bin/python benchmarks/hf_batching.py [--model DIR] [--requests 16] [--max-tokens 64] [--threads 1]
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
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from forgeway.testing import wait_serving  # noqa: E402
from forgeway.server.ports import free_port  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, generate_pb2  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "hf_batching.json"
WORDS = ("river", "mill", "bridge", "harbour", "gull", "net", "boat", "stone", "market", "lantern", "forest",
         "window", "garden", "letter", "train", "winter", "candle", "valley", "tower", "island")


def prompts(count: int) -> list[str]:
    return [f"The {WORDS[i % len(WORDS)]} near the {WORDS[(i * 7 + 3) % len(WORDS)]} was number {i}, and then"
            for i in range(count)]


def baseline(model_dir: Path, texts: list[str], max_tokens: int) -> tuple[float, int]:
    """Plain transformers: each request alone through model.generate (greedy). Returns (seconds, tokens)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    model.generate(**tokenizer(texts[0], return_tensors="pt"), max_new_tokens=4, do_sample=False)  # warm up
    tokens = 0
    start = time.perf_counter()
    for text in texts:
        inputs = tokenizer(text, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        tokens += next((i + 1 for i, t in enumerate(new) if t in eos), len(new))
    return time.perf_counter() - start, tokens


async def through_service(address: str, texts: list[str], max_tokens: int, concurrency: int) -> tuple[float, int]:
    """The same requests over gRPC, `concurrency` in flight at a time. Returns (seconds, completion tokens)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for text in texts:
            queue.put_nowait(text)
        tokens = 0

        async def worker() -> None:
            nonlocal tokens
            while not queue.empty():
                text = queue.get_nowait()
                request = generate_pb2.GenerateRequest(
                    model="bench", prompt=text, sampling=generate_pb2.SamplingParams(max_tokens=max_tokens))
                reply = await stub.Generate(request, timeout=600)
                tokens += reply.usage.completion_tokens

        await stub.Generate(generate_pb2.GenerateRequest(model="bench", prompt=texts[0],
                                                         sampling=generate_pb2.SamplingParams(max_tokens=4)))
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start, tokens


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def start_service(model_dir: Path, home: Path, threads: int, slots: int) -> tuple[subprocess.Popen, str]:
    port = free_port("127.0.0.1")
    command = [sys.executable, "-m", "forgeway.cli", "serve", "hf", "--port", str(port), "--metrics-port", "-1",
               "--home", str(home), "--model", str(model_dir), "--model-name", "bench", "--torch-threads",
               str(threads), "--max-concurrency", str(slots), "--log-level", "WARNING"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, 180, process)
    except BaseException:
        process.kill()
        raise
    return process, address


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model folder (default: build the tiny Llama)")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for both sides")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement; the median is kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="forgeway-bench-") as tmp:
        model_dir = args.model
        if model_dir is None:
            from forgeway.testing import build_tiny_llama

            model_dir = build_tiny_llama(Path(tmp) / "tiny")
        texts = prompts(args.requests)
        process, address = start_service(model_dir, Path(tmp) / "home", args.threads, max(16, args.requests))
        try:
            runs: dict[str, list[float]] = {"generate": []}
            for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits both sides alike
                seconds, tokens = baseline(model_dir, texts, args.max_tokens)
                runs["generate"].append(tokens / seconds)
                for concurrency in (1, 4, 16):
                    seconds, tokens = asyncio.run(through_service(address, texts, args.max_tokens, concurrency))
                    runs.setdefault(f"service_c{concurrency}", []).append(tokens / seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
    tps = {name: statistics.median(values) for name, values in runs.items()}
    ratios = {f"c{c}": tps[f"service_c{c}"] / tps["generate"] for c in (1, 4, 16)}
    result = {
        "benchmark": "hf_batching",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": args.threads,
                    "torch": torch.__version__, "load_average_at_end": os.getloadavg()[0]},
        "requests": args.requests, "max_tokens": args.max_tokens, "repeats": args.repeats,
        "tokens_per_second": tps, "runs": runs, "ratio_vs_generate": ratios,
        "targets": {"c16_at_least": 5.0, "c1_at_least": 0.85},
        "meets_targets": ratios["c16"] >= 5.0 and ratios["c1"] >= 0.85,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"plain generate, one by one: {tps['generate']:8.1f} tokens/s")
    for c in (1, 4, 16):
        print(f"service, concurrency {c:2d}:   {tps[f'service_c{c}']:8.1f} tokens/s  ({ratios[f'c{c}']:.2f}x)")
    print(f"targets (c16 >= 5x, c1 >= 0.85x): {'met' if result['meets_targets'] else 'NOT met'}; wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
