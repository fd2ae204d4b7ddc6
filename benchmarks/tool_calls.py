"""Cost of tool-call constrained decoding in the hf service: per-token decode time of forced calls vs free text.

Runs HFEngine in-process on a random Llama built offline (the demo tokenizer and its Hermes-style template). The
baseline is the same chat with the same tools rendered, tool_choice none, a fixed max_tokens (the random model rarely
stops early: the tokens it actually generated count). Against it, tool_choice required and a named function, whose
strict arguments (an enum and a maxLength-bounded string) the xgrammar structural tag constrains token by token.
Per-token decode time is (total - time to first token) / (tokens - 1) of each request, so prompt and grammar compile
are left out; grammar compile is timed apart, first (uncached) vs cached. Same engine, same run, interleaved.
Prints ratios and writes benchmarks/results/tool_calls-<device>.json.

    .venv/bin/python benchmarks/tool_calls.py [--device cpu|cuda] [--shape small|large] [--concurrency 1 8]
        [--requests 8] [--max-tokens 96] [--repeats 3] [--threads 1] [--dtype auto|float32|bfloat16] [--out DIR]
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
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from forgeway.core.generation import ChatMessage, GenerationRequest, Sampling  # noqa: E402
from forgeway.core.tools import Tool, ToolChoice  # noqa: E402
from forgeway.demo.llama import LlamaShape, init_llama, save_model  # noqa: E402
from forgeway.demo.tokenizer import train_tokenizer  # noqa: E402
from hf_batching import cpu_name  # noqa: E402  (benchmarks/ is the script's folder)

RESULTS = Path(__file__).parent / "results"
# The demo tokenizer's context is 512 positions; the two-tool prompt takes ~250 of them.
SHAPES = {
    "small": LlamaShape(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=4,
                        num_key_value_heads=2, max_position_embeddings=512),
    "large": LlamaShape(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16, num_attention_heads=16,
                        num_key_value_heads=4, max_position_embeddings=512),
}
CITIES = ("Paris", "Oslo", "Lima", "Cairo", "Quito", "Rome", "Hanoi", "Perth", "Accra", "Dakar", "Riga", "Bern")


def weather(max_length: int = 12) -> dict:
    return {"type": "object", "properties": {"city": {"type": "string", "maxLength": max_length},
                                             "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"], "additionalProperties": False}


TOOLS = (Tool("get_weather", "The weather of a city", weather(), strict=True),
         Tool("get_time", "The time in a zone", {"type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}},
                                                 "required": ["zone"], "additionalProperties": False}, strict=True))
WAYS = {"none": ToolChoice("none"), "required": ToolChoice("required"),
        "function": ToolChoice("function", "get_weather")}


def request(way: str, i: int, max_tokens: int) -> GenerationRequest:
    message = ChatMessage("user", f"What is the weather in {CITIES[i % len(CITIES)]} today?")
    return GenerationRequest(model="bench", messages=(message,), tools=TOOLS, tool_choice=WAYS[way],
                             parallel_tool_calls=False, sampling=Sampling(max_tokens=max_tokens))


async def measure(engine, model, way: str, count: int, max_tokens: int, concurrency: int) -> dict:
    """`count` requests, `concurrency` at a time: per-token decode ms of each, tokens, wall seconds."""
    queue = list(range(count))
    per_token, tokens, finishes = [], 0, {}

    async def worker() -> None:
        nonlocal tokens
        while queue:
            result = await engine.complete(request(way, queue.pop(), max_tokens), model)
            choice = result.choices[0]
            finishes[choice.finish_reason.value] = finishes.get(choice.finish_reason.value, 0) + 1
            tokens += choice.completion_tokens
            if choice.completion_tokens > 1:
                per_token.append((result.total_ms - result.time_to_first_token_ms) / (choice.completion_tokens - 1))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    return {"ms_per_token": statistics.median(per_token), "tokens": tokens, "tokens_per_request": tokens / count,
            "tokens_per_second": tokens / seconds, "finish": finishes}


def compile_times(loaded, repeats: int) -> dict:
    """Tool-call grammar compile: the tokenizer info once, then per new schema (first) and again (cached), ms."""
    from forgeway.services.hf.intake import tool_tag

    start = time.perf_counter()
    compiler = loaded.grammar_compiler()
    setup_ms = (time.perf_counter() - start) * 1000
    first, cached = [], []
    for i in range(repeats):  # a schema not seen before each time, so the first compile is a real one
        tools = (Tool("get_weather", "", weather(20 + i), strict=True), TOOLS[1])
        tag = tool_tag(loaded, GenerationRequest(model="bench", messages=(ChatMessage("user", "hi"),), tools=tools,
                                                 tool_choice=ToolChoice("required"), parallel_tool_calls=False))
        for times in (first, cached):
            start = time.perf_counter()
            compiler.compile_tag(tag)
            times.append((time.perf_counter() - start) * 1000)
    return {"tokenizer_info_ms": setup_ms, "first_ms": statistics.median(first), "cached_ms": statistics.median(cached),
            "first_runs_ms": first, "cached_runs_ms": cached}


async def run(args, model_dir: Path, home: Path) -> dict:
    from forgeway.services.hf.engine import HFEngine
    from forgeway.services.hf.settings import HFSettings

    settings = HFSettings(host="127.0.0.1", port=0, metrics_port=-1, home=home, device=args.device, dtype=args.dtype,
                          torch_threads=args.threads, max_concurrency=max(args.concurrency),
                          models=[{"name": "bench", "path": str(model_dir)}])
    engine = HFEngine(settings)
    await engine.start()
    try:
        model = engine.find_model("bench")
        loaded = engine.served["bench"].runner.loaded
        compiled = await asyncio.to_thread(compile_times, loaded, args.repeats)
        for way in WAYS:  # warm up every path (the call grammars are compiled and cached here)
            await measure(engine, model, way, 1, 8, 1)
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits every way alike
            for concurrency in args.concurrency:
                for way in WAYS:
                    got = await measure(engine, model, way, args.requests, args.max_tokens, concurrency)
                    runs.setdefault(f"{way}_c{concurrency}", []).append(got)
        return {"compile": compiled, "runs": runs, "device_name": str(loaded.device)}
    finally:
        await engine.stop()


def machine(device: str, threads: int) -> dict:
    about = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": threads, "torch": torch.__version__,
             "load_average_at_end": os.getloadavg()[0]}
    if device == "cuda":
        about["gpu"] = torch.cuda.get_device_name(0)
    for name in ("transformers", "xgrammar"):
        try:
            about[name] = version(name)
        except PackageNotFoundError:
            about[name] = "not installed"
    return about


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="small")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=8, help="requests per measurement")
    parser.add_argument("--max-tokens", type=int, default=96, help="of every request (the prompt takes ~250 of 512)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the median is kept")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device")
    with tempfile.TemporaryDirectory(prefix="forgeway-bench-") as tmp:
        tokenizer = train_tokenizer()
        model = init_llama(tokenizer, SHAPES[args.shape])
        params = sum(p.numel() for p in model.parameters())
        model_dir = save_model(model, tokenizer, Path(tmp) / "model")
        del model
        got = asyncio.run(run(args, model_dir, Path(tmp) / "home"))
    keys = list(got["runs"])
    med = {key: {field: statistics.median(r[field] for r in got["runs"][key])
                 for field in ("ms_per_token", "tokens_per_second", "tokens_per_request")} for key in keys}
    ratios = {f"{way}_c{c}": med[f"{way}_c{c}"]["ms_per_token"] / med[f"none_c{c}"]["ms_per_token"]
              for c in args.concurrency for way in WAYS if way != "none"}
    result = {
        "benchmark": "tool_calls",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(args.device, args.threads),
        "device": got["device_name"], "shape": args.shape, "parameters": params, "dtype": args.dtype,
        "requests": args.requests, "max_tokens": args.max_tokens, "repeats": args.repeats,
        "concurrency": args.concurrency, "medians": med, "per_token_ratio_vs_none": ratios,
        "grammar_compile": got["compile"], "runs": got["runs"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"tool_calls-{args.device}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.shape} Llama ({params / 1e6:.1f}M parameters) on {got['device_name']}, {args.requests} requests "
          f"per measurement, medians of {args.repeats}")
    print(f"{'':24}{'ms/token':>10}{'tokens/s':>10}{'tokens/req':>11}{'ratio':>8}")
    for c in args.concurrency:
        for way in WAYS:
            m = med[f"{way}_c{c}"]
            ratio = f"{ratios[f'{way}_c{c}']:.2f}x" if way != "none" else "base"
            print(f"  c{c:<2} {way:18}{m['ms_per_token']:10.2f}{m['tokens_per_second']:10.1f}"
                  f"{m['tokens_per_request']:11.1f}{ratio:>8}")
    comp = got["compile"]
    print(f"grammar compile: tokenizer info {comp['tokenizer_info_ms']:.1f} ms once; tool tag first "
          f"{comp['first_ms']:.1f} ms, cached {comp['cached_ms']:.3f} ms; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
