"""The Models page: the model store with its provenance, load / unload, GGUF export, and delete after typing the
name again."""

from __future__ import annotations

import grpc
import gradio as gr

from forgeway.core.enums import TASK
from forgeway.v1 import capabilities_pb2, jobs_pb2, models_pb2, train_pb2

from .connection import Console
from .formatting import size, when

MODEL_COLUMNS = ["name", "task", "loaded", "backend", "base model", "method", "provider", "trained by", "dataset",
                 "metrics", "created", "description", "source"]
COLUMN_WIDTHS = ["160px", "130px", "70px", "80px", "180px", "70px", "100px", "90px", "160px", "160px", "170px",
                 "240px", "240px"]
LOAD_RPC = "forgeway.v1.ModelService/LoadModel"
AUTO = "auto"
GGUF_OUTTYPES = ["f16", "q8_0", "f32"]  # ExportModel's options["outtype"]; the service validates it
STORE_EDITS = (
    "**Export to GGUF** writes the picked model as a new store entry (default name: the model's + `-gguf`) that the "
    "llama.cpp service loads. **Delete** removes a store entry and its files once you type its name again; a model "
    "some endpoint has loaded is refused until it is unloaded."
)


def _job_metrics(job: jobs_pb2.Job) -> str:
    values = dict(job.progress.metrics)
    if job.progress.HasField("loss"):
        values.setdefault("loss", job.progress.loss)
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()))


def model_rows(models: list[models_pb2.ModelInfo], jobs: list[jobs_pb2.Job]) -> list[list]:
    """One row per model; trained ones get method, dataset and metrics from the job that wrote them."""
    by_artifact = {j.artifact.model_name: j for j in jobs
                   if j.artifact.model_name and j.state == jobs_pb2.JOB_STATE_SUCCEEDED}
    rows = []
    for m in models:
        job = by_artifact.get(m.name)
        rows.append([
            m.name, TASK.name(m.task), "yes" if m.loaded else "no", m.backend, m.base_model,
            job.method if job else "", m.provider, m.trained_by, job.dataset if job else "",
            _job_metrics(job) if job else "", when(m.created), m.description, m.source,
        ])
    return rows


def load_backends(caps: capabilities_pb2.CapabilitiesResponse) -> list[str]:
    """"auto" and the kinds of the endpoints that load models."""
    kinds = sorted({s.capabilities.backend for s in caps.endpoints
                    if LOAD_RPC in s.capabilities.rpcs and s.capabilities.backend})
    return [AUTO, *kinds]


def build(console: Console) -> dict[str, gr.Component]:
    gr.Markdown("### Model store\nEvery model the services know, with where it came from.")
    table = gr.Dataframe(headers=MODEL_COLUMNS, interactive=False, wrap=True, column_widths=COLUMN_WIDTHS,
                         elem_id="models-table")
    with gr.Row():
        name = gr.Dropdown(label="Model", choices=[], allow_custom_value=True, elem_id="models-name")
        backend = gr.Dropdown(label="Load on", choices=[AUTO], value=AUTO, elem_id="models-backend")
    with gr.Row():
        load = gr.Button("Load", variant="primary", elem_id="models-load")
        unload = gr.Button("Unload", elem_id="models-unload")
        refresh = gr.Button("Refresh", elem_id="models-refresh")
    with gr.Row():
        export_name = gr.Textbox(label="Export as", placeholder="MODEL-gguf", elem_id="models-export-name")
        outtype = gr.Dropdown(label="GGUF matrix type", choices=GGUF_OUTTYPES, value="f16", elem_id="models-outtype")
    with gr.Row():
        export = gr.Button("Export to GGUF", elem_id="models-export")
        delete = gr.Button("Delete…", variant="stop", elem_id="models-delete")
    with gr.Column(visible=False, elem_id="models-delete-confirm") as confirm_box:
        question = gr.Markdown(elem_id="models-delete-question")
        typed = gr.Textbox(label="Type the model's name to delete it", elem_id="models-delete-typed")
        with gr.Row():
            confirm = gr.Button("Delete for good", variant="stop", elem_id="models-delete-yes")
            keep = gr.Button("Keep it", elem_id="models-delete-no")
    pending = gr.State("")  # the name Delete was pressed for: what the typed name must match
    message = gr.Markdown(elem_id="models-message")
    gr.Markdown(STORE_EDITS)

    async def listing(request: gr.Request, picked: str = "", note: str = ""):
        metadata = console.metadata(request)
        try:
            models = (await console.models.ListModels(models_pb2.ListModelsRequest(), metadata=metadata,
                                                      timeout=30)).models
        except grpc.aio.AioRpcError as error:
            return [], gr.Dropdown(), gr.Dropdown(), console.error_text(error)
        try:
            jobs = list((await console.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=200), metadata=metadata,
                                                     timeout=30)).jobs)
        except grpc.aio.AioRpcError:
            jobs = []  # no trainer reachable: the listing still stands, without training provenance
        try:
            caps = await console.backend.Capabilities(capabilities_pb2.CapabilitiesRequest(), metadata=metadata,
                                                      timeout=10)
            kinds = load_backends(caps)
        except grpc.aio.AioRpcError:
            kinds = [AUTO]
        names = [m.name for m in models]
        return (model_rows(list(models), jobs), gr.Dropdown(choices=names, value=picked or None),
                gr.Dropdown(choices=kinds), note)

    async def load_model(picked: str, kind: str, request: gr.Request):
        if not picked:
            return await listing(request, note="name: pick a model")
        load_request = models_pb2.LoadModelRequest(name=picked)
        if kind and kind != AUTO:
            load_request.options["backend"] = kind
        try:
            loaded = await console.models.LoadModel(load_request, metadata=console.metadata(request), timeout=600)
        except grpc.aio.AioRpcError as error:
            return await listing(request, picked, console.error_text(error))
        return await listing(request, picked, f"Loaded **{loaded.model.name}** on {loaded.model.backend}.")

    async def unload_model(picked: str, request: gr.Request):
        if not picked:
            return await listing(request, note="name: pick a model")
        try:
            await console.models.UnloadModel(models_pb2.UnloadModelRequest(name=picked),
                                             metadata=console.metadata(request), timeout=60)
        except grpc.aio.AioRpcError as error:
            return await listing(request, picked, console.error_text(error))
        return await listing(request, picked, f"Unloaded **{picked}**.")

    async def export_model(picked: str, output_name: str, matrix: str, request: gr.Request):
        if not picked:
            return await listing(request, note="name: pick a model")
        export_request = models_pb2.ExportModelRequest(name=picked, format=train_pb2.EXPORT_FORMAT_GGUF,
                                                       output_name=output_name.strip(), options={"outtype": matrix})
        try:
            done = await console.models.ExportModel(export_request, metadata=console.metadata(request), timeout=600)
        except grpc.aio.AioRpcError as error:
            return await listing(request, picked, console.error_text(error))
        return await listing(request, picked, f"Exported **{picked}** to **{done.model.name}** (GGUF {matrix}, "
                                              f"{size(done.size_bytes)}): load it on llamacpp to serve it.")

    def ask_to_delete(picked: str):
        if not picked:
            return gr.Column(visible=False), "", "", "", "name: pick a model"
        return (gr.Column(visible=True), f"Delete **{picked}** and its files from the model store? This cannot be "
                f"undone. Type `{picked}` below to confirm.", "", picked, "")

    async def delete_model(doomed: str, confirmation: str, request: gr.Request):
        if not doomed or confirmation.strip() != doomed:
            return (gr.skip(), gr.skip(), gr.skip(), f"Type **{doomed}** exactly to delete it; nothing was deleted.",
                    gr.skip(), gr.skip())
        try:
            await console.models.DeleteModel(models_pb2.DeleteModelRequest(name=doomed),
                                             metadata=console.metadata(request), timeout=60)
        except grpc.aio.AioRpcError as error:
            return (*await listing(request, doomed, console.error_text(error)), gr.Column(visible=False), "")
        return (*await listing(request, note=f"Deleted **{doomed}** from the model store."), gr.Column(visible=False),
                "")

    outputs = [table, name, backend, message]
    refresh.click(listing, outputs=outputs)
    load.click(load_model, inputs=[name, backend], outputs=outputs)
    unload.click(unload_model, inputs=name, outputs=outputs)
    export.click(export_model, inputs=[name, export_name, outtype], outputs=outputs)
    delete.click(ask_to_delete, inputs=name, outputs=[confirm_box, question, typed, pending, message])
    confirm.click(delete_model, inputs=[pending, typed], outputs=[*outputs, confirm_box, typed])
    keep.click(lambda doomed: (gr.Column(visible=False), "", f"Kept **{doomed}**."), inputs=pending,
               outputs=[confirm_box, typed, message])
    gr.on(None, listing, outputs=outputs)
    return {"table": table, "name": name, "refresh": refresh}
