"""kustomize_lite, the offline fallback for `kustomize build`, builds exactly what kubectl's kustomize builds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "tools"))
import check_manifests  # noqa: E402
import kustomize_lite  # noqa: E402

FOLDERS = [ROOT / "deploy" / "k8s" / "base", *check_manifests.overlays()]


def by_id(resources: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {(r["kind"], r["metadata"].get("namespace", ""), r["metadata"]["name"]): r for r in resources}


def test_name_hash_is_kubectls():
    # `kubectl kustomize` (kustomize 5.5.0) of configMapGenerator [{name: x, literals: [a=b]}] names it x-4h2mbtbbt6
    assert kustomize_lite.name_hash({"kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}) == "4h2mbtbbt6"
    secret = {"kind": "Secret", "type": "Opaque", "metadata": {"name": "forgeway-secrets"}, "data": {"openai-api-key": ""}}
    assert kustomize_lite.name_hash(secret) == "57hg862b4d"


def test_merge_follows_strategic_merge_keys():
    base = {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 1}]}],
            "tolerations": [{"key": "old"}]}
    patch = {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}], "ports": [{"containerPort": 1,
             "name": "grpc"}]}, {"name": "b"}], "tolerations": [{"key": "new"}]}
    merged = kustomize_lite._merge(base, patch)
    assert merged["containers"][0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert merged["containers"][0]["ports"] == [{"containerPort": 1, "name": "grpc"}]
    assert [c["name"] for c in merged["containers"]] == ["a", "b"]
    assert merged["tolerations"] == [{"key": "new"}]  # no merge key: replaced
    deleted = kustomize_lite._merge(base, {"containers": [{"name": "a", "$patch": "delete"}]})
    assert deleted["containers"] == []


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_lite_builds_what_kubectl_builds(folder: Path):
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: nothing to compare kustomize_lite with")
    done = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = by_id([d for d in yaml.safe_load_all(done.stdout) if d])
    built = by_id(kustomize_lite.build(folder))
    assert sorted(built) == sorted(expected)
    for key, resource in expected.items():
        assert built[key] == resource, key
