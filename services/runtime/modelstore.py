"""The model store: FORGEWAY_HOME/models/<name>/ with weights or an adapter and a forgeway.json of provenance."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InvalidArgument, NotFound

METADATA_FILE = "forgeway.json"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelStore:
    """Models by name under one root; writes land atomically under their final name."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        if not NAME.match(name):
            raise InvalidArgument("model_name", "letters, digits, '.', '_' and '-' only, at most 128 characters")
        return self.root / name

    def exists(self, name: str) -> bool:
        return NAME.match(name) is not None and (self.root / name / METADATA_FILE).is_file()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / METADATA_FILE).is_file())

    def metadata(self, name: str) -> dict:
        """Provenance of a stored model; legacy metadata with no provider reads as "huggingface"."""
        if not self.exists(name):
            raise NotFound("model", name, self.names())
        data = json.loads((self.root / name / METADATA_FILE).read_text())
        data.setdefault("provider", "huggingface")
        return data

    @contextmanager
    def writing(self, name: str) -> Iterator[Path]:
        """A scratch folder that becomes models/<name> only if the block succeeds (then it needs forgeway.json)."""
        final = self.path(name)
        scratch = self.root / f".partial-{name}-{uuid.uuid4().hex[:8]}"
        scratch.mkdir(parents=True)
        try:
            yield scratch
            if not (scratch / METADATA_FILE).is_file():
                raise RuntimeError(f"model {name!r} written without {METADATA_FILE}")
            if final.exists():
                backup = self.root / f".replaced-{name}-{uuid.uuid4().hex[:8]}"
                final.rename(backup)
                scratch.rename(final)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                scratch.rename(final)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def write_metadata(folder: Path, **fields) -> None:
        (folder / METADATA_FILE).write_text(json.dumps(fields, indent=2, sort_keys=True, default=str))
