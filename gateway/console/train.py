"""The Train page, ModelForge's flow: task -> method -> provider -> hardware and base model -> recommended settings ->
dataset -> start. Every step is checked by the trainer itself (CreateJob with validate_only) as it is filled in."""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import gradio as gr

from forgeway.core.enums import TRAINING_QUANTIZATIONS
from forgeway.core.errors import from_rpc_error
from forgeway.v1 import capabilities_pb2, datasets_pb2, train_pb2

from .connection import Console
from .trainform import (TASKS, TRAINER_OF_PROVIDER, TrainForm, base_models, methods_for, providers,
                        recommendation, recommended_settings, split_violations)

CHUNK = 1024 * 1024  # the contract's largest UploadDataset chunk
FILE_TYPES = [".jsonl", ".json", ".csv", ".parquet"]
LABELS = {"epochs": "Epochs", "max_steps": "Max steps (overrides epochs)", "batch_size": "Batch size",
          "gradient_accumulation_steps": "Gradient accumulation steps", "learning_rate": "Learning rate",
          "max_seq_length": "Max sequence length", "lora_r": "LoRA r", "lora_alpha": "LoRA alpha",
          "lora_dropout": "LoRA dropout"}
DEFAULT_PROVIDER = "huggingface"


def _lines(items: list[str], empty: str = "") -> str:
    return "\n".join(f"- {item}" for item in items) if items else empty


def _violation(line: str) -> str:
    where, _, why = line.partition(": ")
    return f"`{where}`: {why}" if why else line


def _hardware_text(provider, rec) -> str:
    hw = provider.hardware
    if hw is None:
        return f"No hardware reported by the {provider.trainer} trainer."
    device = hw.accelerator or hw.device or "unknown device"
    model = f" Recommended base model: `{rec.model}`." if rec is not None and rec.model else ""
    return (f"**Hardware** ({provider.trainer} trainer): {device}, {hw.cpu_cores} cores, "
            f"{hw.ram_total / 1024**3:.1f} GiB RAM. **Profile:** `{hw.profile}`. {hw.recommendation}{model}")


async def upload_file(console: Console, path: str, metadata: tuple) -> datasets_pb2.Dataset:
    """Stream a local file to DatasetService.UploadDataset (header with size and sha256, then 1 MiB chunks)."""
    file = Path(path)
    digest = hashlib.sha256()
    with file.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)

    async def messages():
        header = datasets_pb2.DatasetHeader(filename=file.name, size_bytes=file.stat().st_size,
                                            sha256=digest.hexdigest(), purpose="fine-tune")
        yield datasets_pb2.UploadDatasetRequest(header=header)
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                yield datasets_pb2.UploadDatasetRequest(chunk=block)

    return (await console.datasets.UploadDataset(messages(), metadata=metadata)).dataset


def build(console: Console) -> dict[str, gr.Component]:
    gr.Markdown("### 1. Task")
    task = gr.Radio(TASKS, value="text-generation", label="Task", elem_id="train-task")
    gr.Markdown("### 2. Method")
    method = gr.Dropdown([], label="Training method", elem_id="train-method")
    gr.Markdown("### 3. Provider")
    provider = gr.State(DEFAULT_PROVIDER)
    with gr.Row():
        buttons = {name: gr.Button(f"{name} ({trainer})", elem_id=f"train-provider-{name}", size="sm",
                                   variant="primary" if name == DEFAULT_PROVIDER else "secondary")
                   for name, trainer in TRAINER_OF_PROVIDER.items()}
    provider_status = gr.Markdown(elem_id="train-providers")
    gr.Markdown("### 4. Hardware and base model")
    hardware = gr.Markdown(elem_id="train-hardware")
    base_model = gr.Dropdown([], label="Base model (recommended first; or type a store name, path or hub id)",
                             allow_custom_value=True, elem_id="train-base-model")
    gr.Markdown("### 5. Settings (pre-filled from the profile's recommendation)")
    fields: dict[str, gr.Number] = {}
    with gr.Row():
        for name in ("epochs", "max_steps", "batch_size", "gradient_accumulation_steps", "learning_rate",
                     "max_seq_length"):
            fields[name] = gr.Number(label=LABELS[name], elem_id=f"train-{name}", min_width=120)
    with gr.Row():
        use_lora = gr.Checkbox(True, label="Train a LoRA adapter", elem_id="train-use-lora")
        for name in ("lora_r", "lora_alpha", "lora_dropout"):
            fields[name] = gr.Number(label=LABELS[name], elem_id=f"train-{name}", min_width=120)
        quantization = gr.Dropdown(list(TRAINING_QUANTIZATIONS), value="none", label="Quantization (QLoRA)",
                                   elem_id="train-quantization")
    settings_status = gr.Markdown(elem_id="train-settings-status")
    gr.Markdown("### 6. Dataset")
    dataset_file = gr.File(label="Dataset (jsonl, json, csv or parquet)", file_types=FILE_TYPES, type="filepath",
                           elem_id="train-dataset")
    dataset_id, dataset_note = gr.State(""), gr.State("")
    dataset_status = gr.Markdown("No dataset uploaded yet.", elem_id="train-dataset-status")
    gr.Markdown("### 7. Start")
    with gr.Row():
        model_name = gr.Textbox(label="Name of the trained model (optional)", elem_id="train-model-name")
        start = gr.Button("Start training", variant="primary", interactive=False, elem_id="train-start")
    job_id = gr.Textbox(label="Started job", interactive=False, elem_id="train-job-id")
    start_status = gr.Markdown(elem_id="train-start-status")

    form_inputs = {task, method, provider, base_model, *fields.values(), use_lora, quantization, dataset_id,
                   model_name}

    def form_of(values: dict) -> TrainForm:
        """The form from an event's inputs (given as a set, so Gradio passes {component: value})."""
        return TrainForm(values[task], values[method], values[provider], values[base_model],
                         {name: values[box] for name, box in fields.items()}, bool(values[use_lora]),
                         values[quantization] or "none", values[dataset_id], values[model_name] or "")

    async def refresh(task_: str, provider_: str, method_: str | None, request: gr.Request):
        """Providers, methods, hardware, base models and recommended settings for the task, from Capabilities."""
        try:
            caps = await console.backend.Capabilities(capabilities_pb2.CapabilitiesRequest(),
                                                      metadata=console.metadata(request))
        except grpc.RpcError as error:
            message = f"Cannot read the gateway's capabilities: {console.error_text(error)}"
            return [gr.skip()] * (len(buttons) + 2) + [message] + [gr.skip()] * (len(fields) + 4)
        found = providers(caps)
        if not found[provider_].available and any(p.available for p in found.values()):
            provider_ = next(p.name for p in found.values() if p.available)
        chosen = found[provider_]
        methods = methods_for(chosen, task_)
        rec = recommendation(chosen.hardware, task_)
        models = base_models(rec, caps, task_)
        prefill = recommended_settings(rec)
        button_updates = [gr.Button(interactive=p.available, variant="primary" if p.name == provider_ else "secondary")
                          for p in found.values()]
        status = _lines([p.describe() for p in found.values()])
        return [
            *button_updates, provider_,
            gr.Dropdown(choices=methods, value=method_ if method_ in methods else (methods[0] if methods else None)),
            status, _hardware_text(chosen, rec),
            gr.Dropdown(choices=models, value=models[0] if models else None),
            *(prefill[name] for name in fields), prefill["use_lora"], prefill["quantization"],
        ]

    refresh_outputs = [*buttons.values(), provider, method, provider_status, hardware, base_model, *fields.values(),
                       use_lora, quantization]

    async def validate(values: dict, request: gr.Request):
        """The trainer's verdict on the form (CreateJob validate_only): violations by section, advice, Start."""
        form, ds_note = form_of(values), values[dataset_note]
        request_ = form.request()
        settings_lines, dataset_lines, advice = [], [], []
        if form.problems:
            settings_lines = [f"{w}: {why}" for w, why in form.problems]
        else:
            try:
                answer = await console.backend.CreateJob(
                    train_pb2.CreateJobRequest(train=request_, validate_only=True), metadata=console.metadata(request))
                advice = list(answer.advice)
            except grpc.RpcError as error:
                remote = from_rpc_error(error)
                if remote.field_violations:
                    settings_lines, dataset_lines = split_violations(remote.field_violations, bool(form.dataset_id))
                else:
                    settings_lines = [console.error_text(error)]
        ok = not settings_lines and not dataset_lines
        settings_md = _lines([_violation(x) for x in settings_lines]) if settings_lines else \
            "The trainer accepts these settings." + ("\n\n" + _lines([f"Advice: {_violation(a)}" for a in advice])
                                                     if advice else "")
        dataset_md = "\n\n".join(x for x in (ds_note or "No dataset uploaded yet.",
                                             _lines([_violation(x) for x in dataset_lines])) if x)
        if ok and form.dataset_id:
            dataset_md += "\n\nEvery row is valid for this method and task."
        return settings_md, dataset_md, gr.Button(interactive=ok and bool(form.dataset_id))

    validate_inputs = {*form_inputs, dataset_note}
    validate_outputs = [settings_status, dataset_status, start]
    quiet = {"show_progress": "hidden", "trigger_mode": "always_last"}

    # One listener checks the form, whatever changed it, so a slow check never lands after a newer one.
    checks = gr.State(0)  # bumped after each refresh

    def chain(event):
        return event.then(refresh, [task, provider, method], refresh_outputs, **quiet).then(
            lambda n: n + 1, checks, checks, **quiet)

    chain(gr.on(None, lambda: None, None, None, **quiet))  # on page load
    chain(task.input(lambda: None, None, None, **quiet))
    for name, button in buttons.items():
        chain(button.click(lambda n=name: n, None, provider, **quiet))
    gr.on([method.input, base_model.input, *(f.input for f in fields.values()), use_lora.input, quantization.input,
           model_name.input, checks.change, dataset_note.change], validate, validate_inputs, validate_outputs,
          **quiet)

    async def upload(path: str | None, request: gr.Request):
        if not path:
            return "", ""
        try:
            dataset = await upload_file(console, path, console.metadata(request))
        except grpc.RpcError as error:
            return "", "Upload refused:\n\n" + _lines([_violation(x) for x in console.error_text(error).splitlines()])
        return dataset.id, f"Uploaded `{dataset.filename}`: {dataset.rows} rows (`{dataset.id}`)."

    dataset_file.upload(upload, dataset_file, [dataset_id, dataset_note], show_progress="minimal")
    dataset_file.clear(lambda: ("", ""), None, [dataset_id, dataset_note])

    async def begin(values: dict, request: gr.Request):
        form = form_of(values)
        try:
            answer = await console.backend.CreateJob(train_pb2.CreateJobRequest(train=form.request()),
                                                     metadata=console.metadata(request))
        except grpc.RpcError as error:
            return gr.skip(), "Not started:\n\n" + _lines([_violation(x) for x in
                                                            console.error_text(error).splitlines()])
        job = answer.job
        return job.id, f"Started `{job.id}` on the {job.backend} trainer; follow it on the Jobs page."

    start.click(begin, form_inputs, [job_id, start_status], concurrency_limit=None)
    return {"job_id": job_id, "task": task, "base_model": base_model, "start": start}
