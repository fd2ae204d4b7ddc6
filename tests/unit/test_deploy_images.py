"""deploy/docker: COPY sources exist and reach the build, each image serves a real target, and some carry no torch."""

from __future__ import annotations

import ast
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from forgeway.server import registry
from forgeway.up import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
TORCH_FREE = ("gateway", "openai", "echo", "llamacpp")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        values = {}
        for args in self.all("ENV"):
            values.update(pair.split("=", 1) for pair in shlex.split(args))
        return values


def parse_dockerfile(path: Path) -> dict[str, Stage]:
    lines, pending = [], ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        pending += raw.rstrip()[:-1] + " " if raw.rstrip().endswith("\\") else raw
        if not raw.rstrip().endswith("\\"):
            lines.append(pending.strip())
            pending = ""
    stages: dict[str, Stage] = {}
    current = None
    for line in lines:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            current = stages.setdefault(name.strip(), Stage(name.strip(), base.strip()))
        elif current is not None:
            current.instructions.append((keyword, args.strip()))
    return stages


STAGES = parse_dockerfile(DOCKER / "Dockerfile")
SERVE_TARGETS = {name: json.loads(s.all("ENTRYPOINT")[0]) for name, s in STAGES.items() if s.all("ENTRYPOINT")}


def copies(stage: Stage) -> list[tuple[list[str], str | None]]:
    """(sources, --from stage) of each COPY."""
    found = []
    for args in stage.all("COPY"):
        words = shlex.split(args)
        flags = {w.split("=", 1)[0]: w.split("=", 1)[-1] for w in words if w.startswith("--")}
        paths = [w for w in words if not w.startswith("--")]
        found.append((paths[:-1], flags.get("--from")))
    return found


def ancestry(name: str) -> list[Stage]:
    """The stage, the stages it builds FROM, and those it copies from, recursively."""
    stage = STAGES[name]
    related = [stage]
    for parent in [stage.base] + [source for _, source in copies(stage) if source]:
        if parent in STAGES:
            related += ancestry(parent)
    return related


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or one of its parents wins."""
    candidates = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = re.escape(body).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, c) for c in candidates):
            verdict = not negate
    return verdict


def test_every_copy_source_exists_and_is_in_the_build_context():
    patterns = [line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    checked = 0
    for stage in STAGES.values():
        for sources, from_stage in copies(stage):
            if from_stage:
                assert from_stage in STAGES, f"COPY --from={from_stage}: no such stage"
                continue
            for source in sources:
                path = ROOT / source
                assert path.exists(), f"stage {stage.name}: COPY {source}: no such file"
                files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
                for file in files:
                    assert not ignored(str(file.relative_to(ROOT)), patterns), f"{file} is .dockerignored"
                checked += len(files)
    assert checked > 50
    assert ignored(".venv/bin/python", patterns) and ignored("tests/conftest.py", patterns)
    assert ignored("services/hf/__pycache__/engine.cpython-311.pyc", patterns)


def test_the_builder_copies_every_package_folder_setup_py_maps():
    tree = ast.parse((ROOT / "setup.py").read_text())
    roots = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                 if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "ROOTS")
    copied = {s.rstrip("/") for sources, _ in copies(STAGES["builder"]) for s in sources}
    assert set(roots.values()) <= copied
    assert {"pyproject.toml", "setup.py", "README.md"} <= copied


@pytest.mark.parametrize("target", sorted(SERVE_TARGETS))
def test_each_image_serves_a_registered_service_as_non_root(target: str):
    assert SERVE_TARGETS[target] == ["forgeway", "serve", target]
    assert target in registry.available()
    stage = STAGES[target]
    port = DEFAULT_PORTS[target]
    env = {k: v for s in reversed(ancestry(target)) for k, v in s.env().items()}
    assert int(env["FORGEWAY_PORT"]) == port and env["FORGEWAY_HOST"] == "0.0.0.0"
    assert env["FORGEWAY_HOME"] == "/data" and env["FORGEWAY_METRICS_PORT"] == "9090"
    assert {str(port), "9090"} <= set(" ".join(stage.all("EXPOSE")).split())
    assert stage.all("USER") == ["10001:10001"]
    assert any("healthcheck" in h for s in ancestry(target) for h in s.all("HEALTHCHECK"))


def test_every_service_has_an_image():
    assert set(SERVE_TARGETS) == set(DEFAULT_PORTS)


def pip_installs(target: str) -> list[str]:
    """Every `pip install` that builds the image, in build order."""
    return [run for stage in reversed(ancestry(target)) for run in stage.all("RUN") if "pip install" in run]


def requires(name: str, extras: set[str]) -> list[str]:
    """A distribution's requirements: forgeway's from pyproject.toml as it is now, others' from what is installed."""
    if name == "forgeway":
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        optional = project["optional-dependencies"]
        return project["dependencies"] + [r for extra in sorted(extras) for r in optional[extra]]
    try:
        return [r for r in distribution(name).requires or []
                if not Requirement(r).marker or any(Requirement(r).marker.evaluate({"extra": e}) for e in extras | {""})]
    except PackageNotFoundError:
        return []


def closure(requirements: list[str]) -> set[str]:
    """Names of every distribution these requirements pull in, as far as this environment knows them."""
    seen: set[str] = set()
    stack = [Requirement(r) for r in requirements]
    while stack:
        requirement = stack.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = canonicalize_name(requirement.name) + str(sorted(requirement.extras))
        if key not in seen:
            seen.add(key)
            stack += [Requirement(r) for r in requires(canonicalize_name(requirement.name), set(requirement.extras))]
    return {key.split("[")[0] for key in seen}


@pytest.mark.parametrize("target", TORCH_FREE)
def test_torch_free_images_install_nothing_that_pulls_torch(target: str):
    runs = pip_installs(target)
    assert runs and not any("torch" in run for run in runs), runs
    extras = {e for run in runs for group in re.findall(r"\.\[([\w,-]+)\]", run) for e in group.split(",")}
    assert extras <= {"openai", "llamacpp", "console"}, extras
    pulled = closure([f"forgeway[{','.join(sorted(extras))}]"])
    assert "forgeway" in pulled and "grpcio" in pulled
    assert not pulled & {"torch", "transformers", "triton"}, sorted(pulled)
    assert "torch" in closure(["forgeway[hf]"]), "the closure would not see torch if it were pulled"


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name} := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert match, f"Makefile sets no {name}"
    return match.group(1)


@pytest.mark.parametrize("target", ["hf", "trl", "unsloth"])
def test_torch_images_pin_torch_from_its_index_first(target: str):
    runs = [run for run in pip_installs(target) if "--upgrade pip" not in run]
    assert "--index-url" in runs[0] and "torch==${TORCH_VERSION}" in runs[0], runs[0]
    args = [a for s in ancestry(target) for a in s.all("ARG")]
    assert f"TORCH_VERSION={makefile_variable('TORCH_VERSION')}" in args


def test_requirement_files_exist_and_unsloth_matches_make_unsloth_env():
    runs = [run for name in SERVE_TARGETS for run in pip_installs(name)]
    files = {f for run in runs for f in re.findall(r"-r (\S+)", run)}
    assert files == {"services/unsloth/requirements.txt"}
    for file in files:
        assert (ROOT / file).is_file(), file
        pins = re.findall(r"^torch==(\S+)", (ROOT / file).read_text(), re.M)
        assert pins in ([], [makefile_variable("TORCH_VERSION")]), f"{file} pins torch {pins}"
    assert f"UNSLOTH_VERSION={makefile_variable('UNSLOTH_VERSION')}" in STAGES["unsloth-build"].all("ARG")


def test_bake_targets_exist_and_cover_every_image():
    bake = (DOCKER / "docker-bake.hcl").read_text()
    blocks = dict(re.findall(r'target "([\w-]+)" \{(.*?)\n\}', bake, re.S))
    used = {name: re.search(r'target\s+=\s+"([\w-]+)"', body) for name, body in blocks.items()}
    used = {name: m.group(1) for name, m in used.items() if m}
    assert set(used.values()) <= set(STAGES)
    groups = {name: set(re.findall(r'"([\w-]+)"', members))
              for name, members in re.findall(r'group "(\w+)" \{ targets = \[(.*?)\] \}', bake)}
    assert {used[t] for t in groups["default"]} == set(SERVE_TARGETS) - {"unsloth"}
    assert {used[t] for t in groups["cuda"]} == {"hf", "trl", "unsloth"}
    assert all("TORCH_INDEX_URL" in blocks[t] for t in groups["cuda"])
