"""The Playground page: streaming chat with any served model, sampling settings, a system prompt, an adapter, and the
summarization and extractive-QA tasks in forms of their own, each reply with its tokens/s and time to first token."""

from __future__ import annotations

import gradio as gr
import grpc

from forgeway.core.enums import TASK
from forgeway.core.errors import ForgewayError
from forgeway.v1 import generate_pb2, models_pb2

from . import generation
from .connection import Console
from .generation import NO_ADAPTER

# The tasks a playground form serves, by ModelInfo.task; embedding and rerank models have no form here.
FORM_OF_TASK = {"": "chat", "text-generation": "chat", "summarization": "summarize",
                "extractive-question-answering": "answer"}


def build(console: Console) -> dict[str, gr.Component]:
    """The page; returns {"model": the model dropdown, ...} for the console's cross-page wiring."""
    with gr.Row():
        model = gr.Dropdown(label="Model", choices=[], value=None, allow_custom_value=True, scale=3,
                            elem_id="playground-model")
        adapter = gr.Dropdown(label="Adapter", choices=[NO_ADAPTER], value=NO_ADAPTER, scale=2,
                              elem_id="playground-adapter")
        refresh = gr.Button("Refresh models", size="sm", scale=0, min_width=140, elem_id="playground-refresh")
    model_info = gr.Markdown(elem_id="playground-model-info")
    with gr.Accordion("Sampling (chat and summaries; extractive QA takes none)", open=True):
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature", elem_id="playground-temperature")
            top_p = gr.Slider(0.01, 1, value=1.0, step=0.01, label="Top p", elem_id="playground-top-p")
            top_k = gr.Number(label="Top k (0: off)", value=0, precision=0, minimum=0, elem_id="playground-top-k")
            max_tokens = gr.Number(label="Max tokens", value=64, precision=0, elem_id="playground-max-tokens")
            seed = gr.Textbox(label="Seed (empty: random)", value="", elem_id="playground-seed")
    sampling = [temperature, top_p, top_k, max_tokens, seed]
    with gr.Tabs(selected="chat", elem_id="playground-forms") as forms:
        with gr.Tab("Chat", id="chat", elem_id="playground-tab-chat"):
            system = gr.Textbox(label="System prompt", lines=2, elem_id="playground-system")
            chat = gr.Chatbot(label="Conversation", height=360, elem_id="playground-chat", feedback_options=None)
            message = gr.Textbox(label="Message", placeholder="Type a message, then Enter or Send",
                                 elem_id="playground-message")
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="playground-send")
                stop = gr.Button("Stop", elem_id="playground-stop")
                clear = gr.Button("Clear", elem_id="playground-clear")
            chat_stats = gr.Markdown(elem_id="playground-stats")
        with gr.Tab("Summarize", id="summarize", elem_id="playground-tab-summarize"):
            document = gr.Textbox(label="Document", lines=6, elem_id="playground-document")
            summarize = gr.Button("Summarize", variant="primary", elem_id="playground-summarize")
            summary = gr.Textbox(label="Summary", interactive=False, elem_id="playground-summary")
            summary_stats = gr.Markdown(elem_id="playground-summary-stats")
        with gr.Tab("Question answering", id="answer", elem_id="playground-tab-answer"):
            context = gr.Textbox(label="Context", lines=5, elem_id="playground-context")
            question = gr.Textbox(label="Question", elem_id="playground-question")
            answer = gr.Button("Answer", variant="primary", elem_id="playground-answer")
            span = gr.HighlightedText(label="Answer in its context", color_map={"answer": "green"},
                                      elem_id="playground-span")
            answer_stats = gr.Markdown(elem_id="playground-answer-stats")

    async def list_models(request: gr.Request):
        models = await _served(console, request)
        return gr.Dropdown(choices=[(_label(m), m.name) for m in models])

    async def describe(name: str | None, request: gr.Request):
        """The picked model's adapters, a line about it, the form of its task, and the list (it may be new)."""
        models = await _served(console, request)
        choices = [(_label(m), m.name) for m in models]
        found = next((m for m in models if m.name == name), None)
        if found is None:
            info = f"`{name}` is not served by any backend now." if name else "Pick a model."
            return gr.Dropdown(choices=choices), gr.Dropdown(choices=[NO_ADAPTER], value=NO_ADAPTER), info, gr.Tabs()
        adapters = gr.Dropdown(choices=[NO_ADAPTER, *found.adapters], value=NO_ADAPTER)
        form = gr.Tabs(selected=FORM_OF_TASK.get(TASK.name(found.task), "chat"))
        return gr.Dropdown(choices=choices), adapters, _describe(found), form

    gr.on(triggers=None, fn=list_models, inputs=None, outputs=model)  # on page load
    refresh.click(list_models, inputs=None, outputs=model)
    model.change(describe, inputs=model, outputs=[model, adapter, model_info, forms])

    async def respond(text: str, history: list, name: str | None, adapter_name: str, system_prompt: str,
                      temperature: float, top_p: float, top_k: float | None, max_tokens: float | None,
                      seed: str, request: gr.Request):
        turns = [*history, {"role": "user", "content": text}]
        try:
            prepared = generation.chat_request(name, adapter_name, system_prompt, turns,
                                               (temperature, top_p, top_k, max_tokens, seed))
        except ForgewayError as error:
            yield history, text, generation.problem(error)
            return
        reply = {"role": "assistant", "content": ""}
        yield [*turns, reply], "", "Generating…"
        try:
            async for partial, stats in generation.stream(console, prepared, request):
                reply = {"role": "assistant", "content": partial}
                yield [*turns, reply], "", stats or "Generating…"
        except grpc.RpcError as error:
            yield turns, "", generation.problem(error)

    chat_inputs = [message, chat, model, adapter, system, *sampling]
    sent = send.click(respond, inputs=chat_inputs, outputs=[chat, message, chat_stats])
    submitted = message.submit(respond, inputs=chat_inputs, outputs=[chat, message, chat_stats])
    stop.click(lambda: "Stopped.", inputs=None, outputs=chat_stats, cancels=[sent, submitted])
    clear.click(lambda: ([], ""), inputs=None, outputs=[chat, chat_stats])

    async def summarize_document(text: str, name: str | None, adapter_name: str, temperature: float, top_p: float,
                                 top_k: float | None, max_tokens: float | None, seed: str,
                                 request: gr.Request):
        try:
            prepared = generation.task_request(name, adapter_name, (temperature, top_p, top_k, max_tokens, seed),
                                               summarize=generate_pb2.SummarizeInput(document=text))
        except ForgewayError as error:
            yield "", generation.problem(error)
            return
        yield "", "Generating…"
        try:
            async for partial, stats in generation.stream(console, prepared, request):
                yield partial, stats or "Generating…"
        except grpc.RpcError as error:
            yield "", generation.problem(error)

    summarize.click(summarize_document, inputs=[document, model, adapter, *sampling], outputs=[summary, summary_stats])

    async def answer_question(text: str, ask: str, name: str | None, adapter_name: str, request: gr.Request):
        try:  # no sampling: extractive QA takes the best span of the context
            prepared = generation.task_request(name, adapter_name, None,
                                               question_answer=generate_pb2.QuestionAnswerInput(context=text,
                                                                                                question=ask))
            return await generation.answer(console, prepared, request)
        except (ForgewayError, grpc.RpcError) as error:
            return [], generation.problem(error)

    answer.click(answer_question, inputs=[context, question, model, adapter], outputs=[span, answer_stats])
    return {"model": model, "adapter": adapter, "chat": chat, "message": message, "stats": chat_stats}


async def _served(console: Console, request: gr.Request) -> list[models_pb2.ModelInfo]:
    """The models behind the gateway that a playground form can use, by name."""
    try:
        answer = await console.models.ListModels(models_pb2.ListModelsRequest(), metadata=console.metadata(request))
    except grpc.RpcError as error:
        raise gr.Error(f"Listing the models failed: {console.error_text(error)}") from error
    usable = {m.name: m for m in answer.models if TASK.name(m.task) in FORM_OF_TASK}
    return [usable[name] for name in sorted(usable)]


def _label(model: models_pb2.ModelInfo) -> str:
    task = TASK.name(model.task) or "text-generation"
    return f"{model.name} ({task}{', loaded' if model.loaded else ''})"


def _describe(model: models_pb2.ModelInfo) -> str:
    parts = [f"**{model.name}**", TASK.name(model.task) or "text-generation"]
    if model.backend:
        parts.append(f"served by {model.backend}")
    parts.append("loaded" if model.loaded else "loads on first use")
    if model.base_model:
        parts.append(f"base {model.base_model}")
    if model.adapters:
        parts.append(f"adapters: {', '.join(model.adapters)}")
    return " · ".join(parts)
