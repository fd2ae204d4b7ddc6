"""Whether Unsloth can train here, told honestly: probed in a child process, so a broken install can't crash the
service. `python -m forgeway.services.unsloth.availability` prints the verdict as JSON (exit 0 when it can train)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass, field

# Categories of a verdict (Capabilities' reason starts with a readable form of one of them).
READY = "ready"  # unsloth imported, a CUDA device is there
CPU_FALLBACK = "cpu_fallback"  # unsloth imported, no CUDA device: its CPU path (SFT with LoRA or full fine-tuning)
NOT_INSTALLED = "not_installed"
NO_CUDA = "no_cuda"  # no CUDA device and the CPU fallback is switched off
IMPORT_FAILURE = "import_failure"  # unsloth (or torch) is installed but importing it failed; see `kind`

# Runs in the child: one JSON line on stdout. torch first, so a broken torch is told apart from a broken unsloth.
_PROBE = r"""
import importlib.metadata, importlib.util, json, sys

def out(**fields):
    print("\nFORGEWAY-PROBE " + json.dumps(fields), flush=True)
    sys.exit(0)

if importlib.util.find_spec("unsloth") is None:
    out(installed=False)
versions = {}
for name in ("unsloth", "unsloth_zoo", "torch", "transformers", "trl", "peft", "bitsandbytes", "triton"):
    try:
        versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
stage = "torch"
try:
    import torch
    cuda = torch.cuda.is_available()
    accelerator = torch.cuda.get_device_name(0) if cuda else ""
    stage = "unsloth"
    import unsloth
    from unsloth import FastLanguageModel
except BaseException as exc:
    out(installed=True, versions=versions, stage=stage, error_type=type(exc).__name__,
        error=" ".join(str(exc).split())[:500], module=getattr(exc, "name", None) or "")
out(installed=True, versions=versions, cuda=cuda, accelerator=accelerator)
"""
_MARKER = "FORGEWAY-PROBE "


@dataclass
class Verdict:
    """What the probe found: whether Unsloth can train, the category, and the reason as Capabilities says it."""

    available: bool
    category: str
    reason: str
    device: str = ""  # cuda or cpu, when unsloth imported
    kind: str = ""  # for import failures: missing dependency, incompatible versions, CUDA/driver error, ...
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def classify(error_type: str, message: str) -> str:
    """The kind of an import failure, from the exception's type and message."""
    text = message.lower()
    if error_type == "ModuleNotFoundError":
        return "missing dependency"
    if any(word in text for word in ("cuda", "nvidia", "driver", "libcudart", "nvcc", "gpu", "accelerator")):
        return "CUDA/driver error"
    if any(word in text for word in ("version", "requires", "upgrade", "downgrade", "minimum", "incompatible",
                                     "cannot import name")):
        return "incompatible versions"
    if error_type == "ImportError":
        return "broken install"
    if error_type == "NotImplementedError":
        return "unsupported platform"
    return f"error while importing ({error_type})"


def probe(python: str | None = None, timeout: float = 180.0, env: dict[str, str] | None = None,
          cpu_fallback: bool = True) -> Verdict:
    """Import unsloth in a child process of `python` (this interpreter by default) and say what happened."""
    command = [python or sys.executable, "-c", _PROBE]
    child_env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), **(env or {})}
    where = os.path.dirname(os.path.dirname(command[0]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=child_env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Verdict(False, IMPORT_FAILURE, f"unsloth import failed (timeout): importing it took over {timeout:.0f} s",
                       kind="timeout")
    line = next((ln for ln in reversed(done.stdout.splitlines()) if ln.startswith(_MARKER)), None)
    if line is None:
        died = (f"killed by {signal.Signals(-done.returncode).name}" if done.returncode < 0
                else f"exit code {done.returncode}")
        tail = " ".join(done.stderr.strip().splitlines()[-1:])[:300]
        return Verdict(False, IMPORT_FAILURE, f"unsloth import failed (crash): the probe process died ({died})"
                       + (f": {tail}" if tail else ""), kind="crash")
    found = json.loads(line[len(_MARKER):])
    versions = found.get("versions", {})
    if not found["installed"]:
        return Verdict(False, NOT_INSTALLED, f"unsloth is not installed in {where}: build the separate environment "
                       "with `make unsloth-env` and run `forgeway serve unsloth` from .venv-unsloth")
    if "error_type" in found:
        kind = classify(found["error_type"], found["error"])
        what = "torch" if found["stage"] == "torch" else "unsloth"
        return Verdict(False, IMPORT_FAILURE, f"{what} import failed ({kind}): {found['error_type']}: {found['error']}",
                       kind=kind, versions=versions)
    version = versions.get("unsloth", "?")
    if found["cuda"]:
        return Verdict(True, READY, f"ready: unsloth {version} on CUDA ({found['accelerator']})", device="cuda",
                       versions=versions)
    if not cpu_fallback:
        return Verdict(False, NO_CUDA, f"no CUDA device: unsloth {version} is installed, and its CPU fallback is "
                       "switched off (cpu_fallback=false)", device="cpu", versions=versions)
    return Verdict(True, CPU_FALLBACK, f"CPU fallback: no CUDA device; unsloth {version} trains on CPU (SFT only, "
                   "without its GPU kernels, much slower than on a GPU)", device="cpu", versions=versions)


def import_failure(exc: BaseException) -> Verdict:
    """The verdict when importing unsloth in the service itself fails after the probe passed."""
    kind = classify(type(exc).__name__, str(exc))
    return Verdict(False, IMPORT_FAILURE, f"unsloth import failed ({kind}): {type(exc).__name__}: "
                   f"{' '.join(str(exc).split())[:500]}", kind=kind)


def main(argv: list[str] | None = None) -> int:
    verdict = probe()
    print(verdict.to_json())
    return 0 if verdict.available else 1


if __name__ == "__main__":
    raise SystemExit(main())
