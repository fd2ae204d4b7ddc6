"""The model store: FORGEWAY_HOME/models/<name>/ with weights or an adapter and a forgeway.json of provenance."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .errors import InvalidArgument, NotFound, PermissionDenied
from .generation import Task

METADATA_FILE = "forgeway.json"
LEGACY_PROVIDER = "huggingface"
# ModelForge's provider of each Forgeway trainer service: the one table behind modelforge_config.json, forgeway.json's
# "provider" and the ModelForge facade's provider registry. The service itself is recorded as "backend".
PROVIDER_OF_TRAINER = {"trl": "huggingface", "unsloth": "unsloth"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def entry_name(name: str, field: str = "name") -> str:
    """`name` if it can name a store entry; else INVALID_ARGUMENT naming `field` (a path separator, "..", ...)."""
    if not name:
        raise InvalidArgument(field, "required")
    if not NAME.match(name):
        raise InvalidArgument(field, f"{name!r} is not a model-store name: letters, digits, '.', '_' and '-' only "
                                     "(no path separators), starting with a letter or digit, at most 128 characters")
    return name


@dataclass
class StoredModel:
    """One entry of the store and its provenance."""

    name: str
    path: Path
    provider: str = LEGACY_PROVIDER
    base_model: str | None = None
    task: Task | None = None
    metadata: dict = field(default_factory=dict)
    description: str = ""
    created: datetime | None = None
    trained_by: str = ""  # the Forgeway trainer service that wrote it ("trl", "unsloth"), if one did

    @property
    def is_adapter(self) -> bool:
        return (self.path / "adapter_config.json").is_file()

    @property
    def loadable(self) -> bool:
        """Whether transformers can load it: full weights or a peft adapter."""
        return (self.path / "config.json").is_file() or self.is_adapter

    @property
    def chat(self) -> bool:
        """Whether its tokenizer has a chat template."""
        if "chat" in self.metadata:
            return bool(self.metadata["chat"])
        if (self.path / "chat_template.jinja").is_file():
            return True
        try:
            return bool(json.loads((self.path / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template"))
        except (OSError, ValueError, AttributeError):
            return False


def read_entry(name: str, path: Path) -> StoredModel:
    """An entry's metadata; legacy metadata without a provider reads as huggingface, a missing file as empty."""
    try:
        metadata = json.loads((path / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metadata = {}
    if not isinstance(metadata, dict):
        metadata = {}
    base = metadata.get("base_model") or _adapter_base(path)
    task = metadata.get("task") or metadata.get("pipeline_task")
    try:
        parsed_task = Task(task) if task else None
    except ValueError:
        parsed_task = None
    return StoredModel(
        name=name,
        path=path,
        provider=modelforge_provider(str(metadata.get("provider") or "")),
        base_model=str(base) if base else None,
        task=parsed_task,
        metadata=metadata,
        description=str(metadata.get("description") or ""),
        created=_created(metadata.get("created")),
        trained_by=str(metadata.get("backend") or ""),
    )


def modelforge_provider(recorded: str) -> str:
    """ModelForge's name for who trained a model: a trainer service's provider ("trl" -> "huggingface"), a name
    already in that vocabulary as is, nothing recorded (legacy metadata) -> "huggingface"."""
    return PROVIDER_OF_TRAINER.get(recorded, recorded or LEGACY_PROVIDER)


def _created(value) -> datetime | None:
    """forgeway.json's "created" (ISO 8601, "Z" for UTC) as an aware datetime; None when missing or malformed."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def confine(path: str | Path, roots: Iterable[Path], field: str) -> Path:
    """`path` resolved (links followed), if it lies under one of `roots`; else PERMISSION_DENIED naming `field`.

    The one check behind "model and dataset paths confined to allowed roots": every service calls it.
    """
    resolved = Path(path).expanduser().resolve()
    allowed = [Path(root).expanduser().resolve() for root in roots]
    if any(resolved.is_relative_to(root) for root in allowed):
        return resolved
    raise PermissionDenied(f"{field}: {path} is outside the allowed roots ({', '.join(map(str, allowed))})",
                           metadata={"field": field})


@dataclass(frozen=True)
class StoreStamp:
    """What ModelStore.stamp saw: (path, (inode, mtime ns, links, size) or None) for each path it looked at."""

    stats: tuple[tuple[str, tuple[int, int, int, int] | None], ...]

    @property
    def newest_change(self) -> int:
        """The latest mtime it holds, in ns since the epoch (0 when nothing exists)."""
        return max((stat[1] for _, stat in self.stats if stat is not None), default=0)


def _stat(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_nlink, st.st_size


def _adapter_base(path: Path) -> str | None:
    try:
        return json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None


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

    def get(self, name: str) -> StoredModel | None:
        """The entry called name (any folder of that name, with or without forgeway.json), or None."""
        if not NAME.match(name):
            return None
        path = self.root / name
        return read_entry(name, path) if path.is_dir() else None

    def list(self) -> list[StoredModel]:
        if not self.root.is_dir():
            return []
        return [read_entry(p.name, p) for p in sorted(self.root.iterdir()) if p.is_dir() and NAME.match(p.name)]

    def stamp(self, names: Iterable[str] = ()) -> StoreStamp:
        """A token that changes when an entry is published, replaced or removed (the root folder's inode, mtime and
        link count) or when one of `names` changes (its folder, its metadata file): stats only, no listing, no reads.

        Publishing renames a folder into the root, so a new entry always moves the root's mtime; a replaced entry
        is a new folder (a new inode) under the old name.
        """
        paths = [self.root, *(p for n in names for p in (self.root / n, self.root / n / METADATA_FILE))]
        return StoreStamp(tuple((str(p), _stat(p)) for p in paths))

    def metadata(self, name: str) -> dict:
        """Provenance of a stored model; legacy metadata with no provider reads as "huggingface"."""
        if not self.exists(name):
            raise NotFound("model", name, self.names())
        data = json.loads((self.root / name / METADATA_FILE).read_text())
        data["provider"] = modelforge_provider(str(data.get("provider") or ""))
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

    def delete(self, name: str) -> None:
        """Remove models/<name> atomically: renamed out of the store first (readers see it or nothing), then removed.
        A name with path separators is INVALID_ARGUMENT; no such entry, NOT_FOUND listing the known ones."""
        final = self.path(name)
        if not final.is_dir():
            raise NotFound("model", name, self.names())
        doomed = self.root / f".deleted-{name}-{uuid.uuid4().hex[:8]}"
        try:
            final.rename(doomed)
        except FileNotFoundError:  # another caller removed it first
            raise NotFound("model", name, self.names()) from None
        shutil.rmtree(doomed, ignore_errors=True)

    @staticmethod
    def write_metadata(folder: Path, **fields) -> None:
        (folder / METADATA_FILE).write_text(json.dumps(fields, indent=2, sort_keys=True, default=str))
