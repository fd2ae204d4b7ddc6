"""Finds the GGUF file a model name or source points at: a path, a folder, or a model-store entry."""

from __future__ import annotations

from pathlib import Path

from forgeway.core.errors import FailedPrecondition, NotFound
from forgeway.core.modelstore import ModelStore, confine

GGUF_MAGIC = b"GGUF"


def locate_gguf(source: str, home: Path, roots: list[Path] | None = None) -> Path:
    """The .gguf file `source` names. With `roots`, the file must lie under FORGEWAY_HOME/models or one of them.

    A source with a path separator or a .gguf suffix is a path; anything else is a model-store name
    (FORGEWAY_HOME/models/NAME). A folder must hold exactly one .gguf file.
    """
    store = ModelStore(home / "models")
    looks_like_path = "/" in source or "\\" in source or source.endswith(".gguf") or source.startswith(".")
    if looks_like_path:
        path = Path(source).expanduser()
    else:
        entry = store.get(source)
        if entry is None:
            raise NotFound("model", source, [m.name for m in store.list()])
        path = entry.path
    if roots is not None:
        confine(path, [store.root, *roots], "source")
    if not path.exists():
        raise NotFound("model file", str(path))
    if path.is_dir():
        path = _only_gguf(path)
    check_gguf(path)
    return path


def check_gguf(path: Path) -> None:
    """Raise FAILED_PRECONDITION unless `path` starts like a GGUF file."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise FailedPrecondition(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic != GGUF_MAGIC:
        raise FailedPrecondition(f"{path} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})")


def _only_gguf(folder: Path) -> Path:
    found = sorted(folder.glob("*.gguf"))
    if len(found) == 1:
        return found[0]
    if not found:
        hint = ""
        if (folder / "config.json").exists():
            hint = f"; convert it first: forgeway export-gguf {folder} {folder / 'model.gguf'}"
        raise FailedPrecondition(f"no .gguf file in {folder}{hint}")
    names = ", ".join(p.name for p in found)
    raise FailedPrecondition(f"{folder} holds several .gguf files ({names}); name one as the source")


def gguf_problem(path: Path) -> str:
    """Why llama.cpp may have refused a file: the `gguf` reader's complaint, or a note that the file parses."""
    try:
        import gguf

        gguf.GGUFReader(path)
    except ImportError:
        return "the gguf package is not installed to say more"
    except Exception as exc:  # noqa: BLE001 - any parse failure is the reason
        return f"corrupt GGUF: {exc}"
    return "the GGUF parses; its architecture or tensors may be unsupported by this llama.cpp build"
