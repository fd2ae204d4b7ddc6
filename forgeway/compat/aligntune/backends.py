"""AlignTune's backend status and listing, answered from the trainers' Capabilities and AlignTune's TRL-only switches.

AlignTune's environment switches PURE_TRL_MODE, TRL_ONLY_MODE and DISABLE_UNSLOTH_FOR_TRL: any of them set to "1"
keeps Unsloth from loading, so Unsloth reports unavailable and backend "auto" trains on TRL. current_mode is
"TRL-ONLY" when PURE_TRL_MODE=1 (AlignTune's rule) and also when no Unsloth trainer can take work now.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from forgeway.client import Client
from forgeway.client.types import BackendStatus

SWITCHES = ("PURE_TRL_MODE", "TRL_ONLY_MODE", "DISABLE_UNSLOTH_FOR_TRL")


def unsloth_disabled() -> str | None:
    """Why AlignTune's switches keep Unsloth off ("PURE_TRL_MODE=1: ..."), or None when none of them is set."""
    on = [name for name in SWITCHES if os.environ.get(name, "0") == "1"]
    return f"{', '.join(f'{name}=1' for name in on)}: Unsloth switched off (AlignTune's TRL-only mode)" if on else None


def get_backend_status(client: Client | None = None, target: str | None = None) -> dict[str, Any]:
    """AlignTune's backend status: its switches as set, and which trainers can take work now (from Capabilities)."""
    trainers = trainer_methods(client or Client(target))
    unsloth = "unsloth" in trainers
    return {**{name.lower(): os.environ.get(name, "0") for name in SWITCHES},
            "trl_available": "trl" in trainers, "unsloth_available": unsloth,
            "current_mode": "TRL-ONLY" if os.environ.get("PURE_TRL_MODE") == "1" or not unsloth
            else "UNSLOTH-ENABLED"}


def list_backends(client: Client | None = None, target: str | None = None) -> dict[str, dict[str, Any]]:
    """AlignTune's list_backends(): prints the availability table and returns it."""
    trainers = trainer_methods(client or Client(target))
    backends = {
        "TRL": {"available": "trl" in trainers, "description": "HuggingFace TRL trainer service"},
        "UNSLOTH": {"available": "unsloth" in trainers, "description": "Unsloth trainer service"},
    }
    print("=" * 60)
    print("FORGEWAY - TRAINING BACKEND AVAILABILITY")
    print("=" * 60)
    for name, info in backends.items():
        info["status"] = "Available" if info["available"] else "Not Available"
        print(f"{name:10s}: {info['status']}\n             {info['description']}")
    if reason := unsloth_disabled():
        print(f"Note: {reason}")
    print("=" * 60)
    return backends


def trainer_methods(client: Client) -> dict[str, frozenset[str]]:
    """Trainer kind -> the training methods its endpoints can take now, directly or behind the gateway."""
    return methods_by_trainer(client.status())


def methods_by_trainer(rows: Iterable[BackendStatus]) -> dict[str, frozenset[str]]:
    """Trainer kind -> the methods of its endpoints that are available and serving; a kind with none of those is
    left out, and so is Unsloth while one of AlignTune's switches keeps it off."""
    kinds: dict[str, set[str]] = {}
    for row in rows:
        trainer = bool(row.methods) or row.backend in ("trl", "unsloth")
        if trainer and row.available and row.health == "SERVING":
            kinds.setdefault(row.backend, set()).update(row.methods)
    if unsloth_disabled():
        kinds.pop("unsloth", None)
    return {kind: frozenset(methods) for kind, methods in kinds.items()}
