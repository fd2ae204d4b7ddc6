"""The `forgeway` command: serve one service, run the local stack, build the demo model, and the client commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def _serve(name: str, argv: list[str]) -> int:
    from forgeway.server import registry
    from forgeway.server.logs import configure_logging
    from forgeway.server.server import serve
    from forgeway.server.settings import SettingsError, build_settings

    try:
        cls = registry.load(name)
    except registry.UnknownService as exc:
        print(f"forgeway serve: {exc}", file=sys.stderr)
        return 2
    try:
        settings = build_settings(cls.Settings, argv, prog=f"forgeway serve {name}")
    except SettingsError as exc:
        print(f"forgeway serve {name}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(cls(settings)))
    except SettingsError as exc:  # settings that only fail when used (unreadable TLS files)
        print(f"forgeway serve {name}: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve_help(missing: bool) -> int:
    """`forgeway serve --help`: the services, what each is and needs, and how to see one's settings."""
    from forgeway.server import registry

    stream = sys.stderr if missing else sys.stdout
    print("usage: forgeway serve SERVICE [--setting value ...]\n", file=stream)
    print("Runs one service as a gRPC server. Services:", file=stream)
    for name in sorted(registry.available()):
        about, needs = registry.ABOUT.get(name, ("out-of-tree backend (entry point)", "its package"))
        print(f"  {name:<10} {about}\n  {'':<10} needs: {needs}", file=stream)
    print("\n`forgeway serve SERVICE --help` lists that service's settings (flags, FORGEWAY_* variables, YAML).",
          file=stream)
    print("LlamaForge's `forgeway serve [--host H] [--port P] [--model M]` runs the local stack instead (see "
          "`forgeway serve --port 8000 --help`).", file=stream)
    if missing:
        print("forgeway serve: a SERVICE is required", file=stream)
    return 2 if missing else 0


def _llamaforge_serve(argv: list[str], config: str | None) -> int:
    """LlamaForge's `serve [--host --port --model]`: the local stack (`forgeway up`) with its OpenAI-compatible HTTP
    API on HOST:PORT, and MODEL loaded through the gateway as the LlamaForge config describes it (path, backend,
    parameters) unless a backend already serves it."""
    parser = argparse.ArgumentParser(prog="forgeway serve", description=_llamaforge_serve.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface every service listens on")
    parser.add_argument("--port", type=int, default=8000, help="the OpenAI-compatible HTTP port")
    parser.add_argument("--model", help="model to load once the stack serves (a LlamaForge config entry or a "
                                        "served name)")
    args = parser.parse_args(argv)
    from forgeway.up import StackSettings, run_stack

    def preload(target: str) -> bool:
        from forgeway.compat.llamaforge import LlamaForge

        forge = LlamaForge(config, target=target)
        if forge.load_model(args.model):
            print(f"serving {args.model} on http://{args.host}:{args.port}/v1", flush=True)
            return True
        print(f"forgeway serve: cannot load {args.model!r}: {forge.last_error}", file=sys.stderr)
        return False

    return run_stack(StackSettings(host=args.host, http_port=args.port), on_ready=preload if args.model else None)


def _llamaforge_serve_argv(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """(global flags + "serve", serve's flags) when the command is `serve` followed by a flag other than --help."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] == "--config" else 1
    if i + 1 < len(argv) and argv[i] == "serve" and argv[i + 1].startswith("--") and argv[i + 1] != "--help":
        return argv[:i + 1], argv[i + 1:]
    return None


def _demo_model(out: Path | None, max_seconds: float) -> int:
    from forgeway.demo.build import build_demo_model
    from forgeway.demo.embedding import build_demo_embedding
    from forgeway.server.settings import default_home

    path = build_demo_model(out or default_home() / "models" / "demo", max_seconds=max_seconds)
    print(path)
    # the embedding model and reranker served beside it (hf serves the model store), each built in a second
    print(build_demo_embedding(path.parent / "demo-embed"))
    print(build_demo_embedding(path.parent / "demo-rerank", seed=1, task="rerank"))
    return 0


def main(argv: list[str] | None = None) -> int:
    from forgeway.client import cli as client_cli
    from forgeway.compat.llamaforge import commands as llamaforge_config

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="forgeway", description="Train and serve language models over one gRPC contract.")
    parser.add_argument("--config", help="LlamaForge's configuration file (env LLAMAFORGE_CONFIG) for `config` and "
                                         "`serve --model`")
    parser.add_argument("--verbose", action="store_true", dest="global_verbose",
                        help="debug logging; usage and timings of generations on stderr")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run one service (gateway, hf, llamacpp, openai, trl, unsloth, echo); "
                                              "LlamaForge's `serve --host --port --model` runs the local stack",
                                add_help=False)
    serve.add_argument("service", nargs="?")
    commands.add_parser("up", help="run the local stack, each service its own supervised process", add_help=False)
    demo = commands.add_parser("demo-model", help="build (once) the demo model, the demo-embed embedding model "
                                                  "and the demo-rerank reranker that `make up` serves")
    demo.add_argument("--out", type=Path, help="where to write it (default FORGEWAY_HOME/models/demo)")
    demo.add_argument("--max-seconds", type=float, default=180.0, help="training time budget")
    commands.add_parser("services", help="list the service names `serve` accepts")
    commands.add_parser("export-gguf", help="write a GGUF of a Llama-family model or adapter (llama.cpp serves it)",
                        add_help=False)
    commands.add_parser("train-worker", help="run one prepared training job (trainers' launchers start it)",
                        add_help=False)
    llamaforge_config.register(commands)
    client_cli.add_commands(commands)  # generate/run, chat, bench, embed, rerank, train, jobs, models, backends

    llamaforge_serve = _llamaforge_serve_argv(argv)
    if llamaforge_serve is not None:  # `serve` then flags and no SERVICE: argparse would read --port's value as one
        args, rest = parser.parse_known_args(llamaforge_serve[0])
        return _llamaforge_serve(llamaforge_serve[1], args.config)
    args, rest = parser.parse_known_args(argv)
    if args.global_verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if hasattr(args, "verbose"):
            args.verbose = True
    if client_cli.is_client_command(args):
        return client_cli.run_command(args, rest)
    if args.command == "serve":
        if args.service in (None, "-h", "--help"):
            return _serve_help(args.service is None and not rest)
        return _serve(args.service, rest)
    if args.command == "train-worker":
        from forgeway.services.training.worker import main as worker_main

        return worker_main(rest)
    if args.command == "export-gguf":
        from forgeway.services.llamacpp.export import main as export_main

        return export_main(rest)
    if args.command == "up":
        from forgeway.up import main as up_main

        return up_main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "config":
        return llamaforge_config.run(args)
    if args.command == "demo-model":
        return _demo_model(args.out, args.max_seconds)
    if args.command == "services":
        from forgeway.server import registry

        for name, target in sorted(registry.available().items()):
            print(f"{name}\t{target}")
        return 0
    return 2


def entrypoint() -> None:
    raise SystemExit(main())


if __name__ == "__main__":
    entrypoint()
