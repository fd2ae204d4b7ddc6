"""Turns a validated request into a Job for one loaded model: task checks, templating, token limits, choices."""

from __future__ import annotations

import asyncio

from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import GenerationRequest, Task

from .models import LoadedModel
from .sampling import Sampler
from .sequence import Choice, Job
from .structured import JsonConstraint

SEED_MODULUS = 2**63

# What each task cannot do, reported with each model (ModelInfo.unsupported) so that check_servable refuses it at the
# gateway and at admission alike.
TASK_LIMITS: dict[Task, dict[str, str]] = {
    Task.SUMMARIZATION: {"adapters": "adapters are served for text generation only"},
    Task.EXTRACTIVE_QA: {
        name: "extractive QA returns the best span of the context"
        for name in ("multiple_choices", "logprobs", "json_schema", "stop", "adapters", "temperature", "top_p",
                     "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
    },
}


def prompt_ids(loaded: LoadedModel, request: GenerationRequest, name: str) -> tuple[list[int], str, object]:
    """Token ids of the input, the request field they came from, and the encoding (QA needs its offsets)."""
    tokenizer = loaded.tokenizer
    encoding = None
    if request.messages:
        field = "messages"
        try:
            text = tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in request.messages],
                tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # a template error names what is wrong with the messages
            raise InvalidArgument("messages", f"the chat template of {name!r} rejected them: {exc}") from None
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
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
    return ids, field, encoding


async def build_job(loaded: LoadedModel, request: GenerationRequest, name: str, adapter: str, served_by: str,
                    default_max_tokens: int) -> Job:
    """A job with its n choices ready to decode (schemas are compiled here, off the event loop)."""
    ids, field, encoding = prompt_ids(loaded, request, name)
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
    seed = request.sampling.seed
    context = ids if causal else []
    for i in range(request.n):
        sampler = Sampler(request.sampling, loaded.vocab_size, context,
                          None if seed is None else (seed + i) % SEED_MODULUS, loaded.device)
        constraint = JsonConstraint(compiled, loaded.vocab_size) if compiled is not None else None
        job.choices.append(Choice(job, i, sampler, loaded.text(context), loaded.eos, max_tokens, constraint))
    return job
