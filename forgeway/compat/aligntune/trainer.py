"""The trainer object AlignTune's factory returns, running its job, evaluations and downloads through Forgeway."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from forgeway.client import Client, DatasetSource, InvalidArgumentError, JobFailedError, TrainingJob
from forgeway.client.types import Job

log = logging.getLogger("forgeway.compat.aligntune")

CHECKPOINT_FILE = "forgeway_checkpoint.json"  # save_checkpoint's note of the job and checkpoint it downloaded
CONFIG_FILE = "training_config.yaml"
GENERATED_TASKS = (None, "text-generation", "summarization")  # tasks evaluate() also scores with ROUGE and BLEU
HEAD_SPLIT = re.compile(r"^(?P<name>[\w.-]+)\[:(?P<end>\d+%?)\]$")  # "train[:90%]": the rest is held out


class ForgewayTrainer:
    """What create_*_trainer returns, like AlignTune's trainers: `train()` runs the job; then `evaluate()`,
    `predict()`, `save_model()`, `save_checkpoint()`, `push_to_hub()` work on the trained model through the same
    endpoint; `load_checkpoint()` makes the next `train()` resume. The job id, the backend that ran it and the trained
    model's store name are attributes afterwards. `owns_client`: close the client on `__exit__`."""

    def __init__(self, client: Client, request: dict[str, Any], output_dir: str, algorithm: str, *,
                 owns_client: bool = False):
        self.client = client
        self.request = request
        self.output_dir = output_dir
        self.algorithm = algorithm
        self.owns_client = owns_client
        self.job: TrainingJob | None = None
        self.result: Job | None = None
        self.results: dict[str, Any] = {}
        self.resume_from: tuple[str, str] | None = None
        self._runtime: float | None = None

    def __enter__(self) -> ForgewayTrainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.owns_client:
            self.client.close()

    @property
    def backend(self) -> str:
        """The trainer that ran the job ("trl", "unsloth"), once it has started."""
        return self.result.backend if self.result else self.request["backend"]

    @property
    def model_name(self) -> str | None:
        """The trained model's name in the model store: generate from it by this name."""
        return self.result.artifact.model_name if self.result and self.result.artifact else None

    def train(self) -> dict[str, Any]:
        """Run the job to its end (resuming from load_checkpoint's checkpoint, if any), logging progress;
        RuntimeError when it fails or is cancelled."""
        request = dict(self.request)
        if self.resume_from:
            request["resume_from"] = self.resume_from
        started = time.monotonic()
        try:
            self.job = self.client.train(request.pop("base_model"), request.pop("dataset"), **request)
        except InvalidArgumentError as exc:  # AlignTune raises ValueError for bad arguments; the text names the field
            raise ValueError(str(exc)) from exc
        log.info("training job %s started (%s)", self.job.id, self.algorithm)
        for event in self.job.events():
            if event.kind == "progress" and event.progress.loss is not None:
                log.info("step %d/%d loss %.4f", event.progress.step, event.progress.total_steps, event.progress.loss)
            elif event.kind == "fallback":
                log.warning("fallback from %s to %s: %s", event.fallback.requested, event.fallback.used,
                            event.fallback.reason)
        self._runtime = time.monotonic() - started
        self.result = self.job.get()
        if self.result.state != "succeeded":
            raise RuntimeError(str(JobFailedError(self.result)))
        metrics = dict(self.result.progress.metrics) if self.result.progress else {}
        self.results = {"job_id": self.result.id, "state": self.result.state, "backend": self.result.backend,
                        "model_name": self.model_name,
                        "global_step": self.result.progress.step if self.result.progress else 0,
                        "train_loss": metrics.get("train_loss"), "metrics": metrics}
        return self.results

    def evaluate(self, eval_dataset: Any = None, metric_key_prefix: str = "eval", *, generate_samples: int = 8,
                 max_new_tokens: int = 64) -> dict[str, float]:
        """Evaluate the trained model now: on `eval_dataset` (a path, hub name, upload or rows), else the job's eval
        dataset, else the part of the training split it held out ("train[:90%]" holds out "train[90%:]"), else the
        training data itself. Returns {prefix}_loss, {prefix}_perplexity, {prefix}_samples and, for text
        generation and summarization with prompts to answer, {prefix}_rouge1/rouge2/rougeL/bleu."""
        name = self._trained("evaluate")
        dataset = self._eval_source(eval_dataset)
        samples = generate_samples if self.request.get("task") in GENERATED_TASKS else 0
        try:
            metrics = self.client.models.evaluate(name, dataset, generate_samples=samples,
                                                  max_new_tokens=max_new_tokens)
        except InvalidArgumentError as error:
            if not samples or not any(field == "generate_samples" for field, _ in error.field_violations):
                raise
            log.info("the evaluation data has no prompts to answer: no ROUGE/BLEU")
            metrics = self.client.models.evaluate(name, dataset, max_new_tokens=max_new_tokens)
        prefix = f"{metric_key_prefix}_" if metric_key_prefix else ""
        return {prefix + key.removeprefix("eval_"): value for key, value in metrics.items()}

    def predict(self, inputs: str | list[str], max_new_tokens: int = 128, temperature: float = 1.0,
                top_p: float = 1.0, do_sample: bool = False) -> str | list[str]:
        """Generate from the trained model (served by name through the endpoint); greedy unless do_sample. One
        text for a string, a list for a list."""
        name = self._trained("predict")
        prompts = [inputs] if isinstance(inputs, str) else list(inputs)
        sampling = {"temperature": temperature, "top_p": top_p} if do_sample else {"temperature": 0.0}
        texts = [self.client.generate(name, prompt, max_tokens=max_new_tokens, **sampling).text for prompt in prompts]
        return texts[0] if isinstance(inputs, str) else texts

    def save_model(self, path: str | Path | None = None) -> str:
        """Download the trained model (its adapter or merged weights, as trained) to `path` (default output_dir),
        with training_config.yaml: the request's settings and the job's results. Returns the folder."""
        name = self._trained("save_model")
        folder = self.client.models.download(name, Path(path or self.output_dir))
        import yaml

        config = {"model_name": name, "algorithm": self.algorithm, "request": _plain(self.request),
                  "results": _plain(self.results)}
        (folder / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
        return str(folder)

    def save_checkpoint(self, path: str | Path) -> str:
        """Download the job's latest checkpoint to `path`, with forgeway_checkpoint.json naming the job and the
        checkpoint (load_checkpoint reads it); the factory asks the trainer to keep a succeeded job's last
        checkpoint (TrainOutput.keep_checkpoint)."""
        if self.result is None:
            raise RuntimeError("save_checkpoint: train() has not run")
        folder = self.client.models.download("", Path(path), checkpoint=(self.result.id, ""))
        step = json.loads((folder / "trainer_state.json").read_text())["global_step"]
        note = {"job_id": self.result.id, "checkpoint": f"checkpoint-{step}", "step": step, "backend": self.backend}
        (folder / CHECKPOINT_FILE).write_text(json.dumps(note, indent=2))
        return str(folder)

    def load_checkpoint(self, path: str | Path) -> None:
        """Read save_checkpoint's note: the next train() resumes from that job's checkpoint on its trainer."""
        note_file = Path(path) / CHECKPOINT_FILE
        if not note_file.is_file():
            raise FileNotFoundError(f"{note_file}: not a checkpoint saved by save_checkpoint()")
        note = json.loads(note_file.read_text())
        self.resume_from = (str(note["job_id"]), str(note.get("checkpoint") or ""))

    def get_training_stats(self) -> dict[str, Any]:
        """Step, epoch, the loss history and every logged step's metrics (`log_history`, as transformers' Trainer
        keeps it) from the job's progress events, runtime in seconds and backend."""
        if self.result is None:
            return {"step": 0, "epoch": 0.0, "losses": [], "log_history": [], "runtime": None,
                    "backend": self.backend}
        progress = [e.progress for e in self.client.jobs.events(self.result.id) if e.kind == "progress"]
        last = self.result.progress
        metrics = dict(last.metrics) if last else {}
        return {"step": last.step if last else 0, "total_steps": last.total_steps if last else 0,
                "epoch": last.epoch if last else 0.0,
                "losses": [{"step": p.step, "loss": p.loss} for p in progress if p.loss is not None],
                "log_history": [{"step": p.step, **p.metrics} for p in progress if p.metrics],
                "train_loss": metrics.get("train_loss"), "runtime": metrics.get("train_runtime", self._runtime),
                "backend": self.backend, "job_id": self.result.id, "model_name": self.model_name}

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None,
                    commit_message: str = "Upload fine-tuned model", *, endpoint: str | None = None) -> str:
        """Upload the trained model (downloaded from the model store) to a Hugging Face Hub repository, created if
        missing; needs network access to the hub at `endpoint` (default HF_ENDPOINT, else huggingface.co). Returns
        the repository's URL; RuntimeError naming the endpoint when the hub refuses or cannot be reached."""
        from huggingface_hub import HfApi

        hub = endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
        with tempfile.TemporaryDirectory(prefix="forgeway-push-") as scratch:
            folder = Path(self.save_model(Path(scratch) / "model"))
            api = HfApi(endpoint=hub, token=token)
            try:
                url = api.create_repo(repo_id, private=private, exist_ok=True)
                api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
            except Exception as exc:  # the hub library's errors differ by transport and mode (offline, HTTP, DNS)
                raise RuntimeError(f"push_to_hub: could not upload to {repo_id!r} at {hub}: "
                                   f"{type(exc).__name__}: {exc}") from exc
        return str(url)

    def _trained(self, what: str) -> str:
        if self.model_name is None:
            raise RuntimeError(f"{what}: no trained model; train() has not succeeded")
        return self.model_name

    def _eval_source(self, given: Any) -> Any:
        if given is not None:
            return given
        if self.request.get("eval_dataset") is not None:
            return self.request["eval_dataset"]
        source = DatasetSource.of(self.request["dataset"])
        split = self.request.get("split") or ""
        held = HEAD_SPLIT.match(split)
        if held is None:
            log.warning("no eval dataset and nothing held out: evaluating on the training data")
        return dataclasses.replace(source, split=f"{held['name']}[{held['end']}:]" if held else split,
                                   column_mapping=self.request.get("column_mapping") or {},
                                   config_name=self.request.get("config_name") or "")


def _plain(value: Any) -> Any:
    """Settings and results as YAML-safe values (datasets, LoRA settings and paths spelled out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
