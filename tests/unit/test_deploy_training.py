"""deploy/k8s: trainers keep their job database, training Jobs see the same store, and the cpu demo model is wired."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "tools"))
import check_manifests  # noqa: E402

K8S = ROOT / "deploy" / "k8s"
ACCELERATE = K8S / "base" / "training" / "accelerate"
SHARED = {"/data/models": "models", "/data/datasets": "datasets", "/data/jobs": "jobs"}


@pytest.fixture(scope="module", params=check_manifests.overlays(), ids=lambda p: p.name)
def resources(request) -> list[dict]:
    return check_manifests.render(request.param)


def one(resources: list[dict], kind: str, name: str) -> dict:
    return next(r for r in resources if r["kind"] == kind and check_manifests.HASH_SUFFIX.sub("", r["metadata"]["name"])
                == name)


def store_mounts(spec: dict, container: dict) -> dict[str, str]:
    """mountPath -> subPath of the shared store's PersistentVolumeClaim."""
    claims = {v["name"] for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == "forgeway-store"}
    return {m["mountPath"]: m.get("subPath", "") for m in container["volumeMounts"] if m["name"] in claims}


def trainers(resources: list[dict]) -> list[dict]:
    return [r for r in resources if r["kind"] == "StatefulSet"
            and r["metadata"]["labels"]["app.kubernetes.io/component"] == "trainer"]


def test_trainers_keep_their_job_database_and_share_the_store(resources):
    assert {t["metadata"]["name"] for t in trainers(resources)} >= {"trl"}
    for trainer in trainers(resources):
        spec = trainer["spec"]["template"]["spec"]
        container = spec["containers"][0]
        (claim,) = trainer["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]  # SQLite wants a local disk, not NFS
        home = next(m for m in container["volumeMounts"] if m["mountPath"] == "/data")
        assert home["name"] == claim["metadata"]["name"]
        assert store_mounts(spec, container) == SHARED
        assert spec["serviceAccountName"] == "forgeway-trainer"


def test_inference_pods_read_the_model_store(resources):
    for name in ("hf", "llamacpp"):
        spec = one(resources, "Deployment", name)["spec"]["template"]["spec"]
        assert store_mounts(spec, spec["containers"][0]) == {"/data/models": "models"}


def test_training_job_pods_see_what_their_trainer_sees(resources):
    template = one(resources, "PodTemplate", "forgeway-training-job")["template"]
    spec, worker = template["spec"], template["spec"]["containers"][0]
    assert store_mounts(spec, worker) == SHARED
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert worker["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "training-job"
    trainer_image = trainers(resources)[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert worker["image"] == trainer_image
    for trainer in trainers(resources):
        mounts = {m["mountPath"]: m["name"] for m in trainer["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        volumes = {v["name"]: v for v in trainer["spec"]["template"]["spec"]["volumes"]}
        job_volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes[mounts["/etc/accelerate"]] == job_volumes["accelerate"]


def test_trainers_may_run_and_cancel_jobs_and_nothing_more(resources):
    rules = one(resources, "Role", "forgeway-trainer")["rules"]
    allowed = {(group, resource, verb)
               for r in rules for group in r["apiGroups"] for resource in r["resources"] for verb in r["verbs"]}
    assert {("", "podtemplates", "get"), ("batch", "jobs", "create"), ("batch", "jobs", "delete"),
            ("batch", "jobs", "watch"), ("kubeflow.org", "pytorchjobs", "create")} <= allowed
    assert not any(verb in {"*", "update", "patch"} or res == "secrets" for _, res, verb in allowed)
    binding = one(resources, "RoleBinding", "forgeway-trainer")
    assert binding["roleRef"]["name"] == "forgeway-trainer"
    assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [("ServiceAccount", "forgeway-trainer")]


def test_every_service_drains_within_its_termination_grace(resources):
    for workload in (r for r in resources if r["kind"] in ("Deployment", "StatefulSet")):
        spec = workload["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0].get("env", [])}
        if "FORGEWAY_GRACE_SECONDS" in env:
            assert float(env["FORGEWAY_GRACE_SECONDS"]) + 10 <= spec["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("config", sorted(ACCELERATE.glob("*.yaml")), ids=lambda p: p.stem)
def test_accelerate_configs_load_and_name_real_launch_options(config: Path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    loaded = ClusterConfig.from_yaml_file(str(config))  # unknown top-level keys raise
    assert loaded.num_machines == 1 and not loaded.use_cpu
    options = {a.dest for a in launch_command_parser()._actions}
    nested = {**(loaded.fsdp_config or {}), **(loaded.deepspeed_config or {})}
    assert set(nested) <= options, sorted(set(nested) - options)


def test_the_cpu_overlay_builds_the_demo_model_where_its_servers_wait_for_it():
    from forgeway.demo.build import MARKER

    resources = check_manifests.render(K8S / "overlays" / "cpu")
    job = one(resources, "Job", "demo-model")["spec"]["template"]["spec"]
    builder = job["containers"][0]
    assert builder["command"][:2] == ["forgeway", "demo-model"] and "--out" not in builder["command"]
    env = {e["name"]: e["value"] for e in builder["env"]}
    assert env["FORGEWAY_HOME"] == "/data" and env["HF_HUB_OFFLINE"] == "1"
    assert store_mounts(job, builder) == {"/data/models": "models"}  # default out: FORGEWAY_HOME/models/demo
    for name in ("hf", "llamacpp"):
        spec = one(resources, "Deployment", name)["spec"]["template"]["spec"]
        (wait,) = spec["initContainers"]
        assert f"/data/models/demo/{MARKER}" in wait["command"][-1]
        assert store_mounts(spec, wait) == {"/data/models": "models"}
    hf = yaml.safe_load(one(resources, "ConfigMap", "hf-config")["data"]["hf.yaml"])
    llamacpp = yaml.safe_load(one(resources, "ConfigMap", "llamacpp-config")["data"]["llamacpp.yaml"])
    assert hf["model"] == "demo" and [m["name"] for m in llamacpp["models"]] == ["demo"]
    claim = one(resources, "PersistentVolumeClaim", "forgeway-store")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
