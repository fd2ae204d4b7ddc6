"""LlamaForge's `config get|set|init` for the `forgeway` command (the file Config reads and writes)."""

from __future__ import annotations

import argparse
import json
import sys

from .config import Config


def register(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="LlamaForge's configuration: get KEY, set KEY VALUE, init "
                                                "(dotted keys, e.g. generation.temperature; --config FILE)")
    actions = config.add_subparsers(dest="config_action", required=True, metavar="{get,set,init}")
    get = actions.add_parser("get", help="print a value (JSON for sections)")
    get.add_argument("key")
    put = actions.add_parser("set", help="set a value (parsed as JSON when it is JSON, else kept as text) and save")
    put.add_argument("key")
    put.add_argument("value")
    actions.add_parser("init", help="write LlamaForge's defaults to the file")


def run(args: argparse.Namespace) -> int:
    config = Config(args.config)
    if args.config_action == "get":
        value = config.get(args.key)
        print(json.dumps(value, indent=2) if isinstance(value, (dict, list)) else value)
        return 0 if value is not None else 1
    if args.config_action == "set":
        try:
            value = json.loads(args.value)
        except json.JSONDecodeError:
            value = args.value
        config.set(args.key, value)
    else:
        config.init()
    if not config.save():
        print(f"forgeway config: cannot write {config.path}", file=sys.stderr)
        return 1
    print(f"{args.key} = {json.dumps(value)} in {config.path}" if args.config_action == "set"
          else f"default configuration written to {config.path}", file=sys.stderr)
    return 0
