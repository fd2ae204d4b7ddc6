"""Training jobs on Kubernetes: a batch/v1 Job (one pod) or a Kubeflow PyTorchJob (several nodes) built from the
forgeway-training-job PodTemplate. The pod runs `forgeway train-worker` and reports through the job folder on the
shared store; the trainer follows it, re-attaches after a restart, and deletes it on cancel."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from forgeway.core.errors import Unavailable

from . import jobfolder
from .engine import JobCancelled, TrainedModel, TrainingEngine
from .jobfolder import EventFollower, WorkerFailed
from .launchers import POLL_SECONDS, mixed_precision
from .spec import TrainSpec

if TYPE_CHECKING:
    from .runner import RunningJob

log = logging.getLogger("forgeway.training")
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
JOB_LABEL = "forgeway.io/job-id"
TRAINER_LABEL = "forgeway.io/trainer"
GPU = "nvidia.com/gpu"
TTL_SECONDS = 24 * 3600  # finished Jobs stay a day for `kubectl logs`; their outcome is already in the job's history
STATUS_SECONDS = 10.0  # how often the Job's own status is read (the events file is read every POLL_SECONDS)


@dataclass(frozen=True)
class Kind:
    """A workload kind the launcher creates: its REST path and the condition types that end it."""

    api_version: str
    kind: str
    plural: str
    succeeded: str
    failed: str = "Failed"

    def path(self, namespace: str, name: str = "") -> str:
        group = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{group}/namespaces/{namespace}/{self.plural}" + (f"/{name}" if name else "")


JOB = Kind("batch/v1", "Job", "jobs", "Complete")
PYTORCHJOB = Kind("kubeflow.org/v1", "PyTorchJob", "pytorchjobs", "Succeeded")


def worker_command(service: str, job_dir: Path, gpus: int, nodes: int, accelerate_config: str,
                   precision: list[str]) -> list[str]:
    """The pod's command: the worker alone on one device, else under accelerate launch (a PyTorchJob's rendezvous
    from the operator's MASTER_ADDR, MASTER_PORT and RANK, which Kubernetes expands in $(...))."""
    worker = ["train-worker", "--service", service, "--job-dir", str(job_dir)]
    if gpus <= 1 and nodes == 1:
        return ["forgeway", *worker]
    launch = ["accelerate", "launch", "--config_file", accelerate_config, "--num_processes", str(max(gpus, 1) * nodes),
              *precision]
    if nodes > 1:
        launch += ["--num_machines", str(nodes), "--machine_rank", "$(RANK)", "--main_process_ip", "$(MASTER_ADDR)",
                   "--main_process_port", "$(MASTER_PORT)"]
    return [*launch, "-m", "forgeway.cli", *worker]


def pod_template(template: dict, *, job_id: str, image: str, command: list[str], gpus: int,
                 container_name: str | None = None) -> dict:
    """The PodTemplate's template with this job's label, image, command and GPUs (0: none)."""
    pod = copy.deepcopy(template)
    pod.setdefault("metadata", {}).setdefault("labels", {})[JOB_LABEL] = job_id
    container = pod["spec"]["containers"][0]
    container.update(image=image, command=command)
    container.pop("args", None)
    if container_name:
        container["name"] = container_name
    resources = container.setdefault("resources", {})
    for kind in ("limits", "requests"):
        resources.get(kind, {}).pop(GPU, None)
    if gpus:
        resources.setdefault("limits", {})[GPU] = str(gpus)
    return pod


def _metadata(name: str, job_id: str, trainer: str, owner: dict | None) -> dict:
    labels = {"app.kubernetes.io/part-of": "forgeway", "app.kubernetes.io/component": "training-job",
              JOB_LABEL: job_id, TRAINER_LABEL: trainer}
    return {"name": name, "labels": labels, **({"ownerReferences": [owner]} if owner else {})}


def job_manifest(name: str, job_id: str, trainer: str, pod: dict, owner: dict | None) -> dict:
    """A batch/v1 Job of one pod that is never retried (the trainer decides what a failure means)."""
    return {"apiVersion": JOB.api_version, "kind": JOB.kind, "metadata": _metadata(name, job_id, trainer, owner),
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": TTL_SECONDS, "template": pod}}


def pytorchjob_manifest(name: str, job_id: str, trainer: str, pod: dict, nodes: int, owner: dict | None) -> dict:
    """A Kubeflow PyTorchJob: one Master and nodes - 1 Workers, each pod from the same template."""
    replicas = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": pod}}
    if nodes > 1:
        replicas["Worker"] = {"replicas": nodes - 1, "restartPolicy": "Never", "template": copy.deepcopy(pod)}
    return {"apiVersion": PYTORCHJOB.api_version, "kind": PYTORCHJOB.kind,
            "metadata": _metadata(name, job_id, trainer, owner),
            "spec": {"runPolicy": {"backoffLimit": 0, "ttlSecondsAfterFinished": TTL_SECONDS, "cleanPodPolicy": "None"},
                     "pytorchReplicaSpecs": replicas}}


def owner_reference(pod: dict) -> dict | None:
    """The trainer pod's controller (its StatefulSet): Jobs outlive a restarted trainer pod and go with the trainer."""
    for ref in pod.get("metadata", {}).get("ownerReferences", []):
        if ref.get("controller"):
            return {"apiVersion": ref["apiVersion"], "kind": ref["kind"], "name": ref["name"], "uid": ref["uid"]}
    return None


def trainer_image(pod: dict, kind: str) -> str:
    containers = pod["spec"]["containers"]
    return next((c["image"] for c in containers if c["name"] == kind), containers[0]["image"])


def ended(resource: dict, kind: Kind) -> str | None:
    """'succeeded' or 'failed: REASON' once the Job / PyTorchJob finished, else None."""
    for condition in resource.get("status", {}).get("conditions", []):
        if condition.get("status") == "True" and condition.get("type") == kind.succeeded:
            return "succeeded"
        if condition.get("status") == "True" and condition.get("type") == kind.failed:
            return f"failed: {condition.get('message') or condition.get('reason') or 'no reason given'}"
    return None


class KubeAPI:
    """The few Kubernetes REST calls a trainer makes, as its pod's ServiceAccount (in-cluster config, stdlib only)."""

    def __init__(self, account: Path = SERVICE_ACCOUNT):
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host or not (account / "token").is_file():
            raise Unavailable("the kubernetes launchers need to run in a pod with a ServiceAccount token")
        self.base = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
        self.account = account
        self.context = ssl.create_default_context(cafile=str(account / "ca.crt"))
        self.namespace = os.environ.get("POD_NAMESPACE") or (account / "namespace").read_text().strip()

    def _call(self, method: str, path: str, body: dict | None = None) -> dict | None:
        token = (self.account / "token").read_text().strip()  # re-read each time: projected tokens rotate
        request = urllib.request.Request(self.base + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                                  "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 or (exc.code == 409 and method == "POST"):  # not there; already there
                return None
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError):
                detail = json.loads(detail).get("message", detail)
            raise Unavailable(f"kubernetes {method} {path}: {exc.code} {detail}", retry_after=30) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable(f"kubernetes {method} {path}: {exc}", retry_after=30) from None

    async def call(self, method: str, path: str, body: dict | None = None) -> dict | None:
        """The JSON answer; None for 404 (and for 409 on create); other failures raise Unavailable."""
        return await asyncio.to_thread(self._call, method, path, body)


class KubernetesJobLauncher:
    """Runs each job as a Kubernetes Job (or a PyTorchJob) and follows its events file on the shared store.

    Re-attach: after a trainer restart the job is launched again; its events offset file and a Job labelled with the
    job id tell this launcher the job already runs (or finished), so it follows it instead of starting another."""

    def __init__(self, engine: TrainingEngine, pytorchjob: bool = False, api: KubeAPI | None = None,
                 status_seconds: float = STATUS_SECONDS):
        self.engine = engine
        self.kind = PYTORCHJOB if pytorchjob else JOB
        self.name = "pytorchjob" if pytorchjob else "kubernetes-job"
        self.api = api if api is not None else KubeAPI()  # outside a pod the trainer stays NOT_SERVING, saying why
        self.status_seconds = status_seconds

    async def manifest(self, spec: TrainSpec, job: RunningJob, name: str) -> dict:
        settings, api = self.engine.settings, self.api
        pod_name = os.environ.get("POD_NAME", "")
        pod = await api.call("GET", f"/api/v1/namespaces/{api.namespace}/pods/{pod_name}") if pod_name else None
        if pod is None:
            raise Unavailable(f"cannot read this trainer's pod {pod_name!r} (POD_NAME) for its image")
        template = await api.call("GET", f"/api/v1/namespaces/{api.namespace}/podtemplates/{settings.job_template}")
        if template is None:
            raise WorkerFailed(f"PodTemplate {settings.job_template!r} not found in namespace {api.namespace}")
        nodes = settings.job_nodes if self.kind is PYTORCHJOB else 1
        command = worker_command(self.engine.kind, job.job_dir, settings.job_gpus, nodes,
                                 str(settings.accelerate_config), mixed_precision(spec, settings.job_gpus > 0))
        body = pod_template(template["template"], job_id=job.job_id, image=trainer_image(pod, self.engine.kind),
                            command=command, gpus=settings.job_gpus,
                            container_name="pytorch" if self.kind is PYTORCHJOB else None)
        if self.kind is PYTORCHJOB:
            return pytorchjob_manifest(name, job.job_id, pod_name, body, nodes, owner_reference(pod))
        return job_manifest(name, job.job_id, pod_name, body, owner_reference(pod))

    async def run(self, spec: TrainSpec, job: RunningJob) -> TrainedModel:
        api, name = self.api, f"forgeway-train-{job.job_id}"
        path = self.kind.path(api.namespace, name)
        offsets = job.job_dir / "events.offset"
        follower = EventFollower(job, offset_file=offsets)
        attached = offsets.exists() and (follower.poll() is not None or await api.call("GET", path) is not None)
        if attached:
            job.log(f"re-attached to {self.kind.kind} {name}")
        else:
            jobfolder.prepare(job.job_dir, self.engine.kind, job.job_id, job.request,
                              self.engine.settings.model_dump(mode="json"), job.resume_from)
            offsets.write_text("0")
            follower.offset = 0
            created = await api.call("POST", self.kind.path(api.namespace), await self.manifest(spec, job, name))
            job.log(f"created {self.kind.kind} {name} in namespace {api.namespace}"
                    + ("" if created else " (it already existed)"))
        return await self._follow(job, follower, path)

    async def _follow(self, job: RunningJob, follower: EventFollower, path: str) -> TrainedModel:
        next_status, cancel_sent, deleted, finished = 0.0, 0.0, False, False
        grace = self.engine.settings.grace_seconds
        while follower.poll() is None:
            if job.shutdown_requested.is_set() and not job.cancel_requested.is_set():
                # the Job keeps training while this trainer restarts; it re-attaches then
                raise JobCancelled(follower.step, follower.checkpoint)
            now = time.monotonic()
            if job.cancel_requested.is_set() and not cancel_sent:
                jobfolder.request_cancel(job.job_dir)
                cancel_sent = now
            if cancel_sent and not deleted and now - cancel_sent > grace:  # SIGTERM: the worker checkpoints and ends
                await self._delete(path)
                deleted = True
            if cancel_sent and now - cancel_sent > 3 * grace + 30:
                raise JobCancelled(follower.step, follower.checkpoint)
            if now >= next_status:
                next_status = now + self.status_seconds
                try:
                    state = await self.api.call("GET", path)
                except Unavailable as exc:  # the API server away for a while: the events file still tells the story
                    log.warning("job %s: %s", job.job_id, exc.message)
                    state = {}
                outcome = "deleted" if state is None else ended(state, self.kind)
                if outcome and not cancel_sent:  # its last lines get one status period to show on the shared store
                    if finished and follower.poll() is None:
                        raise WorkerFailed(f"{self.kind.kind} {path.rsplit('/', 1)[-1]} {outcome} without a result"
                                           + await self._termination_message(job.job_id))
                    finished = True
            await asyncio.sleep(POLL_SECONDS)
        if follower.final[0] == "cancelled" and not deleted:
            await self._delete(path)
        return follower.outcome()

    async def _delete(self, path: str) -> None:
        await self.api.call("DELETE", path, {"propagationPolicy": "Background"})

    async def _termination_message(self, job_id: str) -> str:
        """The last log lines of the job's failed pod (FallbackToLogsOnError), as its reason."""
        selector = urllib.parse.quote(f"{JOB_LABEL}={job_id}")
        pods = await self.api.call("GET", f"/api/v1/namespaces/{self.api.namespace}/pods?labelSelector={selector}")
        for pod in (pods or {}).get("items", []):
            for status in pod.get("status", {}).get("containerStatuses", []):
                terminated = status.get("state", {}).get("terminated") or {}
                if terminated.get("exitCode"):
                    return f": exit {terminated['exitCode']}: {(terminated.get('message') or '').strip()[-1500:]}"
        return ""
