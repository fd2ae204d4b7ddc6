"""The training engine protocol trainers implement (TRL, Unsloth), and what a running job can report."""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from forgeway.services.runtime.errors import NotFound, PermissionDenied
from forgeway.services.runtime.generation import Task
from forgeway.services.runtime.hardware import Hardware, detect
from forgeway.services.runtime.modelstore import ModelStore
from forgeway.services.runtime.settings import ServiceSettings
from forgeway.v1 import jobs_pb2

from .datasets import DatasetStore
from .jobs import JobStore
from .spec import TrainSpec


class TrainingSettings(ServiceSettings):
    """Settings every trainer service has."""

    max_dataset_bytes: int = Field(512 * 1024 * 1024, ge=1, description="Largest dataset upload in bytes.")
    allowed_roots: list[Path] = Field(
        default_factory=list, description="Folders local datasets and base models may come from (besides home)."
    )
    max_queued_jobs: int = Field(64, ge=1, description="Jobs waiting for the device before Train answers RESOURCE_EXHAUSTED.")
    launcher: str = Field(
        "auto", pattern="^(auto|inprocess|accelerate|kubernetes-job|pytorchjob)$",
        description="Where a job runs: inprocess (a thread of this service), accelerate (`accelerate launch`, a process "
        "per GPU), kubernetes-job (a Job from job_template; a PyTorchJob when job_nodes > 1), pytorchjob (Kubeflow); "
        "auto: inprocess for 0-1 visible GPUs, accelerate for more.",
    )
    accelerate_config: Path = Field(
        Path("/etc/accelerate/multi-gpu.yaml"),
        description="accelerate config file of multi-GPU jobs (DDP, FSDP, DeepSpeed); missing: plain DDP.",
    )
    accelerate_processes: int = Field(0, ge=0, description="Processes the accelerate launcher starts (0: one per GPU).")
    job_template: str = Field("forgeway-training-job", description="PodTemplate the Kubernetes launchers build pods from.")
    job_gpus: int = Field(1, ge=0, description="GPUs of each Kubernetes job pod (0: CPU only; more: accelerate launch).")
    job_nodes: int = Field(1, ge=1, description="Nodes of a PyTorchJob (Master plus job_nodes - 1 Workers).")


@dataclass
class TrainingFeatures:
    methods: list[str]
    tasks: list[Task]
    lora: bool = True
    quantizations: list[str] = field(default_factory=list)
    export_formats: list[str] = field(default_factory=lambda: ["adapter", "merged"])


@dataclass
class TrainedModel:
    """What a successful run wrote to the model store."""

    model_name: str
    path: Path
    format: str
    metrics: dict[str, float] = field(default_factory=dict)


class JobCancelled(Exception):
    """Raised by an engine's run() when it stopped because the job was cancelled."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(f"cancelled at step {step}" + (f"; checkpoint kept at {checkpoint}" if checkpoint else ""))
        self.step, self.checkpoint = step, checkpoint


class JobContext:
    """A running job as its engine sees it: where to write, how to report, whether to stop."""

    def __init__(self, job_id: str, jobs: JobStore, home: Path, resume_from: Path | None = None):
        self.job_id = job_id
        self.jobs = jobs
        self.job_dir = home / "jobs" / job_id
        self.job_dir.mkdir(parents=True, exist_ok=True)
        self.resume_from = resume_from
        self.cancel_requested = threading.Event()
        self.shutdown_requested = threading.Event()

    @property
    def should_stop(self) -> bool:
        """Stop at the next step: the job was cancelled, or the service is shutting down (it resumes on restart)."""
        return self.cancel_requested.is_set() or self.shutdown_requested.is_set()

    def progress(self, **fields) -> None:
        metrics = fields.pop("metrics", None) or {}
        self.jobs.append(self.job_id, progress=jobs_pb2.Progress(metrics=metrics, **fields))

    def log(self, text: str, level: str = "info") -> None:
        self.jobs.append(self.job_id, log=jobs_pb2.LogLine(level=level, text=text))

    def checkpoint(self, step: int, path: Path) -> None:
        self.jobs.append(self.job_id, checkpoint=jobs_pb2.Checkpoint(step=step, path=str(path)))

    def artifact(self, model_name: str, path: Path, format: str) -> None:
        """A secondary artifact (a merged model or GGUF beside the adapter); run() returns the primary one."""
        self.jobs.append(self.job_id, artifact=jobs_pb2.Artifact(model_name=model_name, path=str(path), format=format))


class TrainingEngine(abc.ABC):
    """A backend that trains. Subclasses implement availability, features, validate and run.

    Args:
        settings: the service's settings, built once in main.
    """

    kind: ClassVar[str]
    Settings: ClassVar[type[TrainingSettings]] = TrainingSettings

    def __init__(self, settings: TrainingSettings):
        self.settings = settings
        self.ready = False
        self.failure = ""
        self.models = ModelStore(settings.home / "models")
        self.datasets = DatasetStore(settings.home / "datasets", settings.max_dataset_bytes)
        from .runner import JobRunner  # the runner drives this engine

        self.runner = JobRunner(self)

    async def start(self) -> None:
        await self.prepare()
        await self.runner.start()

    async def prepare(self) -> None:
        """Check the engine can run (import its libraries, detect hardware); raise to stay NOT_SERVING."""

    async def stop(self) -> None:
        await self.runner.stop()

    def servicers(self) -> list[tuple[object, object, str]]:
        from .servicers import trainer_servicers

        return trainer_servicers(self, self.runner)

    @abc.abstractmethod
    def availability(self) -> tuple[bool, str]:
        """Whether it can train here, and why not."""

    @abc.abstractmethod
    def features(self) -> TrainingFeatures:
        """Methods, tasks, PEFT and quantization it supports."""

    @abc.abstractmethod
    def validate(self, spec: TrainSpec) -> None:
        """Check the request and its dataset before any model loads; raise InvalidArgument naming column and row."""

    @abc.abstractmethod
    def run(self, spec: TrainSpec, job: JobContext) -> TrainedModel:
        """Train (blocking, in a worker thread), write the artifact to the model store, return it.
        Check job.should_stop at each step; on cancel save a checkpoint and raise JobCancelled."""

    def library_versions(self) -> dict[str, str]:
        return {}

    def hardware(self) -> Hardware:
        """The machine as Capabilities reports it; engines may add their recommended defaults."""
        return detect()

    def allowed(self, path: Path, field_name: str) -> Path:
        """A local path, resolved, if it lies inside home or an allowed root; else PermissionDenied."""
        resolved = path.expanduser().resolve()
        roots = [self.settings.home.resolve(), *(r.expanduser().resolve() for r in self.settings.allowed_roots)]
        if not any(resolved.is_relative_to(root) for root in roots):
            raise PermissionDenied(f"{field_name}: {path} is outside the allowed roots", metadata={"field": field_name})
        return resolved

    def resolve_base_model(self, name: str) -> str:
        """A model-store name, an allowed local path, or (where a hub is reachable) a hub id."""
        if self.models.exists(name):
            return str(self.models.path(name))
        candidate = Path(name)
        if candidate.is_absolute() or name.startswith((".", "~")) or candidate.exists():
            resolved = self.allowed(candidate, "base_model")
            if not resolved.exists():
                raise NotFound("model", name)
            return str(resolved)
        return name
