"""AlignTune's backend status and listing, answered from the trainers' Capabilities."""

from __future__ import annotations

from typing import Any

from forgeway.client import Client


def get_backend_status(client: Client | None = None, target: str | None = None) -> dict[str, Any]:
    """AlignTune's backend status, from Capabilities: which trainers can take work now."""
    trainers = _trainers(client or Client(target))
    trl, unsloth = trainers.get("trl", False), trainers.get("unsloth", False)
    return {"pure_trl_mode": "0" if unsloth else "1", "trl_only_mode": "0" if unsloth else "1",
            "disable_unsloth_for_trl": "0", "trl_available": trl, "unsloth_available": unsloth,
            "current_mode": "UNSLOTH-ENABLED" if unsloth else "TRL-ONLY"}


def list_backends(client: Client | None = None, target: str | None = None) -> dict[str, dict[str, Any]]:
    """AlignTune's list_backends(): prints the availability table and returns it."""
    trainers = _trainers(client or Client(target))
    backends = {
        "TRL": {"available": trainers.get("trl", False), "description": "HuggingFace TRL trainer service"},
        "UNSLOTH": {"available": trainers.get("unsloth", False), "description": "Unsloth trainer service"},
    }
    print("=" * 60)
    print("FORGEWAY - TRAINING BACKEND AVAILABILITY")
    print("=" * 60)
    for name, info in backends.items():
        info["status"] = "Available" if info["available"] else "Not Available"
        print(f"{name:10s}: {info['status']}\n             {info['description']}")
    print("=" * 60)
    return backends


def _trainers(client: Client) -> dict[str, bool]:
    """Trainer kind -> whether one such endpoint can train now (directly, or behind the gateway)."""
    available: dict[str, bool] = {}
    for row in client.status():
        if row.methods or row.backend in ("trl", "unsloth"):
            available[row.backend] = available.get(row.backend, False) or (row.available and row.health == "SERVING")
    return available
