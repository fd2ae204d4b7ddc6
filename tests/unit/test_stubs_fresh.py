"""The committed forgeway/v1 stubs match the protos, and every proto field carries a comment."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "protos"
PROTOS = sorted((PROTO_ROOT / "forgeway" / "v1").glob("*.proto"))
STUBS = ROOT / "forgeway" / "v1"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")

# A field: `[optional|repeated] type name = number [options];`, including `map<k, v> name = n;`.
FIELD = re.compile(
    r"^(optional\s+|repeated\s+)?(map\s*<[^>]+>|[A-Za-z_][\w.]*)\s+[A-Za-z_]\w*\s*=\s*\d+\s*(\[.*\])?\s*;"
)
ENUM_VALUE = re.compile(r"^[A-Za-z_]\w*\s*=\s*-?\d+")
COMMENT = ("//", "/*", "*")
BLOCK = re.compile(r"^(message|oneof|enum|service|extend)\s+\w+\s*\{")


def generate(out: Path) -> None:
    """The Makefile's `protos` command, writing into out instead of the checkout."""
    command = [
        sys.executable, "-m", "grpc_tools.protoc", "-I", "protos",
        f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}",
        *(str(p.relative_to(ROOT)) for p in PROTOS),
    ]  # fmt: skip
    done = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"protoc failed:\n{done.stderr}"


def test_protos_exist() -> None:
    assert PROTOS, f"no .proto files under {PROTO_ROOT}"


def test_committed_stubs_match_protos(tmp_path: Path) -> None:
    generate(tmp_path)
    fresh_dir = tmp_path / "forgeway" / "v1"
    fresh = {p.name for p in fresh_dir.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    committed = {p.name for p in STUBS.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    hint = f"run `make protos` (generated with grpcio-tools {version('grpcio-tools')})"
    assert not fresh - committed, f"stubs missing from forgeway/v1: {sorted(fresh - committed)}; {hint}"
    assert not committed - fresh, f"stubs with no .proto left: {sorted(committed - fresh)}; delete them"
    stale = sorted(name for name in fresh if (fresh_dir / name).read_bytes() != (STUBS / name).read_bytes())
    assert not stale, f"stale stubs in forgeway/v1: {stale}; {hint}"


def uncommented_fields(text: str) -> list[tuple[int, str]]:
    """(line number, line) of each message field or enum value whose line above is not a comment."""
    missing: list[tuple[int, str]] = []
    stack: list[str] = []  # the kinds of the blocks we are inside
    previous = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        opened = BLOCK.match(line)
        if opened:
            stack.append(opened.group(1))
        elif line.startswith("}") and stack:
            stack.pop()
        elif stack:
            pattern = FIELD if stack[-1] in ("message", "oneof") else ENUM_VALUE if stack[-1] == "enum" else None
            if pattern and pattern.match(line) and not previous.startswith(COMMENT):
                missing.append((number, line))
        previous = line
    return missing


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_every_field_has_a_leading_comment(proto: Path) -> None:
    missing = uncommented_fields(proto.read_text())
    listed = "\n".join(f"  {proto.name}:{number}: {line}" for number, line in missing)
    assert not missing, f"fields without a leading // comment (the comments are the API docs):\n{listed}"


def test_comment_check_catches_a_bare_field() -> None:
    text = """
    // Documented.
    message A {
      // Fine.
      string ok = 1;
      string bare = 2;
      oneof choice {
        // Fine too.
        int32 x = 3;
        map<string, string> y = 4;
      }
    }
    enum E {
      // Zero.
      E_UNSPECIFIED = 0;
      E_ONE = 1;
    }
    """
    assert [line for _, line in uncommented_fields(text)] == [
        "string bare = 2;",
        "map<string, string> y = 4;",
        "E_ONE = 1;",
    ]
