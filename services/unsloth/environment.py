"""Which environment runs each service of `forgeway up` when the stack has an Unsloth trainer: `unsloth` runs under
.venv-unsloth's Python, every other service under this one. It is up's service_command
(`python -m forgeway.services.unsloth.environment NAME --port PORT ...`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Set by `make up`; by default the .venv-unsloth beside this checkout (an editable install).
PYTHON_ENV = "FORGEWAY_UNSLOTH_PYTHON"
DEFAULT_PYTHON = Path(__file__).resolve().parents[2] / ".venv-unsloth" / "bin" / "python"


def unsloth_python() -> Path | None:
    """.venv-unsloth's interpreter, if it exists."""
    python = Path(os.environ.get(PYTHON_ENV) or DEFAULT_PYTHON)
    return python if python.is_file() and os.access(python, os.X_OK) else None


def command(argv: list[str]) -> list[str]:
    """The `forgeway serve` command line for one service."""
    separate = unsloth_python() if argv[:1] == ["unsloth"] else None
    return [str(separate or sys.executable), "-m", "forgeway.cli", "serve", *argv]


def main(argv: list[str] | None = None) -> int:
    args = command(sys.argv[1:] if argv is None else argv)
    os.execv(args[0], args)
    return 1  # not reached: execv replaces this process


if __name__ == "__main__":
    raise SystemExit(main())
