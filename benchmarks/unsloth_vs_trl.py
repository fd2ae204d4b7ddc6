"""QLoRA SFT through the Unsloth trainer service vs the same run through the TRL trainer service: steps/s and peak
GPU memory, same run, same machine, same data and hyperparameters.

  trl      `forgeway serve trl` from this environment (.venv)
  unsloth  `forgeway serve unsloth` from .venv-unsloth (`make unsloth-env`)
Each service runs as its own process, one at a time, and trains the same request (4-bit nf4 with double quant, LoRA)
on a base model (default: forgeway.testing's tiny llama; --base-model for a bigger local one). Steps/s: from the
progress events' timestamps, skipping the first WARM steps. Peak memory: the GPU's used memory above its idle level
(nvidia-smi, polled), so it includes the CUDA context. Without a GPU it says so and writes that to the JSON;
--cpu runs the comparison on the CPU anyway (Unsloth's CPU fallback; peak memory is then the process's RSS).
Writes benchmarks/results/unsloth_vs_trl.json (--cpu: unsloth_vs_trl_cpu.json).

    .venv/bin/python benchmarks/unsloth_vs_trl.py [--steps 60] [--base-model PATH] [--cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc  # noqa: E402
import psutil  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402

from forgeway.testing import wait_serving  # noqa: E402
from forgeway.services.unsloth import environment  # noqa: E402
from forgeway.server.ports import free_port  # noqa: E402
from forgeway.v1 import backend_pb2_grpc, capabilities_pb2, common_pb2, train_pb2  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WARM = 5
TEXT = [{"text": f"Note {i}: the cat sat on the mat, looked at the small dog by the door, and thought about "
                 f"dinner for a while before going to sleep in the sun." * 4} for i in range(256)]


def gpu() -> str | None:
    """The GPU's name, or None where there is none."""
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    names = done.stdout.strip().splitlines()
    return names[0] if done.returncode == 0 and names else None


def gpu_used_mib() -> float:
    done = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                          capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[0])


class PeakMemory(threading.Thread):
    """Polls GPU memory used (above the level before start) or, on CPU, the service process's RSS."""

    def __init__(self, pid: int, on_gpu: bool):
        super().__init__(daemon=True)
        self.pid, self.on_gpu = pid, on_gpu
        self.idle = gpu_used_mib() if on_gpu else 0.0
        self.peak = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        process = psutil.Process(self.pid)
        while not self.done.wait(0.1):
            try:
                used = gpu_used_mib() - self.idle if self.on_gpu else process.memory_info().rss / 2**20
            except (psutil.Error, IndexError, ValueError):
                continue
            self.peak = max(self.peak, used)


def start(kind: str, python: str, home: Path, roots: list[Path]) -> tuple[subprocess.Popen, str]:
    port = free_port("127.0.0.1")
    command = [python, "-m", "forgeway.cli", "serve", kind, "--port", str(port), "--host", "127.0.0.1", "--home",
               str(home), "--metrics-port", "-1", "--log-format", "text", "--allowed-roots",
               json.dumps([str(r) for r in roots])]
    log = (home / f"{kind}.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(address, 600, process, home / f"{kind}.log")
    except BaseException:
        process.kill()
        raise
    return process, address


def train_request(base: Path, steps: int, on_gpu: bool) -> train_pb2.TrainRequest:
    source = train_pb2.DatasetSource()
    for row in TEXT:
        struct = struct_pb2.Struct()
        struct.update(row)
        source.inline.rows.append(struct)
    return train_pb2.TrainRequest(
        base_model=str(base), method=train_pb2.TRAINING_METHOD_SFT, dataset=source,
        hyperparameters=train_pb2.Hyperparameters(max_steps=steps, batch_size=4 if on_gpu else 2,
                                                  max_seq_length=256 if on_gpu else 64, learning_rate=2e-4, seed=42),
        lora=train_pb2.LoraParams(r=16, alpha=32, dropout=0.0),
        quantization=train_pb2.QuantizationParams(quantization=common_pb2.QUANTIZATION_4BIT_NF4, double_quant=True))


async def run(address: str, request: train_pb2.TrainRequest) -> tuple[float, str]:
    """Steady-state steps/s of one Train call, and the device the service says it trains on."""
    times: dict[int, float] = {}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        caps = await stub.Capabilities(capabilities_pb2.CapabilitiesRequest())
        device = f"{caps.hardware.device} {caps.hardware.accelerator}".strip()
        async for response in stub.Train(request, timeout=3600):
            event = response.event
            if event.WhichOneof("kind") == "progress" and event.progress.HasField("loss"):
                times.setdefault(event.progress.step, event.time.ToNanoseconds() / 1e9)
            if event.WhichOneof("kind") == "state" and event.state.state == 4:  # FAILED
                raise RuntimeError(event.state.message)
    stamps = [times[s] for s in sorted(times)]
    return (len(stamps) - 1 - WARM) / (stamps[-1] - stamps[WARM]), device


def measure(kind: str, python: str, root: Path, base: Path, steps: int, on_gpu: bool) -> dict:
    home = root / kind
    home.mkdir()
    process, address = start(kind, python, home, [base.parent])
    peak = PeakMemory(process.pid, on_gpu)
    peak.start()
    try:
        steps_per_s, device = asyncio.run(run(address, train_request(base, steps, on_gpu)))
    finally:
        peak.done.set()
        peak.join()
        process.terminate()
        process.wait(60)
    figures = {"steps_per_s": round(steps_per_s, 3), "peak_memory_mib": round(peak.peak, 1), "device": device}
    print(f"{kind} ({device}): {figures['steps_per_s']} steps/s, peak {'GPU memory' if on_gpu else 'RSS'} "
          f"{figures['peak_memory_mib']} MiB")
    if on_gpu and not device.startswith("cuda"):
        raise RuntimeError(f"{kind} trains on {device}, not the GPU: its environment has a CPU-only torch")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--base-model", type=Path, help="a local model folder (default: the tiny llama)")
    parser.add_argument("--cpu", action="store_true", help="without a GPU, compare on the CPU anyway")
    args = parser.parse_args(argv)
    device = gpu()
    out = RESULTS / ("unsloth_vs_trl.json" if device or not args.cpu else "unsloth_vs_trl_cpu.json")
    report: dict = {"benchmark": "unsloth_vs_trl", "gpu": device, "steps": args.steps, "warm_steps": WARM,
                    "machine": {"platform": platform.platform(), "python": platform.python_version(),
                                "cpus": os.cpu_count()}}
    unsloth_python = environment.unsloth_python()
    if device is None and not args.cpu:
        report["skipped"] = "no GPU on this machine (nvidia-smi finds none): nothing measured; --cpu compares on CPU"
    elif unsloth_python is None:
        report["skipped"] = ".venv-unsloth is absent (`make unsloth-env` builds it): nothing measured"
    if "skipped" in report:
        print(report["skipped"])
    else:
        root = Path(tempfile.mkdtemp(prefix="unsloth-bench-"))
        if args.base_model:
            base = args.base_model.resolve()
        else:
            from forgeway.testing import build_tiny_llama

            base = build_tiny_llama(root / "models" / "tiny")
        report["model"] = str(args.base_model or "forgeway.testing tiny llama")
        report["request"] = {"method": "sft", "quantization": "nf4 double quant", "lora_r": 16,
                             "batch_size": 4 if device else 2, "max_seq_length": 256 if device else 64}
        results = {"trl": measure("trl", sys.executable, root, base, args.steps, device is not None),
                   "unsloth": measure("unsloth", str(unsloth_python), root, base, args.steps, device is not None)}
        trl, uns = results["trl"], results["unsloth"]
        results["speedup"] = round(uns["steps_per_s"] / trl["steps_per_s"], 3)
        results["memory_ratio"] = round(uns["peak_memory_mib"] / trl["peak_memory_mib"], 3)
        report["results"] = results
        print(f"unsloth/trl: {results['speedup']}x steps/s, {results['memory_ratio']}x peak memory")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
