"""Turns a validated request into a Job for one loaded model: task checks, templating, token limits, choices."""

from __future__ import annotations

import asyncio

from forgeway.core.errors import InvalidArgument, Unsupported
from forgeway.core.generation import GenerationRequest, Task

from . import structured
from .families import needs_grammar
from .models import LoadedModel
from .replies import Reply
from .sampling import Sampler
from .sequence import Choice, Job
from .structured import JsonConstraint

SEED_MODULUS = 2**63

# What each task cannot do, reported with each model (ModelInfo.unsupported) so that check_servable refuses it at the
# gateway and at admission alike.
TASK_LIMITS: dict[Task, dict[str, str]] = {
    Task.EXTRACTIVE_QA: {
        name: "extractive QA returns the best span of the context"
        for name in ("multiple_choices", "logprobs", "json_schema", "stop", "temperature", "top_p",
                     "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
    },
}


def unsupported(task: Task, loaded: LoadedModel | None) -> dict[str, str]:
    """What a model refuses: its task's limits, and tools or reasoning its chat template lacks (known once loaded)."""
    refused = dict(TASK_LIMITS.get(task, {}))
    if task != Task.TEXT_GENERATION:
        refused |= {name: f"{task.value} answers no chat" for name in ("tools", "reasoning")}
    elif loaded is not None:
        refused |= loaded.reply.unsupported()
    return refused


def render(loaded: LoadedModel, request: GenerationRequest, name: str) -> str:
    """The chat as the model's own template writes it: messages, tools, thinking switch, the assistant's turn opened."""
    switch = {"enable_thinking": request.thinking} if request.thinking is not None else {}
    try:
        return loaded.tokenizer.apply_chat_template(request.template_messages, tools=request.template_tools,
                                                    tokenize=False, add_generation_prompt=True, **switch)
    except Exception as exc:  # a template error names what is wrong with the messages
        raise InvalidArgument("messages", f"the chat template of {name!r} rejected them: {exc}") from None


def prompt_ids(loaded: LoadedModel, request: GenerationRequest, name: str) -> tuple[list[int], str, object, str]:
    """Token ids of the input, the request field they came from, the encoding (QA needs its offsets) and the chat."""
    tokenizer = loaded.tokenizer
    encoding = None
    chat = ""
    if request.messages:
        field, chat = "messages", render(loaded, request, name)
        ids = tokenizer(chat, add_special_tokens=False, verbose=False)["input_ids"]
    elif request.document is not None:
        field, ids = "summarize.document", tokenizer(request.document, verbose=False)["input_ids"]
    elif request.question is not None:
        field = "question_answer.context"
        encoding = tokenizer(request.question, request.context, return_offsets_mapping=True, verbose=False)
        ids = encoding["input_ids"]
    else:
        field, ids = "prompt", tokenizer(request.prompt, verbose=False)["input_ids"]
    if not ids:
        if tokenizer.bos_token_id is None:
            raise InvalidArgument(field, "is empty")
        ids = [tokenizer.bos_token_id]
    limit = loaded.context_length
    room = 1 if loaded.task == Task.TEXT_GENERATION else 0  # a prompt leaves room for one new token
    if len(ids) + room > limit:
        raise InvalidArgument(
            field, f"{len(ids)} tokens exceed the context length {limit} of model {name!r} "
                   f"(at most {limit - room} input tokens)")
    return ids, field, encoding, chat


async def build_job(loaded: LoadedModel, request: GenerationRequest, name: str, adapter: str, served_by: str,
                    default_max_tokens: int) -> Job:
    """A job with its n choices ready to decode (schemas are compiled here, off the event loop)."""
    refused = sorted(request.features() & set(unsupported(loaded.task, loaded)))
    if refused:  # a model loaded on first use, after admission judged it without knowing its template
        raise Unsupported(refused[0], "hf", unsupported(loaded.task, loaded)[refused[0]])
    ids, field, encoding, chat = prompt_ids(loaded, request, name)
    job = Job(request, ids, model=name, served_by=served_by, adapter=adapter, encoding=encoding)
    if loaded.task == Task.EXTRACTIVE_QA:
        return job
    causal = loaded.task == Task.TEXT_GENERATION
    max_tokens = request.sampling.max_tokens
    if causal:
        room = loaded.context_length - len(ids)
        if max_tokens and max_tokens > room:
            raise InvalidArgument("max_tokens", f"{max_tokens} is too large: model {name!r} has a context length of "
                                                f"{loaded.context_length} tokens and the {field} takes {len(ids)} "
                                                f"({len(ids)} + {max_tokens} > {loaded.context_length})")
        max_tokens = min(max_tokens or default_max_tokens, room)  # unset: as much as the context leaves
    else:
        max_tokens = max_tokens or default_max_tokens
    compiled = None
    if request.json_schema is not None or request.json_object:
        compiler = await asyncio.to_thread(loaded.grammar_compiler)
        compiled = await asyncio.to_thread(compiler.compile, request.json_schema, request.json_object)
    tag = tool_tag(loaded, request)
    if tag is not None and compiled is not None:
        raise Unsupported("tools", "hf", "strict tools cannot be combined with structured_output")
    if tag is not None:
        compiler = await asyncio.to_thread(loaded.grammar_compiler)
        compiled = await asyncio.to_thread(compiler.compile_tag, tag)
    form = loaded.reply
    parsed = bool(chat) and form.response_template is not None and (request.calls_tools or form.reasoning)
    seed = request.sampling.seed
    context = ids if causal else []
    for i in range(request.n):
        sampler = Sampler(request.sampling, loaded.vocab_size, context,
                          None if seed is None else (seed + i) % SEED_MODULUS, loaded.device)
        constraint = JsonConstraint(compiled, loaded.vocab_size) if compiled is not None else None
        reply = Reply(form, chat, request.tool_choice.callable(request.tools), tag is not None, name,
                      request.tool_choice.forced) if parsed else None
        job.choices.append(Choice(job, i, sampler, loaded.text(context, parsed), loaded.eos, max_tokens, constraint,
                                  reply))
    return job


def tool_tag(loaded: LoadedModel, request: GenerationRequest) -> dict | None:
    """The grammar for forced calls and strict tools; refused where this model's call format cannot be forced."""
    if not needs_grammar(request):
        return None
    choice = request.tool_choice
    tools = choice.callable(request.tools)
    family = loaded.reply.family
    feature = "tool_choice" if choice.forced else "tools"  # the field that asked for the grammar
    why = (f"tool_choice {choice.mode!r}" if choice.forced else "strict tools") + " need constrained decoding"
    if not structured.available():
        raise Unsupported(feature, "hf", f"{why}, and xgrammar is not installed")
    if family is None or not family.constrainable:
        raise Unsupported(feature, "hf", f"{why}, which this model's tool-call format "
                                         f"({family.name if family else 'unknown'}) does not have here")
    for i, tool in enumerate(request.tools):
        if tool in tools and (choice.forced or tool.strict) and tool.parameters is not None:
            structured.check_schema(tool.parameters, f"tools[{i}].function.parameters", feature="tools")
    return family.tool_tag(request)
