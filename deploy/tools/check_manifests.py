"""Build every kustomize overlay in deploy/k8s and validate the output offline against Kubernetes' schemas.

    python deploy/tools/check_manifests.py            # every overlay; exit 1 naming each bad file and field

The build uses `kubectl kustomize` (or `kustomize build`) when one is installed, else kustomize_lite (the subset these
manifests use); FORGEWAY_KUSTOMIZE=kubectl|kustomize|lite picks one. Schemas come from the kubernetes-validate
package (strict: unknown fields are errors), checked against the oldest supported Kubernetes and the newest known.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kustomize_lite  # noqa: E402

K8S = Path(__file__).resolve().parents[1] / "k8s"
# Native gRPC probes are GA from 1.27; 1.28 is the oldest release these manifests are checked against.
MIN_KUBERNETES = "1.28"
HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


@dataclass(frozen=True)
class Problem:
    """One schema violation, located in the build and in the source files."""

    overlay: str
    resource: str
    files: tuple[str, ...]
    field: str
    message: str
    version: str

    def __str__(self) -> str:
        where = ", ".join(self.files) or "(no source file found)"
        return (f"{self.overlay}: {self.resource} in {where}: field {self.field or '(top level)'}: {self.message} "
                f"[Kubernetes {self.version}]")


def renderer() -> str:
    """Which kustomize builds: FORGEWAY_KUSTOMIZE, else kubectl, kustomize or lite, the first one present."""
    chosen = os.environ.get("FORGEWAY_KUSTOMIZE", "")
    if chosen:
        return chosen
    return next((tool for tool in ("kubectl", "kustomize") if shutil.which(tool)), "lite")


def render(folder: Path, how: str | None = None) -> list[dict[str, Any]]:
    """The resources of `kustomize build folder`."""
    how = how or renderer()
    if how == "lite":
        return kustomize_lite.build(folder)
    command = ["kubectl", "kustomize", str(folder)] if how == "kubectl" else ["kustomize", "build", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise kustomize_lite.KustomizeError(f"{' '.join(command)} failed: {done.stderr.strip()[-2000:]}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def kubernetes_versions() -> list[str]:
    from kubernetes_validate.utils import latest_version, major_minor

    return [MIN_KUBERNETES, major_minor(latest_version())]


def _files(folder: Path) -> list[Path]:
    """Every file a kustomization reads resources or patches from (the kustomization.yaml for inline ones)."""
    path = folder / "kustomization.yaml"
    spec = yaml.safe_load(path.read_text()) or {}
    found = [path]
    for entry in spec.get("resources", []):
        target = (folder / entry).resolve()
        found += _files(target) if target.is_dir() else [target]
    found += [(folder / p["path"]).resolve() for p in spec.get("patches", []) if "path" in p]
    return found


def sources(folder: Path, kind: str, name: str) -> list[Path]:
    """The files that define or patch a resource (a generated one: the kustomization.yaml that generates it)."""
    base_name = HASH_SUFFIX.sub("", name)
    hits = []
    for path in _files(folder):
        for doc in (d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)):
            if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
                hits.append(path)
            generators = doc.get("configMapGenerator" if kind == "ConfigMap" else "secretGenerator", [])
            inline = [yaml.safe_load(p["patch"]) for p in doc.get("patches", []) if "patch" in p]
            if any(g.get("name") == base_name for g in generators) or any(
                isinstance(p, dict) and p.get("kind") == kind and p.get("metadata", {}).get("name") == name
                for p in inline
            ):
                hits.append(path)
    return list(dict.fromkeys(hits))


def field_path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validate(folder: Path, resources: list[dict[str, Any]], versions: list[str] | None = None) -> list[Problem]:
    """Schema violations of the built resources, each naming its source files and field."""
    from kubernetes_validate import utils

    overlay = _relative(folder)
    problems = []
    for resource in resources:
        kind, name = resource.get("kind", "?"), resource.get("metadata", {}).get("name", "?")
        for version in versions or kubernetes_versions():
            try:
                utils.validate(resource, version, strict=True)
            except utils.ValidationError as exc:
                field, message, needle = _locate(exc)
            except (utils.SchemaNotFoundError, utils.InvalidSchemaError) as exc:
                field, message, needle = "apiVersion", exc.message, None
            else:
                continue
            files = _narrow(sources(folder, kind, name), needle)  # only for the bad ones: it parses every file
            problems.append(Problem(overlay, f"{kind}/{name}", tuple(map(_relative, files)), field, message, version))
    return problems


def _locate(exc) -> tuple[str, str, re.Pattern | None]:
    """The bad field's path, the message, and a pattern for the line that holds it in a source file."""
    path = field_path(exc.path)
    if exc.validator == "additionalProperties":
        unexpected = re.findall(r"'([^']+)' was unexpected", exc.message)
        if len(unexpected) == 1:
            path = f"{path}.{unexpected[0]}" if path else unexpected[0]
            return path, exc.message, re.compile(rf"(^|\s|\{{){re.escape(unexpected[0])}\s*:", re.M)
    if isinstance(exc.instance, (str, int, float, bool)) and not isinstance(exc.instance, bool):
        return path, exc.message, re.compile(rf":\s*[\"']?{re.escape(str(exc.instance))}[\"']?\s*(#.*)?$", re.M)
    return path, exc.message, None


def _narrow(files: list[Path], needle: re.Pattern | None) -> list[Path]:
    """The files that hold the offending line, when some of them do; else all that define or patch the resource."""
    holding = [f for f in files if needle is not None and needle.search(f.read_text())]
    return holding or files


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(K8S.parents[1]))
    except ValueError:
        return str(path)


def overlays() -> list[Path]:
    return sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))


def main(argv: list[str] | None = None) -> int:
    folders = [Path(a) for a in (sys.argv[1:] if argv is None else argv)] or overlays()
    how = renderer()
    failed = False
    for folder in folders:
        try:
            problems = validate(folder, render(folder, how))
        except (kustomize_lite.KustomizeError, OSError, yaml.YAMLError) as exc:
            print(f"{_relative(folder)}: cannot build: {exc}")
            failed = True
            continue
        for problem in problems:
            print(problem)
        failed |= bool(problems)
        print(f"{_relative(folder)}: {'FAILED' if problems else 'ok'} (built with {how}, "
              f"Kubernetes {', '.join(kubernetes_versions())})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
