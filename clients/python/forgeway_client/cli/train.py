"""`forgeway train` with a live progress bar (Ctrl-C or --detach detaches), `forgeway jobs list|show|watch|cancel`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from forgeway.core.enums import METHOD

from .common import client, console, fmt_float, fmt_seconds, key_value, print_json, table

EXPORTS = ("adapter", "merged", "gguf")


def follow(job: Any, as_json: bool) -> int:
    """Show a job's events until it ends (progress bar, or JSON lines); Ctrl-C detaches. Exit 0 when it succeeded."""
    try:
        if as_json:
            for event in job.events():
                print_json(event, lines=True)
        else:
            _progress(job)
    except KeyboardInterrupt:
        job.detach()
        print(f"detached from {job.id}; it keeps running. Re-attach: forgeway jobs watch {job.id} "
              f"--after {job.last_sequence}", file=sys.stderr)
        return 0
    return 0 if job.final_state == "succeeded" else 1


def _progress(job: Any) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
               TextColumn("loss {task.fields[loss]}"), TextColumn("ETA {task.fields[eta]}"))
    with Progress(*columns, console=console(stderr=True), transient=False) as bar:
        task = bar.add_task(job.id, total=None, loss="-", eta="-")

        def say(text: str) -> None:  # whole lines, never wrapped, never read as rich markup
            bar.console.print(text, soft_wrap=True, markup=False, highlight=False)

        for event in job.events():
            if event.kind == "progress":
                p = event.progress
                fields = {"loss": fmt_float(p.loss)} if p.loss is not None else {}
                bar.update(task, completed=p.step, total=p.total_steps or None, eta=fmt_seconds(p.eta_seconds) or "-",
                           **fields)
            elif event.kind == "state":
                message = " ".join(event.message.split())  # one line, however the trainer wrote it
                say(f"{job.id}: {event.state}" + (f" ({message})" if message not in ("", event.state) else ""))
            elif event.kind == "fallback":
                fb = event.fallback
                say(f"{job.id}: fallback from {fb.requested} to {fb.used}: {fb.reason}")
            elif event.kind == "checkpoint":
                say(f"{job.id}: checkpoint at step {event.checkpoint.step}: {event.checkpoint.path}")
            elif event.kind == "artifact":
                art = event.artifact
                say(f"{job.id}: model {art.model_name} ({art.format}) at {art.path}")
            elif event.kind == "log" and event.level in ("warning", "error"):
                say(f"{job.id}: {event.level}: {event.message}")


def run_train(args: argparse.Namespace) -> int:
    with client(args) as sdk:
        dataset: Any = args.dataset
        if args.upload:
            dataset = sdk.upload_dataset(args.upload)
            print(f"uploaded {args.upload} as {dataset.id} ({dataset.rows} rows)", file=sys.stderr)
        if dataset is None:
            from forgeway.client.errors import invalid_argument

            raise invalid_argument("dataset", "give --dataset (a path on the trainer, hub name or ds-... id) or "
                                              "--upload")
        lora = None
        if args.lora_r or args.lora_alpha or args.lora_dropout is not None or args.lora_target:
            from forgeway.client import LoRA

            lora = LoRA(r=args.lora_r or 16, alpha=args.lora_alpha or 32,
                        dropout=args.lora_dropout if args.lora_dropout is not None else 0.05,
                        target_modules=tuple(args.lora_target or ()))
        options = {name: getattr(args, name) for name in (
            "task", "epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate",
            "warmup_ratio", "max_seq_length", "seed", "precision", "save_steps", "quantization", "beta",
            "num_generations", "max_prompt_length", "max_completion_length", "split", "percent", "max_samples")}
        options = {k: v for k, v in options.items() if v is not None}
        request = dict(
            method=args.method, lora=lora, lr_scheduler=args.lr_scheduler,
            double_quant=args.double_quant, loss_type=args.loss_type, reward_functions=args.reward or (),
            reward_model=args.reward_model, output_name=args.output_name, export=args.export or (),
            backend=args.trainer, allow_fallback=False if args.no_fallback else None,
            column_mapping=dict(args.column) if args.column else None, config_name=args.config_name,
            resume_from=tuple(args.resume_from.partition(":")[::2]) if args.resume_from else None,
            **algorithm_knobs(args.knob or ()), **options)
        if args.dry_run:
            advice = sdk.jobs.validate(args.base_model, dataset, **request)
            if args.json:
                print_json({"valid": True, "advice": advice})
            else:
                print("valid: the trainer would start this job" + "".join(f"\nadvice: {a}" for a in advice))
            return 0
        job = sdk.train(args.base_model, dataset, **request)
        if args.detach:
            job.detach()
            if args.json:
                print_json({"job_id": job.id})
            else:
                print(job.id)
                print(f"training in the background; follow it: forgeway jobs watch {job.id}", file=sys.stderr)
            return 0
        return follow(job, args.json)


def run_jobs(args: argparse.Namespace) -> int:
    with client(args) as sdk:
        if args.action == "list":
            jobs = sdk.jobs.list(state=args.state, limit=args.limit)
            if args.json:
                print_json(jobs)
            else:
                table("jobs", ["id", "state", "method", "backend", "base model", "step", "loss", "model", "created"],
                      [job_row(j) for j in jobs])
            return 0
        if args.action == "show":
            job = sdk.jobs.get(args.job_id)
            if args.json:
                print_json(job)
            else:
                row = job_row(job)
                table(job.id, ["field", "value"], [*zip(["id", "state", "method", "backend", "base model", "step",
                                                          "loss", "model", "created"], row, strict=True),
                                                    ("error", job.error), ("last sequence", job.last_sequence)])
            return 0 if job.state != "failed" else 1
        if args.action == "cancel":
            job = sdk.jobs.cancel(args.job_id)
            print_json(job) if args.json else print(f"cancel requested: {job.id} ({job.state})")
            return 0
        return follow(sdk.job(args.job_id, after=args.after), args.json)


def algorithm_knobs(pairs) -> dict[str, dict[str, Any]]:
    """--knob gbmpo.divergence=l2kl ... -> {"gbmpo": {"divergence": "l2kl"}} (values parsed as JSON where they are)."""
    import json

    from forgeway.client.errors import invalid_argument

    knobs: dict[str, dict[str, Any]] = {}
    for key, value in pairs:
        message, _, knob = key.partition(".")
        if not knob:
            raise invalid_argument("--knob", f"{key!r}: write MESSAGE.KNOB=VALUE (gbmpo.divergence=l2kl)")
        try:
            knobs.setdefault(message, {})[knob] = json.loads(value)
        except ValueError:
            knobs.setdefault(message, {})[knob] = value
    return knobs


def reward(text: str) -> tuple[str, float]:
    name, sep, weight = text.rpartition("=")
    try:
        return (name, float(weight)) if sep and name else (text, 0.0)
    except ValueError:
        return text, 0.0


def job_row(job: Any) -> list[Any]:
    progress = job.progress
    step = f"{progress.step}/{progress.total_steps}" if progress else ""
    loss = (progress.loss if progress.loss is not None else progress.metrics.get("train_loss")) if progress else None
    return [job.id, job.state, job.method, job.backend, job.base_model, step, fmt_float(loss),
            job.artifact.model_name if job.artifact else "",
            job.created.strftime("%Y-%m-%d %H:%M:%S") if job.created else ""]


def register(commands, parents, one_line_errors) -> None:
    train = one_line_errors(commands.add_parser("train", parents=parents,
                                                help="fine-tune a model; shows live progress (Ctrl-C detaches)"))
    train.add_argument("base_model", metavar="BASE_MODEL", help="hub id, path on the trainer, or model-store name")
    data = train.add_argument_group("dataset")
    data.add_argument("-d", "--dataset", help="path on the trainer, hub dataset name, or uploaded ds-... id")
    data.add_argument("--upload", metavar="FILE", help="upload this local jsonl/json/csv/parquet file and train on it")
    data.add_argument("--column", action="append", type=key_value, metavar="FROM=TO", help="rename a column")
    data.add_argument("--split")
    data.add_argument("--percent", type=float)
    data.add_argument("--max-samples", type=int)
    data.add_argument("--config-name", help="a hub dataset's configuration (subset)")
    method = train.add_argument_group("method")
    method.add_argument("--method", default="sft", help=", ".join(METHOD.names))
    method.add_argument("--knob", action="append", type=key_value, metavar="MESSAGE.KNOB=VALUE",
                        help="an AlignTune algorithm's knob as MethodParams names it: gbmpo.divergence=l2kl, "
                             "pace.rho_min=0.9, mirror.coefficient=1e-4, meta_es.population=4 (repeatable)")
    method.add_argument("--task", help="text-generation, summarization, extractive-question-answering")
    method.add_argument("--beta", type=float)
    method.add_argument("--loss-type", default="")
    method.add_argument("--num-generations", type=int)
    method.add_argument("--max-prompt-length", type=int)
    method.add_argument("--max-completion-length", type=int)
    method.add_argument("--reward", action="append", type=reward, metavar="NAME[=WEIGHT]",
                        help="reward function by registered name, e.g. length:200=0.5 (repeatable)")
    method.add_argument("--reward-model", default="")
    hyper = train.add_argument_group("hyperparameters")
    hyper.add_argument("--epochs", type=float)
    hyper.add_argument("--max-steps", type=int)
    hyper.add_argument("--batch-size", type=int)
    hyper.add_argument("--gradient-accumulation-steps", type=int)
    hyper.add_argument("--learning-rate", type=float)
    hyper.add_argument("--lr-scheduler", default="")
    hyper.add_argument("--warmup-ratio", type=float)
    hyper.add_argument("--max-seq-length", type=int)
    hyper.add_argument("--seed", type=int)
    hyper.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"))
    hyper.add_argument("--save-steps", type=int)
    peft = train.add_argument_group("LoRA and quantization")
    peft.add_argument("--lora-r", type=int, help="train a LoRA adapter of this rank")
    peft.add_argument("--lora-alpha", type=int)
    peft.add_argument("--lora-dropout", type=float)
    peft.add_argument("--lora-target", action="append", help="module to adapt (repeatable)")
    peft.add_argument("--quantization", choices=("nf4", "fp4", "int8"))
    peft.add_argument("--double-quant", action="store_true")
    out = train.add_argument_group("output and trainer")
    out.add_argument("--output-name", default="", help="model-store name of the result (default: the job id)")
    out.add_argument("--export", action="append", choices=EXPORTS, help="artifact format (repeatable)")
    out.add_argument("--trainer", default="auto", choices=("auto", "trl", "unsloth"), help="trainer backend")
    out.add_argument("--no-fallback", action="store_true", help="fail instead of falling back to another trainer")
    out.add_argument("--resume-from", metavar="JOB[:CHECKPOINT]",
                     help="start from a checkpoint of an earlier job (its latest when no checkpoint is named)")
    out.add_argument("--detach", action="store_true", help="print the job id and return; the job keeps running")
    out.add_argument("--dry-run", action="store_true", help="only check the request as the trainer would (fields, "
                                                            "dataset rows, base model, disk); create no job")
    train.set_defaults(handler=run_train, command="train")

    jobs = one_line_errors(commands.add_parser("jobs", help="list, show, watch or cancel jobs"))
    actions = jobs.add_subparsers(dest="action", required=True, metavar="{list,show,watch,cancel}")
    listing = one_line_errors(actions.add_parser("list", parents=parents, help="jobs, newest first"))
    listing.add_argument("--state", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    listing.add_argument("--limit", type=int, default=0, help="list at most this many, newest first (0: all of them, "
                                                              "page by page)")
    for name, text in (("show", "one job's record"), ("watch", "follow a job's progress (re-attach)"),
                       ("cancel", "stop a job at its next step")):
        action = one_line_errors(actions.add_parser(name, parents=parents, help=text))
        action.add_argument("job_id", metavar="JOB_ID")
        if name == "watch":
            action.add_argument("--after", type=int, default=0, help="only events after this sequence number")
    for parser in (jobs, *actions.choices.values()):
        parser.set_defaults(handler=run_jobs, command="jobs")
