"""Shared by the client commands: connection flags, one-line errors, JSON and table output."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

    from forgeway.client import Client

DEBUG_ENV = "FORGEWAY_DEBUG"  # set to 1 to see tracebacks instead of one-line errors


def connection_flags() -> argparse.ArgumentParser:
    """The flags every client command takes (a parent parser)."""
    flags = argparse.ArgumentParser(add_help=False)
    group = flags.add_argument_group("connection")
    group.add_argument("--target", help="gateway (or backend) host:port (env FORGEWAY_TARGET, default localhost:50051)")
    group.add_argument("--api-key", help="API key (env FORGEWAY_API_KEY)")
    group.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --ca-file)")
    group.add_argument("--ca-file", help="PEM roots to verify the server with (implies --tls)")
    group.add_argument("--timeout", type=positive_float, default=300.0,
                       help="deadline of each call in seconds (training and watching have none)")
    group.add_argument("--json", action="store_true", help="machine-readable JSON output")
    return flags


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make a subcommand's usage errors a single line on stderr (exit 2), pointing at --help."""
    def error(message: str) -> NoReturn:
        parser.exit(2, f"{parser.prog}: error: {message} (see `{parser.prog} --help`)\n")

    parser.error = error  # type: ignore[method-assign]
    return parser


def client(args: argparse.Namespace) -> Client:
    from forgeway.client import Client, Tls

    tls = Tls(ca_file=args.ca_file) if args.ca_file else (True if args.tls else None)
    return Client(args.target, api_key=args.api_key, tls=tls, timeout=args.timeout)


def describe(error: Exception, target: str) -> str:
    """One line for an SDK error: what went wrong, in the user's terms."""
    from forgeway.client import APIError, JobFailedError, UnavailableError

    if isinstance(error, UnavailableError):
        if "connect" in error.message.lower():
            return f"cannot reach {target} (is the gateway running? `forgeway up`): {error.message}"
        return f"unavailable: {error.message}"
    if isinstance(error, APIError) and error.code.name == "UNIMPLEMENTED" and error.message == "Method not found!":
        return f"{target} does not serve this call (jobs and datasets need a trainer or the gateway)"
    if isinstance(error, APIError):
        label = {"INVALID_ARGUMENT": "invalid argument", "NOT_FOUND": "not found"}.get(error.code.name,
                                                                                       error.code.name.lower())
        if error.reason == "UNSUPPORTED":
            label = "unsupported"
        return f"{label}: {error.message}"
    if isinstance(error, JobFailedError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def execute(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Run a client command's handler; every failure becomes one line on stderr and a non-zero exit."""
    from forgeway.client import APIError, JobFailedError

    prog = f"forgeway {args.command}"
    if extra:
        print(f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see `{prog} --help`)", file=sys.stderr)
        return 2
    target = args.target or os.environ.get("FORGEWAY_TARGET") or "localhost:50051"
    try:
        return args.handler(args)
    except (APIError, JobFailedError) as error:
        print(f"{prog}: {describe(error, target)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # never a traceback for the user; FORGEWAY_DEBUG=1 shows it
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"{prog}: error: {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_json(value: Any, *, lines: bool = False) -> None:
    """Pretty JSON for one result, or one compact line per item (lines=True) for streams of events."""
    print(json.dumps(jsonable(value), indent=None if lines else 2), flush=True)


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else max(shutil.get_terminal_size((200, 24)).columns, 200)
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    grid = Table(title=Text(title), title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:  # Text: values are shown as they are, never read as rich markup
        grid.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console().print(grid)


def fmt_float(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


Handler = Callable[[argparse.Namespace], int]
