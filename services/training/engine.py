"""The training engine protocol trainers implement (TRL, Unsloth), and what a running job can report."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from pydantic import Field

from forgeway.core.errors import NotFound
from forgeway.core.generation import Task
from forgeway.server.hardware import Hardware, detect
from forgeway.core.modelstore import ModelStore, confine
from forgeway.server.settings import ServiceSettings

from .datasets import DatasetStore
from .spec import TrainSpec


class TrainingSettings(ServiceSettings):
    """Settings every trainer service has."""

    max_dataset_bytes: int = Field(512 * 1024 * 1024, ge=1, description="Largest dataset upload in bytes.")
    allowed_roots: list[Path] = Field(
        default_factory=list, description="Folders local datasets and base models may come from (besides home)."
    )
    max_queued_jobs: int = Field(64, ge=1, description="Jobs waiting for the device before Train answers RESOURCE_EXHAUSTED.")
    min_free_disk: int = Field(
        1024**3, ge=0, description="Bytes of disk to keep free under the model store: a job whose estimated outputs "
        "(services/training/disk.py) would leave less is refused with FAILED_PRECONDITION before it is created.",
    )
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


class JobContext(Protocol):
    """A running job as its engine sees it: where to write, how to report, whether to stop. The trainer service
    gives an engine one backed by its job store (runner.RunningJob); a worker process, one backed by the job's
    folder (worker.FileJobContext)."""

    job_id: str
    job_dir: Path
    resume_from: Path | None

    @property
    def should_stop(self) -> bool:
        """Stop at the next step (and checkpoint): the job was cancelled, or its trainer is shutting down."""

    def progress(self, **fields) -> None: ...

    def log(self, text: str, level: str = "info") -> None: ...

    def checkpoint(self, step: int, path: Path) -> None: ...

    def artifact(self, model_name: str, path: Path, format: str) -> None:
        """A secondary artifact (a merged model or GGUF beside the adapter); run() returns the primary one."""


class TrainingEngine(abc.ABC):
    """A backend that trains. Subclasses implement availability, features, validate and run. It knows no transport
    and no job database: the trainer service (service.py) queues and records jobs, and a worker process (worker.py)
    builds the engine alone to run one job.

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

    async def prepare(self) -> None:
        """Check the engine can run (import its libraries, detect hardware); raise to stay NOT_SERVING."""

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
        """The machine as Capabilities reports it (free disk under the model store); engines may add to its advice."""
        return detect(self.models.root)

    def allowed(self, path: Path, field_name: str) -> Path:
        """A local path, resolved, if it lies inside home or an allowed root; else PermissionDenied."""
        return confine(path, [self.settings.home, *self.settings.allowed_roots], field_name)

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
