"""Texts/s of the hf service's Embed at concurrency 1 and 32 versus SentenceTransformer.encode in this process.

256 short texts, one text per Embed call, through `forgeway serve hf` as its own process over real gRPC on loopback;
the baselines embed the same texts with sentence-transformers in this process, in the same run: all 256 in one
encode call (the batching limit: what perfect batching could reach) and one encode call per text. Both sides use the
same torch thread count and the same model: a MiniLM-L6-shaped BERT (384 wide, 6 layers; random weights, so the
numbers are the architecture's cost, not a trained model's). Target: concurrency 32 at least 0.8x the one-call limit.
Prints the ratios and writes benchmarks/results/embeddings.json.

    .venv/bin/python benchmarks/embeddings.py [--model DIR] [--texts 256] [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from forgeway.v1 import backend_pb2_grpc, embed_pb2  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from hf_batching import cpu_name, start_service  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "embeddings.json"
WORDS = ("river", "mill", "bridge", "harbour", "gull", "net", "boat", "stone", "market", "lantern", "forest",
         "window", "garden", "letter", "train", "winter", "candle", "valley", "tower", "island")
CONCURRENCY = (1, 32)
TARGET = 0.8


def texts(count: int) -> list[str]:
    return [f"The {WORDS[i % len(WORDS)]} by the {WORDS[(i * 7 + 3) % len(WORDS)]}, number {i}." for i in range(count)]


def encode_seconds(model: SentenceTransformer, items: list[str], one_by_one: bool) -> float:
    start = time.perf_counter()
    if one_by_one:
        for text in items:
            model.encode([text])
    else:
        model.encode(items)
    return time.perf_counter() - start


async def service_seconds(address: str, items: list[str], concurrency: int) -> float:
    """Every text in its own Embed call, `concurrency` calls in flight at a time."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        queue: asyncio.Queue[str] = asyncio.Queue()
        for text in items:
            queue.put_nowait(text)

        async def caller() -> None:
            while not queue.empty():
                reply = await stub.Embed(embed_pb2.EmbedRequest(model="bench", texts=[queue.get_nowait()]), timeout=600)
                assert len(reply.embeddings) == 1

        await stub.Embed(embed_pb2.EmbedRequest(model="bench", texts=items[:1]), timeout=600)  # channel up
        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="sentence-transformers folder (default: build the MiniLM shape)")
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, for both sides")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement; the median is kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = texts(args.texts)
    with tempfile.TemporaryDirectory(prefix="forgeway-bench-") as tmp:
        model_dir = args.model
        if model_dir is None:
            from forgeway.demo.embedding import MINILM, build_embedding_model

            model_dir = build_embedding_model(Path(tmp) / "minilm", shape=MINILM)
        model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        model.encode(items[:8])  # warm up
        process, address = start_service(model_dir, Path(tmp) / "home", args.threads, slots=16)
        try:
            runs: dict[str, list[float]] = {"encode_one_call": [], "encode_one_by_one": []}
            for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits every side alike
                runs["encode_one_call"].append(len(items) / encode_seconds(model, items, one_by_one=False))
                runs["encode_one_by_one"].append(len(items) / encode_seconds(model, items, one_by_one=True))
                for c in CONCURRENCY:
                    seconds = asyncio.run(service_seconds(address, items, c))
                    runs.setdefault(f"service_c{c}", []).append(len(items) / seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
    rate = {name: statistics.median(values) for name, values in runs.items()}
    ratios = {"c1_vs_one_by_one": rate["service_c1"] / rate["encode_one_by_one"],
              "c1_vs_one_call": rate["service_c1"] / rate["encode_one_call"],
              "c32_vs_one_call": rate["service_c32"] / rate["encode_one_call"],
              "c32_vs_one_by_one": rate["service_c32"] / rate["encode_one_by_one"]}
    result = {
        "benchmark": "embeddings",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": args.threads,
                    "torch": torch.__version__, "load_average_at_end": os.getloadavg()[0]},
        "model": str(args.model or "MiniLM-L6 shape, random weights"), "texts": len(items), "repeats": args.repeats,
        "texts_per_second": rate, "runs": runs, "ratios": ratios,
        "target": {"c32_vs_one_call_at_least": TARGET}, "meets_target": ratios["c32_vs_one_call"] >= TARGET,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"encode, all {len(items)} in one call:  {rate['encode_one_call']:8.1f} texts/s")
    print(f"encode, one call per text:    {rate['encode_one_by_one']:8.1f} texts/s")
    for c in CONCURRENCY:
        print(f"service, concurrency {c:2d}:       {rate[f'service_c{c}']:8.1f} texts/s  "
              f"({rate[f'service_c{c}'] / rate['encode_one_call']:.2f}x one call, "
              f"{rate[f'service_c{c}'] / rate['encode_one_by_one']:.2f}x one by one)")
    print(f"target (c32 >= {TARGET}x one call): {'met' if result['meets_target'] else 'NOT met'}; wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
