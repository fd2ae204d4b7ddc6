"""The Kubernetes launchers' manifests, built from the real forgeway-training-job PodTemplate and trainer pod of each
overlay and validated offline against Kubernetes' schemas. (No cluster here: the REST calls are not exercised.)"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "tools"))
import check_manifests  # noqa: E402

from forgeway.core.errors import Unavailable  # noqa: E402
from forgeway.services.training.engine import JobCancelled  # noqa: E402
from forgeway.services.training.jobfolder import CANCEL, WorkerFailed  # noqa: E402
from forgeway.services.training.jobs import JobStore  # noqa: E402
from forgeway.services.training.kubejobs import (  # noqa: E402
    GPU,
    JOB,
    JOB_LABEL,
    PYTORCHJOB,
    TRAINER_LABEL,
    KubernetesJobLauncher,
    ended,
    job_manifest,
    owner_reference,
    pod_template,
    pytorchjob_manifest,
    trainer_image,
    worker_command,
)
from forgeway.services.training.runner import RunningJob  # noqa: E402
from forgeway.services.training.worker import FileJobContext  # noqa: E402

JOB_DIR = Path("/data/jobs/job-0123456789abcdef")
CONFIG = "/etc/accelerate/multi-gpu.yaml"


@pytest.fixture(scope="module", params=check_manifests.overlays(), ids=lambda p: p.name)
def overlay(request) -> dict:
    return rendered(request.param)


def rendered(folder: Path) -> dict:
    resources = check_manifests.render(folder)
    template = next(r for r in resources if r["kind"] == "PodTemplate" and r["metadata"]["name"] == "forgeway-training-job")
    trainer = next(r for r in resources if r["kind"] == "StatefulSet" and r["metadata"]["name"] == "trl")
    # the trainer pod as GET pods/trl-0 returns it: the StatefulSet's pod spec, owned by the StatefulSet
    pod = {"metadata": {"name": "trl-0", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "trl", "uid": "5a1c0e4e-0000-4000-8000-000000000001",
         "controller": True, "blockOwnerDeletion": True}]}, "spec": trainer["spec"]["template"]["spec"]}
    return {"template": template["template"], "pod": pod}


def valid(resource: dict) -> None:
    from kubernetes_validate import utils

    for version in check_manifests.kubernetes_versions():
        utils.validate(resource, version, strict=True)


def test_one_device_runs_the_worker_alone_more_run_it_under_accelerate_launch():
    from accelerate.commands.launch import launch_command_parser

    assert worker_command("trl", JOB_DIR, 1, 1, CONFIG, []) == [
        "forgeway", "train-worker", "--service", "trl", "--job-dir", str(JOB_DIR)]
    assert worker_command("trl", JOB_DIR, 0, 1, CONFIG, [])[0] == "forgeway"
    command = worker_command("trl", JOB_DIR, 4, 1, CONFIG, ["--mixed_precision", "bf16"])
    assert command[:2] == ["accelerate", "launch"]
    parsed = launch_command_parser().parse_args(command[2:])
    assert (parsed.config_file, parsed.num_processes, parsed.mixed_precision, parsed.num_machines) == (
        CONFIG, 4, "bf16", None)
    assert (parsed.module, parsed.training_script) == (True, "forgeway.cli")
    assert parsed.training_script_args == ["train-worker", "--service", "trl", "--job-dir", str(JOB_DIR)]
    # the kubelet expands $(VAR) from the env the training operator gives each replica
    operator_env = {"$(RANK)": "1", "$(MASTER_ADDR)": "forgeway-train-x-master-0", "$(MASTER_PORT)": "23456"}
    expanded = [operator_env.get(arg, arg) for arg in worker_command("trl", JOB_DIR, 2, 3, CONFIG, [])]
    nodes = launch_command_parser().parse_args(expanded[2:])
    assert (nodes.num_processes, nodes.num_machines, nodes.machine_rank) == (6, 3, 1)
    assert (nodes.main_process_ip, nodes.main_process_port) == ("forgeway-train-x-master-0", 23456)


@pytest.mark.parametrize("gpus", [0, 1, 4])
def test_a_job_is_one_valid_never_retried_pod_from_the_template(overlay, gpus):
    pod = overlay["pod"]
    command = worker_command("trl", JOB_DIR, gpus, 1, CONFIG, [])
    body = pod_template(overlay["template"], job_id="job-0123456789abcdef", image=trainer_image(pod, "trl"),
                        command=command, gpus=gpus)
    job = job_manifest("forgeway-train-job-0123456789abcdef", "job-0123456789abcdef", "trl-0", body,
                       owner_reference(pod))
    valid(job)
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["metadata"]["labels"][JOB_LABEL] == "job-0123456789abcdef"
    assert job["metadata"]["labels"][TRAINER_LABEL] == "trl-0"
    assert job["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "trl",
                                                   "uid": "5a1c0e4e-0000-4000-8000-000000000001"}]
    template = job["spec"]["template"]
    assert template["metadata"]["labels"][JOB_LABEL] == "job-0123456789abcdef"  # how its pods are found
    (worker,) = template["spec"]["containers"]
    assert worker["image"] == pod["spec"]["containers"][0]["image"] and worker["command"] == command
    limits, requests = worker["resources"].get("limits", {}), worker["resources"].get("requests", {})
    assert limits.get(GPU) == (str(gpus) if gpus else None) and GPU not in requests
    assert template["spec"]["restartPolicy"] == "Never"
    assert {m["mountPath"] for m in worker["volumeMounts"]} >= {"/data/jobs", "/data/models", "/etc/accelerate"}
    assert "command" not in overlay["template"]["spec"]["containers"][0]  # the template itself is untouched
    assert JOB_LABEL not in overlay["template"].get("metadata", {}).get("labels", {})


def test_a_pytorchjob_has_a_master_and_workers_from_the_same_template(overlay):
    pod = overlay["pod"]
    command = worker_command("trl", JOB_DIR, 2, 3, CONFIG, [])
    body = pod_template(overlay["template"], job_id="job-0123456789abcdef", image=trainer_image(pod, "trl"),
                        command=command, gpus=2, container_name="pytorch")
    job = pytorchjob_manifest("forgeway-train-job-0123456789abcdef", "job-0123456789abcdef", "trl-0", body, 3,
                              owner_reference(pod))
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert job["spec"]["runPolicy"]["backoffLimit"] == 0
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert {name: spec["replicas"] for name, spec in replicas.items()} == {"Master": 1, "Worker": 2}
    for spec in replicas.values():
        assert spec["restartPolicy"] == "Never"
        (container,) = spec["template"]["spec"]["containers"]
        assert container["name"] == "pytorch" and container["command"] == command  # the operator's container name
        assert container["resources"]["limits"][GPU] == "2"
        # no PyTorchJob schema offline: each replica's pod template is checked as a core PodTemplate
        valid({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "replica"}, "template": spec["template"]})
    single = pytorchjob_manifest("n", "job-1", "trl-0", body, 1, None)
    assert list(single["spec"]["pytorchReplicaSpecs"]) == ["Master"] and "ownerReferences" not in single["metadata"]


def test_paths_and_endings_of_both_kinds():
    assert JOB.path("forgeway", "x") == "/apis/batch/v1/namespaces/forgeway/jobs/x"
    assert PYTORCHJOB.path("forgeway") == "/apis/kubeflow.org/v1/namespaces/forgeway/pytorchjobs"
    running = {"status": {"conditions": [{"type": "Created", "status": "True"}]}}
    assert ended(running, PYTORCHJOB) is None and ended({}, JOB) is None
    assert ended({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, JOB) == "succeeded"
    failed = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                         "message": "Job has reached the specified backoff limit"}]}}
    assert ended(failed, JOB) == "failed: Job has reached the specified backoff limit"
    assert ended({"status": {"conditions": [{"type": "Succeeded", "status": "True"}]}}, PYTORCHJOB) == "succeeded"
    assert owner_reference({"metadata": {"ownerReferences": [{"kind": "Node", "controller": False}]}}) is None


class Cluster:
    """The Kubernetes API as the launcher uses it, in memory (no cluster here): the overlay's PodTemplate and trainer
    pod, Jobs created and deleted, pods listed by label."""

    namespace = "forgeway"

    def __init__(self, overlay: dict):
        self.objects = {"/api/v1/namespaces/forgeway/pods/trl-0": overlay["pod"],
                        "/api/v1/namespaces/forgeway/podtemplates/forgeway-training-job": {"template": overlay["template"]}}
        self.calls: list[tuple[str, str]] = []
        self.pods: list[dict] = []
        self.created = asyncio.Event()
        self.unreachable = 0  # how many of the next reads fail as an unreachable API server does

    async def call(self, method: str, path: str, body: dict | None = None) -> dict | None:
        self.calls.append((method, path))
        if method == "GET" and self.unreachable:
            self.unreachable -= 1
            raise Unavailable(f"kubernetes GET {path}: [Errno 111] Connection refused", retry_after=30)
        if method == "POST":
            self.objects[f"{path}/{body['metadata']['name']}"] = body
            self.created.set()
            return body
        if method == "DELETE":
            return self.objects.pop(path, None)
        return {"items": self.pods} if "?labelSelector=" in path else self.objects.get(path)


@pytest.fixture
def trainer(tmp_path, monkeypatch):
    from test_training_launch import REQUEST, engine  # the smallest trainer, shared with those tests

    monkeypatch.setenv("POD_NAME", "trl-0")
    stub = engine(tmp_path, launcher="kubernetes-job", job_gpus=2, grace_seconds=0.5)
    store = JobStore(tmp_path / "jobs.db")
    created = store.create(REQUEST, "stub", "sft")
    cluster = Cluster(rendered(check_manifests.K8S / "overlays" / "gpu"))
    launcher = KubernetesJobLauncher(stub, api=cluster, status_seconds=0.2)
    yield launcher, cluster, RunningJob(created.id, store, tmp_path)
    store.close()


def spec():
    from test_training_launch import spec

    return spec()


def job_path(job: RunningJob) -> str:
    return JOB.path("forgeway", f"forgeway-train-{job.job_id}")


async def until(condition, timeout: float = 10.0) -> None:
    """Poll condition every 50 ms until it holds; TimeoutError after timeout seconds."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


def logged(job: RunningJob) -> list[str]:
    return [e.log.text for e in job.jobs.events(job.job_id) if e.WhichOneof("kind") == "log"]


async def test_the_launcher_creates_the_job_and_follows_it_to_its_result_through_api_blips(trainer):
    launcher, cluster, job = trainer
    running = asyncio.create_task(launcher.run(spec(), job))
    await asyncio.wait_for(cluster.created.wait(), 10)
    created = cluster.objects[job_path(job)]
    (container,) = created["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["accelerate", "launch"] and container["resources"]["limits"][GPU] == "2"
    assert json.loads((job.job_dir / "launch.json").read_text())["settings"]["job_gpus"] == 2
    cluster.unreachable = 2  # a blip of the API server does not fail a job whose worker still reports
    await until(lambda: cluster.unreachable == 0)  # both failed status reads happened while the job ran
    worker = FileJobContext(job.job_id, job.job_dir)
    worker.progress(step=1, total_steps=2, loss=1.0)
    worker.write("result", model_name="m", path="/data/models/m", format="adapter", metrics={})
    trained = await asyncio.wait_for(running, 10)
    assert trained.model_name == "m" and job.jobs.get(job.job_id).progress.step == 1
    assert ("DELETE", job_path(job)) not in cluster.calls  # it finishes by itself (ttlSecondsAfterFinished)


async def test_a_restarted_trainer_re_attaches_instead_of_starting_another(trainer):
    launcher, cluster, job = trainer
    first = asyncio.create_task(launcher.run(spec(), job))
    await asyncio.wait_for(cluster.created.wait(), 10)
    FileJobContext(job.job_id, job.job_dir).progress(step=1, total_steps=9)
    await until(lambda: job.jobs.get(job.job_id).progress.step == 1)
    job.shutdown_requested.set()  # the trainer stops: the Job goes on
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(first, 10)
    assert job_path(job) in cluster.objects
    FileJobContext(job.job_id, job.job_dir).progress(step=2, total_steps=9)  # while no trainer watched
    restarted = RunningJob(job.job_id, job.jobs, job.job_dir.parent.parent)
    again = asyncio.create_task(launcher.run(spec(), restarted))
    await until(lambda: any(text.startswith("re-attached") for text in logged(job)))
    FileJobContext(job.job_id, job.job_dir).write("result", model_name="m", path="/m", format="adapter")
    assert (await asyncio.wait_for(again, 10)).model_name == "m"
    assert [m for m, _ in cluster.calls].count("POST") == 1
    steps = [e.progress.step for e in job.jobs.events(job.job_id) if e.WhichOneof("kind") == "progress"]
    assert steps == [1, 2] and f"re-attached to Job forgeway-train-{job.job_id}" in logged(job)


async def test_cancel_writes_the_cancel_file_then_deletes_the_job(trainer):
    launcher, cluster, job = trainer
    running = asyncio.create_task(launcher.run(spec(), job))
    await asyncio.wait_for(cluster.created.wait(), 10)
    job.cancel_requested.set()
    await until((job.job_dir / CANCEL).exists)
    FileJobContext(job.job_id, job.job_dir).write("cancelled", step=3, checkpoint="/data/jobs/x/checkpoint-3")
    with pytest.raises(JobCancelled, match="cancelled at step 3"):
        await asyncio.wait_for(running, 10)
    assert ("DELETE", job_path(job)) in cluster.calls and job_path(job) not in cluster.objects


async def test_a_job_that_failed_without_a_result_fails_with_its_pods_last_words(trainer):
    launcher, cluster, job = trainer
    running = asyncio.create_task(launcher.run(spec(), job))
    await asyncio.wait_for(cluster.created.wait(), 10)
    cluster.objects[job_path(job)]["status"] = {"conditions": [
        {"type": "Failed", "status": "True", "message": "Job has reached the specified backoff limit"}]}
    cluster.pods = [{"status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 137,
                                                                                "message": "OOMKilled"}}}]}}]
    with pytest.raises(WorkerFailed, match="backoff limit without a result: exit 137: OOMKilled"):
        await asyncio.wait_for(running, 10)
