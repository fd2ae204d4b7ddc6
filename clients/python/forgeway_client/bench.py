"""LlamaForge's benchmark through Forgeway: prompts x iterations -> seconds, tokens and tokens/s (its result shape)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Client


def timed_run(client: Client, model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """One streamed generation, timed here (wall clock, including the network): tokens are the server's count."""
    start = time.perf_counter()
    first = None
    with client.stream(model, prompt, max_tokens=max_tokens) as stream:
        for _ in stream:
            first = first or time.perf_counter()
        result = stream.final
    elapsed = time.perf_counter() - start
    tokens = result.usage.completion_tokens if result is not None else 0
    text = result.text if result is not None else stream.text
    return {
        "time": elapsed,
        "tokens": tokens,
        "characters": len(text),
        "tokens_per_second": tokens / elapsed if elapsed > 0 else 0.0,
        "time_to_first_token": (first - start) if first is not None else elapsed,
        "served_by": result.served_by if result is not None else "",
    }


def benchmark(client: Client, model: str, prompts: Sequence[str], *, iterations: int = 3, max_tokens: int = 100,
              warmup: bool = True) -> dict[str, Any]:
    """Run every prompt `iterations` times; LlamaForge's result dict (model, backend, iterations, max_tokens,
    prompts[{prompt, runs, metrics}], overall), plus time to first token per run."""
    if isinstance(prompts, str) or not prompts:
        raise ValueError("prompts: give a list of at least one prompt")
    if iterations < 1 or max_tokens < 1:
        raise ValueError("iterations: at least 1" if iterations < 1 else "max_tokens: at least 1")
    if warmup:
        timed_run(client, model, prompts[0], min(10, max_tokens))
    results: dict[str, Any] = {"model": model, "backend": "", "iterations": iterations, "max_tokens": max_tokens,
                               "prompts": []}
    total_tokens, total_time, runs_done = 0, 0.0, 0
    for prompt in prompts:
        runs = [timed_run(client, model, prompt, max_tokens) for _ in range(iterations)]
        times = [r["time"] for r in runs]
        tokens = [r["tokens"] for r in runs]
        results["prompts"].append({"prompt": prompt, "runs": runs, "metrics": {
            "avg_time": statistics.mean(times),
            "min_time": min(times),
            "max_time": max(times),
            "std_dev_time": statistics.stdev(times) if len(times) > 1 else 0.0,
            "avg_tokens": statistics.mean(tokens),
            "avg_tokens_per_second": statistics.mean(tokens) / statistics.mean(times) if statistics.mean(times) > 0
            else 0.0,
            "avg_time_to_first_token": statistics.mean(r["time_to_first_token"] for r in runs),
        }})
        total_tokens += sum(tokens)
        total_time += sum(times)
        runs_done += len(runs)
        results["backend"] = results["backend"] or runs[-1]["served_by"].split("/")[0]
    results["overall"] = {"runs": runs_done, "total_tokens": total_tokens, "total_time": total_time,
                          "avg_tokens_per_second": total_tokens / total_time if total_time > 0 else 0.0}
    return results
