"""ModelForge's playground (its `PlaygroundModel` of utilities/chat_playground.py) over Forgeway: the model is served
behind the gateway instead of loaded in this process, and its task decides the call.

| ModelForge | Forgeway |
|---|---|
| `PlaygroundModel(model_path)` reads modelforge_config.json there | the same file when `model_path` is a local model folder; else the gateway's model list gives the task (`model_path` may be a model name) |
| text-generation pipeline, sampled (temperature 0.2, top_p 0.92, top_k 50, repetition_penalty 1.3) | `Client.generate` with the same sampling; the completion only, without the prompt in front |
| summarization pipeline | `Client.summarize`, with the same sampling |
| question-answering pipeline `(question=, context=)["answer"]` | `Client.answer`; `answer()` gives the pipeline's whole dict (answer, start, end, score) |
| errors print and answer "" | `generate_response` raises the SDK's typed error; `chat()` prints it and goes on |
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgeway.client import APIError, Client
from forgeway.core.generation import Task

CONFIG_FILE = "modelforge_config.json"
PIPELINE_TASKS = {Task.TEXT_GENERATION.value: "text-generation", Task.SUMMARIZATION.value: "summarization",
                  Task.EXTRACTIVE_QA.value: "question-answering"}
QUIT, SETTINGS = "/bye", "/view_settings"


class PlaygroundModel:
    """A trained model to talk to, by model-store folder or served name."""

    def __init__(self, model_path: str, *, client: Client | None = None, target: str | None = None):
        self.client = client or Client(target)
        folder = Path(model_path).expanduser()
        self.model = folder.name if folder.is_dir() else model_path  # a store folder is served under its name
        if (folder / CONFIG_FILE).is_file():
            self.modelforge_config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        else:
            self.modelforge_config = {"pipeline_task": self._served_pipeline_task()}
        self.pipeline_task = self.modelforge_config.get("pipeline_task", "text-generation")

    def _served_pipeline_task(self) -> str:
        for model in self.client.models.list():
            if self.model == model.name or self.model in model.aliases:
                return PIPELINE_TASKS.get(model.task, model.task)
        raise ValueError(f"model {self.model!r} is not served; served: "
                         + ", ".join(sorted(m.name for m in self.client.models.list())))

    def generate_response(self, prompt: str, context: str | None = None, temperature: float = 0.2,
                          top_p: float = 0.92, top_k: int = 50, repetition_penalty: float = 1.3) -> str:
        """ModelForge's call: the answer to `prompt` (a span of `context` for question answering)."""
        if self.pipeline_task == "question-answering" or context is not None:
            return self.answer(prompt, context or "")["answer"]
        sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k,
                    "repetition_penalty": repetition_penalty}
        if self.pipeline_task == "summarization":
            return self.client.summarize(self.model, prompt, **sampling).text
        return self.client.generate(self.model, prompt, **sampling).text

    def answer(self, question: str, context: str) -> dict[str, Any]:
        """The question-answering pipeline's answer: {"answer", "start", "end", "score"} (offsets into context)."""
        result = self.client.answer(self.model, context, question)
        span = result.answer_span
        return {"answer": result.text, "start": span.start if span else 0, "end": span.end if span else 0,
                "score": span.score if span else 0.0}

    def chat(self, read: Callable[[str], str] = input, write: Callable[..., None] = print) -> None:
        """ModelForge's terminal loop: '/bye' ends it, '/view_settings' shows the model's settings; question
        answering asks for a context, then a query."""
        write(f"Chat started. Type '{QUIT}' to exit or {SETTINGS} to view current model configurations.")
        try:
            while True:
                context = read("Enter Context: ").strip() if self.pipeline_task == "question-answering" else None
                text = read("Enter Query: " if context is not None else "You: ").strip()
                if text.lower() == QUIT:
                    break
                if text.lower() == SETTINGS:
                    write(f"ModelForge settings:\n{self.modelforge_config}")
                    continue
                if context == "":
                    write("Context cannot be empty.")
                    continue
                try:
                    write(f"Assistant: {self.generate_response(text, context=context)}")
                except APIError as error:
                    write(f"Error during generation: {error}")
        except (KeyboardInterrupt, EOFError):
            write("\nInterrupted by user")
