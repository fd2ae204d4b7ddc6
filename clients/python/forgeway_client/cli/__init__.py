"""The client commands of `forgeway`: generate/run, chat, bench, summarize, answer, embed, rerank, train, jobs, models,
backends (argparse only here; grpc and rich load when a command runs)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import admin, calculator, embed, generate, readers, train
from .common import connection_flags, execute, one_line_errors


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the client commands on `forgeway`'s subparsers; each sets `handler` (run it with run_command)."""
    parents = [connection_flags()]
    for module in (generate, readers, embed, train, admin, calculator):
        module.register(commands, parents, one_line_errors)


def is_client_command(args: argparse.Namespace) -> bool:
    return callable(getattr(args, "handler", None))


def run_command(args: argparse.Namespace, extra: Sequence[str] = ()) -> int:
    """Run the parsed client command: 0 on success, 1 on an error (one line on stderr), 2 on bad arguments."""
    return execute(args, extra)
