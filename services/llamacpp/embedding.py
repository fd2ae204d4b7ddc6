"""Embed and Rerank through a model's llama-server child: one `/tokenize` call counts the tokens of every input (the
service cuts those too long), one `/embedding` call pools the token ids of all inputs, and `/rerank` scores the query
against every document. llama-server batches the inputs of a call, and those of concurrent calls, over its slots.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx

from forgeway.core.embeddings import Embedding, EmbeddingRequest, RerankRequest, too_long
from forgeway.core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from forgeway.core.generation import Task

from .llama_server import send
from .native import message_of
from .retrieval import GgufFacts, RetrievalModel, cut
from .settings import ModelConfig

# Where one text ends in a /tokenize answer for several: not a token id; /tokenize passes the numbers of a mixed
# prompt (texts and ids) through as they are, and tokenizes each text on its own.
SPLIT = -1
# llama-server's embd_normalize: 2 is the Euclidean (L2) norm, -1 leaves the pooled vector as it is.
L2, RAW = 2, -1
PROBE = "a"


async def _post(client: httpx.AsyncClient, path: str, body: dict, field: str):
    try:
        response = await send(client, path, body, close=True)
    except httpx.TransportError as exc:
        raise Unavailable(f"llama-server went away: {type(exc).__name__}", retry_after=1.0) from None
    if response.status_code == 200:
        return response.json()
    message = message_of(response.status_code, response.content)
    if response.status_code == 400:
        raise InvalidArgument(field, f"llama-server: {message}")
    if response.status_code == 429:
        raise ResourceExhausted(f"llama-server: {message}", retry_after=1.0)
    raise Unavailable(f"llama-server answered HTTP {response.status_code}: {message}", retry_after=1.0)


async def _get(client: httpx.AsyncClient, path: str) -> dict:
    try:
        return (await client.get(path, timeout=10.0)).json()
    except httpx.TransportError as exc:
        raise Unavailable(f"llama-server went away: {type(exc).__name__}", retry_after=1.0) from None


async def _token_lists(client: httpx.AsyncClient, texts: list[str], parse_special: bool, field: str) -> list[list[int]]:
    """The token ids of each text, without the special tokens a model adds around a text, in one /tokenize call.
    Special-token text ("[SEP]") is read as that token where `parse_special`, as /embedding reads its inputs; /rerank
    reads the query and documents as plain text."""
    content = [part for text in texts for part in (text, SPLIT)][:-1]
    body = {"content": content, "add_special": False, "parse_special": parse_special}
    lists: list[list[int]] = [[]]
    for token in (await _post(client, "/tokenize", body, field))["tokens"]:
        if token == SPLIT:
            lists.append([])
        else:
            lists[-1].append(token)
    return lists


async def read_model(client: httpx.AsyncClient, config: ModelConfig, facts: GgufFacts, path: Path) -> RetrievalModel:
    """What the child serves: its slot context and vocabulary; where the tokenizer puts its special tokens (from a
    probe text); an embedding model's vector length (from a probe vector) or a reranker's pair overhead (a probe
    pair's token count, so a template's tokens count too)."""
    model = RetrievalModel(config, facts, path)
    props = await _get(client, "/props")
    model.n_ctx = int(props.get("default_generation_settings", {}).get("n_ctx") or config.n_ctx)
    model.n_vocab = int((await _get(client, "/v1/models"))["data"][0]["meta"]["n_vocab"])
    plain = (await _token_lists(client, [PROBE], True, "input"))[0]
    full = (await _post(client, "/tokenize", {"content": PROBE, "add_special": True, "parse_special": True},
                        "input"))["tokens"]
    starts = [i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain]
    if not starts:
        raise FailedPrecondition(f"cannot tell the special tokens llama.cpp adds around a text of {path}: {PROBE!r} "
                                 f"is {plain} alone and {full} with them")
    model.prefix, model.suffix = tuple(full[:starts[0]]), tuple(full[starts[0] + len(plain):])
    if config.task == Task.EMBEDDING:
        vector = await _post(client, "/embedding", {"input": [full], "embd_normalize": RAW}, "input")
        model.dimensions = len(vector[0]["embedding"][0])
    else:
        reply = await _post(client, "/rerank", {"query": PROBE, "documents": [PROBE]}, "documents")
        model.pair_tokens = int(reply["usage"]["prompt_tokens"]) - 2 * len(plain)
    return model


async def embed(client: httpx.AsyncClient, model: RetrievalModel, request: EmbeddingRequest) -> list[Embedding]:
    """One vector per input, in input order; normalize unset takes the model's `normalize` setting."""
    if request.token_ids:
        for i, ids in enumerate(request.token_ids):
            model.check_ids(i, ids)
        inputs = [list(ids) for ids in request.token_ids]
    else:
        inputs = [[*model.prefix, *ids, *model.suffix]  # what /embedding reads for the text
                  for ids in await _token_lists(client, list(request.texts), True, "input")]
    fitted = [model.fit(ids, i, request.truncation, specials=not request.token_ids) for i, ids in enumerate(inputs)]
    normalize = model.config.normalize if request.normalize is None else request.normalize
    body = {"input": [ids for ids, _ in fitted], "embd_normalize": L2 if normalize else RAW}
    rows = sorted(await _post(client, "/embedding", body, "input"), key=lambda row: row["index"])
    return [Embedding(i, row["embedding"][0], len(ids), truncated)
            for i, (row, (ids, truncated)) in enumerate(zip(rows, fitted, strict=True))]


async def rerank(client: httpx.AsyncClient, model: RetrievalModel, request: RerankRequest) -> tuple[list[float], int]:
    """A relevance score per document, in document order (a probability), and the tokens read.

    A pair longer than the model's input loses document tokens (its end, or its start), never query tokens: llama-server
    takes texts only, so the cut document goes back as the text of its kept tokens."""
    query, *documents = await _token_lists(client, [request.query, *request.documents], False, "documents")
    room = model.limit - model.pair_tokens - len(query)
    if room < 1:
        raise InvalidArgument("query", f"{len(query)} tokens leave no room for a document within the model's max "
                                       f"input length of {model.limit} tokens")
    texts = list(request.documents)
    for i, ids in enumerate(documents):
        if len(ids) > room:
            if request.truncation == "none":
                raise too_long(i, len(query) + len(ids) + model.pair_tokens, model.limit, "documents")
            texts[i] = await _shortened(client, ids, room, request.truncation, i)
    body = {"query": request.query, "documents": texts, "top_n": len(texts)}
    reply = await _post(client, "/rerank", body, "documents")
    scores = [0.0] * len(texts)
    for result in reply["results"]:
        score = float(result["relevance_score"])
        scores[int(result["index"])] = score if model.probability else _sigmoid(score)
    return scores, int(reply["usage"]["prompt_tokens"])


async def _shortened(client: httpx.AsyncClient, ids: list[int], room: int, truncation: str, index: int) -> str:
    """The text of a document's first (or last) `room` tokens, checked to tokenize back within `room`."""
    keep = room
    while keep > 0:
        text = (await _post(client, "/detokenize", {"tokens": cut(ids, keep, truncation)}, "documents"))["content"]
        again = len((await _token_lists(client, [text], False, "documents"))[0])
        if again <= room:
            return text
        keep -= again - room
    raise InvalidArgument(f"documents[{index}]", f"cannot be cut to {room} tokens that read back as themselves")


def _sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1.0 + math.exp(logit))
