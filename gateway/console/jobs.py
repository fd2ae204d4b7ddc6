"""The Jobs page: the job list, and one job drawn live from its events (loss, learning-rate, grad-norm and eval
curves, ETA, log lines, checkpoints, fallback notices), with cancel and, once it succeeded, "chat with this model"."""

from __future__ import annotations

import grpc
import gradio as gr

from forgeway.core.enums import JOB_STATE
from forgeway.v1 import jobs_pb2

from .connection import Console
from .jobview import CURVES, JobView, progress_text

LIST_COLUMNS = ["job", "state", "progress", "method", "base model", "trainer", "created"]
REFRESH_SECONDS = 5.0
PAGE = 1000  # the contract's largest page
TITLES = {"loss": "Training loss", "learning_rate": "Learning rate", "grad_norm": "Gradient norm"}


def _row(job: jobs_pb2.Job) -> list[str]:
    created = job.created.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if job.HasField("created") else ""
    return [job.id, JOB_STATE.name(job.state), progress_text(job), job.method, job.base_model, job.backend, created]


def build(console: Console) -> dict[str, gr.Component]:
    with gr.Row():
        job = gr.Dropdown([], label="Job", allow_custom_value=True, elem_id="jobs-job", scale=3)
        refresh = gr.Button("Refresh", size="sm", scale=0, elem_id="jobs-refresh")
    listing = gr.Dataframe(headers=LIST_COLUMNS, interactive=False, elem_id="jobs-list", label="Jobs (newest first)")
    header = gr.Markdown("Pick a job to follow it.", elem_id="jobs-summary")
    with gr.Row():
        cancel = gr.Button("Cancel job", variant="stop", visible=False, elem_id="jobs-cancel", scale=0)
        chat_button = gr.Button("Chat with this model", variant="primary", visible=False, elem_id="jobs-chat", scale=0)
        chat_model = gr.Textbox(label="Trained model", interactive=False, visible=False, elem_id="jobs-model")
    points = gr.Markdown(elem_id="jobs-points")
    with gr.Row():
        plots = {curve: gr.LinePlot(x="step", y=curve, title=TITLES[curve], elem_id=f"jobs-{curve}", height=240)
                 for curve in CURVES}
    with gr.Row():
        evals = gr.LinePlot(x="step", y="value", color="metric", title="Evaluation metrics", elem_id="jobs-eval",
                            height=240, visible=False)
        with gr.Column():
            fallbacks = gr.Markdown(elem_id="jobs-fallbacks")
            checkpoints = gr.Markdown(elem_id="jobs-checkpoints")
    logs = gr.Textbox(label="Log", lines=10, max_lines=10, interactive=False, autoscroll=True, elem_id="jobs-log")
    nonce = gr.State(0)  # bumped on each pick: cancels the previous pick's watch, then starts the new one

    async def list_jobs(request: gr.Request):
        try:
            answer = await console.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=100),
                                                 metadata=console.metadata(request))
        except grpc.RpcError as error:
            gr.Warning(f"Cannot list jobs: {console.error_text(error)}")
            return gr.skip(), gr.skip()
        rows = [_row(j) for j in answer.jobs]
        return rows, gr.Dropdown(choices=[j.id for j in answer.jobs])

    list_outputs = [listing, job]
    timer = gr.Timer(REFRESH_SECONDS)
    gr.on([refresh.click, timer.tick], list_jobs, None, list_outputs, show_progress="hidden")
    gr.on(None, list_jobs, None, list_outputs, show_progress="hidden")  # on page load

    def render(view: JobView, note: str = ""):
        return (
            view.summary() + (f"\n\n{note}" if note else ""),
            *(view.frame(curve) for curve in CURVES), gr.LinePlot(value=view.eval_frame(), visible=bool(view.evals)),
            f"{view.points} progress points" + (f" (step {view.progress.step})" if view.progress else ""),
            "\n".join(view.logs),
            ("**Checkpoints**\n\n" + "\n".join(f"- {c}" for c in view.checkpoints)) if view.checkpoints else "",
            ("**Fallback**\n\n" + "\n".join(f"- {f}" for f in view.fallbacks)) if view.fallbacks else "",
            gr.Button(visible=not view.finished),
            gr.Button(visible=view.succeeded and bool(view.model_name)),
            gr.Textbox(value=view.model_name, visible=view.succeeded and bool(view.model_name)),
        )

    view_outputs = [header, *plots.values(), evals, points, logs, checkpoints, fallbacks, cancel, chat_button,
                    chat_model]

    async def follow(job_id: str | None, request: gr.Request):
        """The job's history, then its events live (WatchJob) until it ends; each one redraws the page."""
        if not job_id:
            return
        metadata = console.metadata(request)
        try:
            view = JobView((await console.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata)).job)
            token = ""
            while True:
                page = await console.jobs.ListJobEvents(
                    jobs_pb2.ListJobEventsRequest(job_id=job_id, page_size=PAGE, page_token=token), metadata=metadata)
                for event in page.events:
                    view.apply(event)
                token = page.next_page_token
                if not token:
                    break
            yield render(view)
            if view.finished:
                return
            watch = console.jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=view.last_sequence),
                                          metadata=metadata)
            async for message in watch:
                view.apply(message.event)
                yield render(view)
            final = await console.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=metadata)
            view.job.CopyFrom(final.job)
            yield render(view)
        except grpc.RpcError as error:
            yield (f"Cannot follow `{job_id}`: {console.error_text(error)}", *[gr.skip()] * (len(view_outputs) - 1))

    watching = nonce.change(follow, job, view_outputs, concurrency_limit=None, show_progress="hidden")
    job.change(lambda n: n + 1, nonce, nonce, cancels=[watching], show_progress="hidden").then(
        list_jobs, None, list_outputs, show_progress="hidden")
    listing.select(_picked, None, job, show_progress="hidden")

    async def cancel_job(job_id: str | None, request: gr.Request) -> None:
        """CancelJob; the watch shows the job stop (a log line, then CANCELLED)."""
        if not job_id:
            return
        try:
            await console.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), metadata=console.metadata(request))
        except grpc.RpcError as error:
            gr.Warning(f"Cancel failed: {console.error_text(error)}")

    cancel.click(cancel_job, job, None, show_progress="hidden")
    return {"job": job, "chat_button": chat_button, "chat_model": chat_model, "cancel": cancel, "points": points}


def _picked(event: gr.SelectData) -> str:
    """The job id of the list row clicked."""
    return event.row_value[0]
