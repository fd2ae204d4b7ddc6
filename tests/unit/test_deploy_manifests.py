"""deploy/k8s: every overlay builds with kustomize and validates offline against Kubernetes' schemas; bad ones fail."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "tools"))
import check_manifests  # noqa: E402
import kustomize_lite  # noqa: E402

OVERLAYS = check_manifests.overlays()


def test_the_overlays_are_cpu_and_gpu():
    assert [p.name for p in OVERLAYS] == ["cpu", "gpu"]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_builds_and_validates_against_the_schemas(overlay: Path):
    resources = check_manifests.render(overlay)
    kinds = {r["kind"] for r in resources}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim",
            "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "PodTemplate"} <= kinds
    problems = check_manifests.validate(overlay, resources)
    assert not problems, "\n".join(map(str, problems))


def test_the_checker_command_passes_on_the_repository():
    assert check_manifests.main([]) == 0


@pytest.fixture
def k8s_copy(tmp_path: Path) -> Path:
    """A copy of deploy/k8s to break."""
    copy = tmp_path / "k8s"
    shutil.copytree(ROOT / "deploy" / "k8s", copy)
    return copy


def _problems(overlay: Path) -> list[check_manifests.Problem]:
    return check_manifests.validate(overlay, check_manifests.render(overlay), versions=["1.37"])


def test_a_wrong_type_in_a_base_file_names_that_file_and_field(k8s_copy: Path):
    hf = k8s_copy / "base" / "hf.yaml"
    hf.write_text(hf.read_text().replace("containerPort: 50061", 'containerPort: "fifty"', 1))
    problems = _problems(k8s_copy / "overlays" / "gpu")
    assert len(problems) == 1, problems
    problem = problems[0]
    assert problem.resource == "Deployment/hf"
    assert problem.files == (str(hf),)
    assert problem.field == "spec.template.spec.containers[0].ports[0].containerPort"
    assert "'fifty' is not of type 'integer'" in problem.message
    assert str(hf) in str(problem) and problem.field in str(problem)


def test_an_unknown_field_in_an_overlay_patch_names_the_patch_and_field(k8s_copy: Path):
    patch = k8s_copy / "overlays" / "cpu" / "patches" / "gateway.yaml"
    patch.write_text(patch.read_text().replace("  maxReplicas: 3", "  maxReplicas: 3\n  maxReplica: 4"))
    problems = _problems(k8s_copy / "overlays" / "cpu")
    assert [(p.resource, p.files, p.field) for p in problems] == [
        ("HorizontalPodAutoscaler/gateway", (str(patch),), "spec.maxReplica")
    ]
    assert "'maxReplica' was unexpected" in problems[0].message


def test_a_misspelt_field_in_a_container_is_caught(k8s_copy: Path):
    trl = k8s_copy / "base" / "trl.yaml"
    trl.write_text(trl.read_text().replace("readinessProbe:", "readinesProbe:", 1))
    problems = _problems(k8s_copy / "overlays" / "cpu")
    assert [(p.resource, p.files, p.field) for p in problems] == [
        ("StatefulSet/trl", (str(trl),), "spec.template.spec.containers[0].readinesProbe")
    ]


def test_the_command_exits_non_zero_and_prints_the_file(k8s_copy: Path, capsys):
    store = k8s_copy / "base" / "store.yaml"
    store.write_text(store.read_text().replace("storage: 200Gi", "storage: [200Gi]"))
    assert check_manifests.main([str(k8s_copy / "overlays" / "gpu")]) == 1
    out = capsys.readouterr().out
    assert "PersistentVolumeClaim/forgeway-store" in out and str(store) in out
    assert "spec.resources.requests.storage" in out and "FAILED" in out


def test_a_kustomization_that_does_not_build_is_reported(k8s_copy: Path, capsys):
    kustomization = k8s_copy / "overlays" / "cpu" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text().replace("patches/hf.yaml", "patches/missing.yaml"))
    assert check_manifests.main([str(k8s_copy / "overlays" / "cpu")]) == 1
    assert "cannot build" in capsys.readouterr().out


def test_the_lite_builder_refuses_what_it_does_not_implement(k8s_copy: Path):
    kustomization = k8s_copy / "overlays" / "cpu" / "kustomization.yaml"
    kustomization.write_text(kustomization.read_text() + "namePrefix: demo-\n")
    with pytest.raises(kustomize_lite.KustomizeError, match="does not support namePrefix"):
        kustomize_lite.build(k8s_copy / "overlays" / "cpu")
