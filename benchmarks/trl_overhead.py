"""What the TRL service adds to training: steps/s of SFT and DPO through the service vs the same TRL trainer run
directly in-process, same run, same machine, same data and hyperparameters.

  direct   trl.SFTTrainer / trl.DPOTrainer built here, timed by a callback at each optimizer step
  service  the TRL trainer service behind an in-process gRPC server (port 0): Train over a real channel, timed by the progress
           events' timestamps (one per step, as the service sends them)
Steady-state steps/s skips the first WARM steps (dataset prep, first-step allocations) on both sides. Each side runs
ROUNDS times alternately; the median and the best round are reported (on a shared, loaded machine the best round is
the least disturbed one). Target (issue 6): the service within 5% of direct.
Writes benchmarks/results/trl_overhead.json.

    .venv/bin/python benchmarks/trl_overhead.py [--steps 80] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402

from forgeway.v1 import backend_pb2_grpc, train_pb2  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "trl_overhead.json"
WARM = 5
TEXT = [{"text": f"the cat number {i} sat on the mat and looked at the small dog by the door."} for i in range(64)]
PREFERENCES = [{"prompt": f"Question {i}: where did the cat sit?", "chosen": " On the mat, in the sun.",
                "rejected": " Nowhere at all."} for i in range(64)]
BATCH, SEQ, LORA_R, LORA_ALPHA, LR = 2, 64, 8, 16, 1e-4


def rate(times: list[float]) -> float:
    """Steps per second between step WARM and the last step."""
    return (len(times) - 1 - WARM) / (times[-1] - times[WARM])


def direct(method: str, model_dir: Path, steps: int, out: Path) -> float:
    import transformers
    import trl
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from datasets import Dataset

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter())

    common = dict(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
                  logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
                  bf16=False, max_length=SEQ, seed=42)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM")
    if method == "sft":
        trainer = trl.SFTTrainer(model=model, args=trl.SFTConfig(**common), train_dataset=Dataset.from_list(TEXT),
                                 processing_class=tokenizer, peft_config=peft, callbacks=[Clock()])
    else:
        trainer = trl.DPOTrainer(model=model, args=trl.DPOConfig(**common), processing_class=tokenizer,
                                 train_dataset=Dataset.from_list(PREFERENCES), peft_config=peft, callbacks=[Clock()])
    trainer.remove_callback(transformers.PrinterCallback)  # the service prints nothing either
    trainer.train()
    return rate(times)


def train_request(method: str, model_dir: Path, steps: int) -> train_pb2.TrainRequest:
    source = train_pb2.DatasetSource()
    for row in TEXT if method == "sft" else PREFERENCES:
        struct = struct_pb2.Struct()
        struct.update(row)
        source.inline.rows.append(struct)
    return train_pb2.TrainRequest(
        base_model=str(model_dir), method=train_pb2.TRAINING_METHOD_SFT if method == "sft" else
        train_pb2.TRAINING_METHOD_DPO, dataset=source,
        hyperparameters=train_pb2.Hyperparameters(max_steps=steps, batch_size=BATCH, max_seq_length=SEQ,
                                                  learning_rate=LR, seed=42),
        lora=train_pb2.LoraParams(r=LORA_R, alpha=LORA_ALPHA, dropout=0.05))


async def through_service(stub, method: str, model_dir: Path, steps: int) -> float:
    times: dict[int, float] = {}
    async for response in stub.Train(train_request(method, model_dir, steps), timeout=1800):
        event = response.event
        if event.WhichOneof("kind") == "progress" and event.progress.HasField("loss"):
            times.setdefault(event.progress.step, event.time.ToNanoseconds() / 1e9)
        if event.WhichOneof("kind") == "state" and event.state.state == 4:
            raise RuntimeError(event.state.message)
    return rate([times[s] for s in sorted(times)])


def bookkeeping_ms(root: Path, steps: int = 2000) -> float:
    """Milliseconds per step the service adds on the training thread: JobCallback's step check and progress event
    (a JobStore append to SQLite), measured without training, so the figure is steady on a loaded machine."""
    from types import SimpleNamespace

    from forgeway.services.training.jobs import JobStore
    from forgeway.services.training.runner import RunningJob
    from forgeway.services.trl.callbacks import JobCallback

    store = JobStore(root / "bookkeeping.db")
    job = store.create(train_pb2.TrainRequest(base_model="m"), "trl", "sft")
    callback = JobCallback(RunningJob(job.id, store, root / "bookkeeping"))
    args = SimpleNamespace(per_device_train_batch_size=BATCH, gradient_accumulation_steps=1, output_dir=str(root))
    state = SimpleNamespace(global_step=0, max_steps=steps, epoch=0.0)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    logs = {"loss": 0.5, "grad_norm": 0.6, "learning_rate": 1e-4, "entropy": 6.9, "num_tokens": 100.0,
            "mean_token_accuracy": 0.1, "epoch": 0.1}
    callback.on_train_begin(args, state, control)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        state.global_step, state.epoch = step, step / steps
        callback.on_step_end(args, state, control)
        callback.on_log(args, state, control, logs={**logs, "num_tokens": 100.0 * step})
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed / steps * 1000


async def main_async(args) -> dict:
    from forgeway.server.server import start_server
    from forgeway.services.trl.service import TRLService
    from forgeway.services.trl.settings import TRLSettings
    from forgeway.testing import build_tiny_llama

    root = Path(tempfile.mkdtemp(prefix="trl-bench-"))
    model_dir = build_tiny_llama(root / "tiny")
    settings = TRLSettings(home=root / "home", port=0, metrics_port=-1, host="127.0.0.1", log_level="WARNING",
                           allowed_roots=[root])
    running = await start_server(TRLService(settings))
    await running.startup
    results: dict = {}
    async with grpc.aio.insecure_channel(running.address) as channel:
        stub = backend_pb2_grpc.BackendServiceStub(channel)
        for method in ("sft", "dpo"):
            samples: dict[str, list[float]] = {"direct": [], "service": []}
            await asyncio.to_thread(direct, method, model_dir, WARM + 3, root / "warmup")  # imports, caches
            for _ in range(args.rounds):
                samples["direct"].append(await asyncio.to_thread(direct, method, model_dir, args.steps, root / "d"))
                samples["service"].append(await through_service(stub, method, model_dir, args.steps))
            d, s = statistics.median(samples["direct"]), statistics.median(samples["service"])
            best_d, best_s = max(samples["direct"]), max(samples["service"])
            results[method] = {"direct_steps_per_s": round(d, 2), "service_steps_per_s": round(s, 2),
                               "ratio": round(s / d, 3), "best_direct_steps_per_s": round(best_d, 2),
                               "best_service_steps_per_s": round(best_s, 2), "best_ratio": round(best_s / best_d, 3),
                               "samples": {k: [round(v, 2) for v in vs] for k, vs in samples.items()}}
            print(f"{method}: median direct {d:.2f} steps/s, service {s:.2f} steps/s, service/direct {s / d:.3f}; "
                  f"best {best_d:.2f} vs {best_s:.2f}, ratio {best_s / best_d:.3f}")
    await running.drain(grace=1)
    per_step = bookkeeping_ms(root)
    for method, figures in results.items():
        share = per_step / (1000 / figures["best_direct_steps_per_s"])
        figures["bookkeeping_ms_per_step"] = round(per_step, 3)
        figures["bookkeeping_share_of_a_step"] = round(share, 4)
        print(f"{method}: the service's own work per step {per_step:.3f} ms = {share:.2%} of a direct step")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    report = {
        "benchmark": "trl_overhead", "steps": args.steps, "rounds": args.rounds, "warm_steps": WARM,
        "batch_size": BATCH, "max_seq_length": SEQ, "lora_r": LORA_R, "model": "forgeway.testing tiny llama",
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "results": results, "target": "service within 5% of direct (ratio >= 0.95)",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
