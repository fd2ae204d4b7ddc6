"""Summarization and extractive-QA models behind OpenAI's endpoints: the task each model serves (read from the
target's Capabilities, kept a few seconds), chat and completion bodies turned into those tasks' inputs, and the QA
answer span on a choice.

The convention (README, "HTTP API"): a summarization model summarizes the text of the user messages of a chat
(several are joined by blank lines), or each prompt of a text completion; an extractive-QA model reads its context
from the system (or developer) messages of a chat and the question from its one user message, and answers with the
span of the context as content plus `answer: {text, start, end, score}` on the choice (character offsets into the
context, end exclusive)."""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import Request

from forgeway.core.generation import Task
from forgeway.v1 import generate_pb2

from .errors import OpenAIHTTPError
from .routes_models import capabilities, known_models
from .schemas import ChatCompletionRequest
from .upstream import Upstream

log = logging.getLogger("forgeway.http")
TASKS_TTL_SECONDS = 5.0  # how long the model -> task index is trusted before Capabilities is read again
CONTEXT_ROLES = ("system", "developer")
QA_CONVENTION = "context as the system message, the question as the user message"


class ModelTasks:
    """Which task each model (and alias) of the target serves; re-read when older than the TTL, or at once for a
    name it does not know (a model trained a moment ago). Concurrent readers share one read."""

    def __init__(self, ttl: float = TASKS_TTL_SECONDS):
        self.ttl = ttl
        self._tasks: dict[str, Task] = {}
        self._read_at = float("-inf")
        self._lock = asyncio.Lock()

    async def task(self, model: str, request: Request, target: Upstream) -> Task:
        """The model's task; text generation for a name the target does not serve, or when Capabilities cannot be
        read (the generation call then answers with what is wrong)."""
        if model not in self._tasks or time.monotonic() - self._read_at > self.ttl:
            started = time.monotonic()
            async with self._lock:
                if self._read_at < started:  # nobody read while this request waited
                    await self._read(request, target)
        return self._tasks.get(model, Task.TEXT_GENERATION)

    async def _read(self, request: Request, target: Upstream) -> None:
        try:
            answer = await capabilities(request, target)
        except OpenAIHTTPError as error:  # the generation call that follows answers with the real error
            log.debug("model tasks not read (%s): %s", error.status, error.message)
            return
        tasks: dict[str, Task] = {}
        for info in known_models(answer):
            task = Task.from_proto(info.task) or Task.TEXT_GENERATION
            for name in (info.name, *info.aliases):
                tasks.setdefault(name, task)
        self._tasks, self._read_at = tasks, time.monotonic()


async def model_task(model: str, request: Request, target: Upstream) -> Task:
    """The task of `model` by the app's index (created with the app's first request that asks)."""
    state = request.app.state
    if getattr(state, "model_tasks", None) is None:
        state.model_tasks = ModelTasks()
    return await state.model_tasks.task(model, request, target)


def _refuse(message: str, param: str) -> OpenAIHTTPError:
    return OpenAIHTTPError(400, message, param=param, code="invalid_parameter")


def chat_input(proto: generate_pb2.GenerateRequest, body: ChatCompletionRequest, task: Task) -> None:
    """Replace the messages of a chat request to a summarization or QA model by that task's input (in place)."""
    if task is Task.SUMMARIZATION:
        for i, message in enumerate(body.messages):
            if message.role != "user":
                raise _refuse(f"model {body.model!r} summarizes the text of user messages; messages[{i}] is a "
                              f"{message.role!r} message", f"messages[{i}].role")
        proto.ClearField("messages")
        proto.summarize.document = "\n\n".join(m.text for m in body.messages)
    elif task is Task.EXTRACTIVE_QA:
        context, questions = [], []
        for i, message in enumerate(body.messages):
            if message.role in CONTEXT_ROLES:
                context.append(message.text)
            elif message.role == "user":
                questions.append(message.text)
            else:
                raise _refuse(f"model {body.model!r} answers extractive questions ({QA_CONVENTION}); messages[{i}] "
                              f"is a {message.role!r} message", f"messages[{i}].role")
        if not context:
            raise _refuse(f"model {body.model!r} answers from a context: send it as the system message "
                          f"({QA_CONVENTION})", "messages")
        if len(questions) != 1:
            raise _refuse(f"model {body.model!r} answers one question: send exactly one user message "
                          f"({QA_CONVENTION}); got {len(questions)}", "messages")
        proto.ClearField("messages")
        proto.question_answer.CopyFrom(generate_pb2.QuestionAnswerInput(context="\n\n".join(context),
                                                                        question=questions[0]))


def completion_input(proto: generate_pb2.GenerateRequest, model: str, task: Task) -> None:
    """A text completion to a summarization model summarizes its prompt; QA models take chats only."""
    if task is Task.SUMMARIZATION:
        proto.summarize.document = proto.prompt
        proto.ClearField("prompt")
    elif task is Task.EXTRACTIVE_QA:
        raise _refuse(f"model {model!r} answers extractive questions through /v1/chat/completions ({QA_CONVENTION})",
                      "prompt")


def answer_field(choice: generate_pb2.Choice) -> dict:
    """`answer` on an OpenAI choice for an extractive-QA answer; nothing for other choices."""
    if not choice.HasField("answer_span"):
        return {}
    span = choice.answer_span
    return {"answer": {"text": choice.text, "start": span.start, "end": span.end, "score": span.score}}
