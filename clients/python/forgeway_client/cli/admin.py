"""`forgeway models list|load|unload|delete|export|download`, `forgeway backends` (every backend: available, health,
breaker, load) and LlamaForge's `forgeway list models|backends`."""

from __future__ import annotations

import argparse
import json
import sys

from .common import client, key_value, print_json, table


def run_models(args: argparse.Namespace) -> int:
    with client(args) as sdk:
        if args.action == "list":
            models = sdk.models.list()
            if args.json:
                print_json(models)
            else:
                table("models", ["name", "backend", "task", "loaded", "context", "dims", "quantization", "chat",
                                 "adapters", "aliases", "source"],
                      [(m.name, m.backend, m.task, yes(m.loaded), m.context_length or "", dims(m), m.quantization,
                        yes(m.chat), ", ".join(m.adapters), ", ".join(m.aliases), m.source) for m in models])
            return 0
        if args.action == "load":
            model = sdk.models.load(args.name, args.source or "", backend=args.backend, task=args.task,
                                    quantization=args.quantization, base_model=args.base_model,
                                    options=dict(args.option or ()))
            print_json(model) if args.json else print(f"loaded {model.name} on {model.backend or 'a backend'}")
            return 0
        if args.action == "delete":
            return delete_model(sdk, args)
        if args.action == "download":
            checkpoint = (args.job, args.checkpoint) if args.job else None
            path = sdk.models.download(args.name, args.dest, checkpoint=checkpoint)
            print_json({"downloaded": args.name or args.job, "path": str(path)}) if args.json else print(
                f"downloaded {args.name or args.job} to {path}")
            return 0
        if args.action == "export":
            exported = sdk.models.export(args.name, args.format, output_name=args.output_name, outtype=args.outtype)
            print_json(exported) if args.json else print(
                f"exported {args.name} to {exported.model.name} ({exported.size_bytes} bytes at {exported.path})")
            return 0
        sdk.models.unload(args.name)
        print_json({"unloaded": args.name}) if args.json else print(f"unloaded {args.name}")
        return 0


def delete_model(sdk, args: argparse.Namespace) -> int:
    """Delete a store entry after the user types its name again (or with --yes); a mismatch deletes nothing."""
    if not args.yes:
        try:
            typed = input(f"delete model-store entry {args.name!r} and its files? type its name to confirm: ")
        except EOFError:
            typed = ""
        if typed.strip() != args.name:
            print(f"forgeway models delete: not confirmed; {args.name} kept (pass --yes to skip the question)",
                  file=sys.stderr)
            return 1
    sdk.models.delete(args.name)
    print_json({"deleted": args.name}) if args.json else print(f"deleted {args.name}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """LlamaForge's `list RESOURCE`: the same tables as `models list` and `backends`, or the gateway's plugins (what
    can run, then each model's pipeline); LlamaForge's benchmark command plugin is `forgeway bench`."""
    if args.resource == "models":
        args.action = "list"
        return run_models(args)
    if args.resource == "backends":
        return run_backends(args)
    with client(args) as sdk:
        listing = sdk.plugins.list()
    if args.json:
        print_json(listing)
        return 0
    table("plugins", ["name", "kind", "source", "options", "description"],
          [(p.name, p.kind, p.source, ", ".join(p.options), p.description) for p in listing.available]
          + [("benchmark", "commands", "builtin", "", "`forgeway bench`: prompts x iterations -> tokens/s")])
    table("pipelines", ["model", "position", "name", "kind", "enabled", "options"],
          [(e.model, e.position, e.name, e.kind, yes(e.enabled), json.dumps(e.options)) for e in listing.entries])
    return 0


def dims(model) -> str:
    """An embedding model's vector length and its shorter Matryoshka lengths: "32 (8, 16)"; "" for other models."""
    if not model.dimensions:
        return ""
    shorter = ", ".join(str(d) for d in model.matryoshka_dimensions)
    return f"{model.dimensions} ({shorter})" if shorter else str(model.dimensions)


def run_backends(args: argparse.Namespace) -> int:
    with client(args) as sdk:
        rows = sdk.status()
    if args.json:
        print_json(rows)
        return 0
    table(f"backends behind {args.target or sdk.target}",
          ["address", "backend", "available", "health", "breaker", "in flight", "queue", "models", "methods"],
          [(r.address or sdk.target, r.backend, usable(r), r.health, r.breaker or "-", r.load.in_flight,
            r.load.queue_depth, ", ".join(r.models), ", ".join(r.methods)) for r in rows])
    return 0 if any(usable(r) == "yes" for r in rows) else 1


def usable(row) -> str:
    """Whether requests can go there now: it reports itself available, is SERVING and its breaker lets calls in."""
    if row.health != "SERVING":
        return f"no: health {row.health}"
    if not row.available:
        return f"no: {row.reason}"
    return "no: breaker open" if row.breaker == "open" else "yes"


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def register(commands, parents, one_line_errors) -> None:
    models = one_line_errors(commands.add_parser("models", help="list, load, unload, delete, export or download models"))
    actions = models.add_subparsers(dest="action", required=True,
                                    metavar="{list,load,unload,delete,export,download}")
    one_line_errors(actions.add_parser("list", parents=parents, help="every model the endpoint serves"))
    load = one_line_errors(actions.add_parser("load", parents=parents, help="load a model (or an adapter)"))
    load.add_argument("name", metavar="NAME", help="name to serve it under")
    load.add_argument("source", metavar="SOURCE", nargs="?", help="path, hub id or model-store name (default: NAME)")
    load.add_argument("--backend", default="", help="backend kind to load it on (hf, llamacpp, ...)")
    load.add_argument("--task", help="text-generation, summarization, extractive-question-answering, embedding, "
                                     "rerank")
    load.add_argument("--quantization", choices=("none", "nf4", "fp4", "int8", "gguf"))
    load.add_argument("--base-model", default="", help="for an adapter: the loaded model it attaches to")
    load.add_argument("-o", "--option", action="append", type=key_value, metavar="KEY=VALUE",
                      help="backend option (llama.cpp: n_ctx, n_threads, n_batch, n_gpu_layers, ...)")
    unload = one_line_errors(actions.add_parser("unload", parents=parents, help="unload a model or adapter"))
    unload.add_argument("name", metavar="NAME")
    delete = one_line_errors(actions.add_parser(
        "delete", parents=parents, help="delete a model-store entry (refused while it is loaded)"))
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("-y", "--yes", action="store_true", help="do not ask to type the name again")
    export = one_line_errors(actions.add_parser(
        "export", parents=parents, help="convert a model-store entry into a new entry (GGUF for llama.cpp)"))
    export.add_argument("name", metavar="NAME")
    export.add_argument("--format", default="gguf", choices=("gguf",), help="format to write (default gguf)")
    export.add_argument("--output-name", default="", help="name of the new store entry (default: NAME-gguf)")
    export.add_argument("--outtype", default="", choices=("f32", "f16", "q8_0"),
                        help="GGUF matrix type (default f16)")
    download = one_line_errors(actions.add_parser(
        "download", parents=parents, help="download a model-store entry (or a job's checkpoint) to a folder"))
    download.add_argument("name", metavar="NAME", help="model-store entry (\"\" with --job)")
    download.add_argument("dest", metavar="DEST", help="folder to write (created, or its files replaced)")
    download.add_argument("--job", default="", help="download this job's checkpoint instead")
    download.add_argument("--checkpoint", default="", help="with --job: checkpoint-N (default: the latest)")
    for parser in (models, *actions.choices.values()):
        parser.set_defaults(handler=run_models, command="models")

    backends = one_line_errors(commands.add_parser(
        "backends", parents=parents, help="every backend: available, health, breaker, load, models, methods"))
    backends.set_defaults(handler=run_backends, command="backends")

    listing = one_line_errors(commands.add_parser(
        "list", parents=parents, help="LlamaForge's list: models (as `models list`), backends (as `backends`), plugins"))
    listing.add_argument("resource", choices=("models", "backends", "plugins"))
    listing.set_defaults(handler=run_list, command="list")
