"""build_console(): the console's gr.Blocks, one tab per page, and the wiring between pages."""

from __future__ import annotations

import gradio as gr

from . import jobs, models, overview, playground, train
from .connection import Console

PAGES = (
    ("overview", "Overview", overview),
    ("train", "Train", train),
    ("jobs", "Jobs", jobs),
    ("playground", "Playground", playground),
    ("models", "Models", models),
)


def build_console(console: Console) -> gr.Blocks:
    """The Blocks app: tabs "overview", "train", "jobs", "playground", "models", each built by its module."""
    with gr.Blocks(title="Forgeway console", analytics_enabled=False) as blocks:
        with gr.Row():
            gr.Markdown("## Forgeway console")
            if console.keys_enabled:
                gr.Button("Log out", link="/logout", size="sm", scale=0, elem_id="logout")
        with gr.Tabs(selected="overview") as tabs:
            pages: dict[str, dict[str, gr.Component]] = {}
            for tab_id, label, module in PAGES:
                with gr.Tab(label, id=tab_id, elem_id=f"tab-{tab_id}"):
                    pages[tab_id] = module.build(console)
        _wire(tabs, pages)
        _wire_training(tabs, pages)
    return blocks


def _wire_training(tabs: gr.Tabs, pages: dict[str, dict[str, gr.Component]]) -> None:
    """A job started on the Train page opens on the Jobs page, followed live."""
    started, job = pages["train"].get("job_id"), pages["jobs"].get("job")
    if started is None or job is None:
        return

    def open_job(job_id: str):
        return (gr.Tabs(selected="jobs"), gr.Dropdown(value=job_id)) if job_id else (gr.skip(), gr.skip())

    started.change(open_job, inputs=started, outputs=[tabs, job])


def _wire(tabs: gr.Tabs, pages: dict[str, dict[str, gr.Component]]) -> None:
    """Jobs' "chat with this model" opens the playground with the trained model picked."""
    chat_button = pages["jobs"].get("chat_button")
    chat_model = pages["jobs"].get("chat_model")
    model = pages["playground"].get("model")
    if chat_button is None or chat_model is None or model is None:
        return

    def open_playground(name: str):
        return gr.Tabs(selected="playground"), gr.Dropdown(value=name)

    chat_button.click(open_playground, inputs=chat_model, outputs=[tabs, model])
