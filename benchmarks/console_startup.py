"""What the console costs the gateway at start-up: the gateway process's time to SERVING (grpc.health.v1) and its
resident memory, with the console (default) and with --no-console, in alternating rounds of the same run; plus, with
the console, the time until its page answers and the memory after one page load.

The gateway routes to one `forgeway serve echo` backend (cheap, so the gateway's own start-up dominates). Prints
medians and console/no-console ratios and writes benchmarks/results/console_startup.json.

    .venv/bin/python benchmarks/console_startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from forgeway.testing import ServiceProcess, echo_process, free_port

RESULTS = Path(__file__).parent / "results"


def start_gateway(backend: str, console: bool, log_dir: Path) -> dict:
    """One gateway start: seconds from launch to SERVING, RSS then; with the console, to its page and RSS after."""
    http_port = free_port("127.0.0.1")
    flags = ["--http-port", str(http_port), "--grace-seconds", "0", *([] if console else ["--no-console"])]
    gateway = ServiceProcess("gateway", *flags, env={"FORGEWAY_BACKENDS": json.dumps({"echo": backend})},
                             log_dir=log_dir, timeout=120)
    start = time.perf_counter()
    gateway.start()
    try:
        gateway.wait_serving()
        serving = time.perf_counter() - start
        process = psutil.Process(gateway.process.pid)
        result = {"serving_s": serving, "rss_mib": process.memory_info().rss / 2**20}
        url = f"http://127.0.0.1:{http_port}/"
        page = httpx.get(url, timeout=60)
        result["page_status"] = page.status_code
        if console:
            if page.status_code != 200 or "gradio" not in page.text.lower():
                raise RuntimeError(f"the console did not answer at {url}: {page.status_code}")
            result["page_s"] = time.perf_counter() - start
            httpx.get(f"{url}config", timeout=60).raise_for_status()
            result["rss_after_page_mib"] = process.memory_info().rss / 2**20
        elif page.status_code != 404:
            raise RuntimeError(f"--no-console still answers {url}: {page.status_code}")
        return result
    finally:
        gateway.stop()


def median(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="starts of each kind, alternating")
    args = parser.parse_args(argv)
    runs: dict[str, list[dict]] = {"console": [], "no_console": []}
    with tempfile.TemporaryDirectory(prefix="forgeway-console-bench-") as scratch, \
            echo_process(log_dir=Path(scratch)) as echo:
        start_gateway(echo.address, True, Path(scratch))  # warm the page cache (imports) before measuring
        for round_ in range(args.rounds):
            for kind, console in (("console", True), ("no_console", False))[:: 1 if round_ % 2 == 0 else -1]:
                runs[kind].append(start_gateway(echo.address, console, Path(scratch)))
                print(f"round {round_ + 1} {kind}: {runs[kind][-1]}", flush=True)
    with_console, without = runs["console"], runs["no_console"]
    summary = {
        "no_console": {"serving_s": median(without, "serving_s"), "rss_mib": median(without, "rss_mib")},
        "console": {"serving_s": median(with_console, "serving_s"), "rss_mib": median(with_console, "rss_mib"),
                    "page_s": median(with_console, "page_s"),
                    "rss_after_page_mib": median(with_console, "rss_after_page_mib")},
    }
    summary["ratios"] = {
        "serving_s": round(summary["console"]["serving_s"] / summary["no_console"]["serving_s"], 2),
        "rss_mib": round(summary["console"]["rss_mib"] / summary["no_console"]["rss_mib"], 2),
    }
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(exist_ok=True)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d")}
    (RESULTS / "console_startup.json").write_text(json.dumps(
        {"machine": machine, "rounds": args.rounds, "summary": summary, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
