"""What `make up` serves for retrieval, end to end: the demo embedding model and reranker as model-store entries
(built by `forgeway demo-model`'s builder), served by a real hf process behind a real gateway, through the HTTP shim
with the official `openai` client and plain HTTP for rerank. Vectors equal sentence-transformers in-process; scores
equal CrossEncoder.predict; a small fixed corpus ranks by cosine as expected."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from forgeway.demo.embedding import build_demo_embedding
from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.serve import BackgroundServer
from forgeway.testing import ServiceProcess

pytestmark = [pytest.mark.hf, pytest.mark.slow]

# Untrained models: "expected" is word overlap — the query's own sentence first, then its near-duplicate, above
# both a sentence sharing one word and an unrelated one (random weights do not order those two reliably).
QUERY = "the fisherman mended his nets at the harbour"
CORPUS = ["the fisherman mended his nets at the harbour",
          "the fisherman mended his old nets by the harbour wall",
          "a fisherman sold bread",
          "quarterly revenue grew eleven percent"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[dict]:
    home: Path = tmp_path_factory.mktemp("retrieval-home")
    embed = build_demo_embedding(home / "models" / "demo-embed")
    rerank = build_demo_embedding(home / "models" / "demo-rerank", seed=1, task="rerank")
    with ServiceProcess("hf", "--home", str(home), "--torch-threads", "1", "--grace-seconds", "1",
                        timeout=180) as hf, \
            ServiceProcess("gateway", "--http-port", "-1", env={"FORGEWAY_BACKENDS": json.dumps({"hf": hf.address})},
                           timeout=60) as gateway, \
            BackgroundServer(create_app(gateway.address)) as shim:
        yield {"url": shim.url, "embed": embed, "rerank": rerank,
               "client": openai.OpenAI(base_url=f"{shim.url}/v1", api_key="k", max_retries=0)}


def in_process(path: Path, texts: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu", local_files_only=True).encode(texts)


def test_the_models_list_shows_both_kinds(stack):
    entries = {m.id: m.model_extra for m in stack["client"].models.list()}
    assert entries["demo-embed"]["task"] == "embedding" and entries["demo-embed"]["dimensions"] > 0
    assert entries["demo-rerank"]["task"] == "rerank"


def vector(embedding) -> np.ndarray:
    """A float list, or the base64 string of little-endian float32 the client hands back when base64 was asked."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.asarray(embedding, dtype=np.float32)


# None: the client's default, which asks for base64 on the wire and decodes it to floats itself.
@pytest.mark.parametrize("encoding", [None, "float", "base64"])
def test_openai_embeddings_equal_sentence_transformers(stack, encoding):
    extra = {"encoding_format": encoding} if encoding else {}
    reply = stack["client"].embeddings.create(model="demo-embed", input=CORPUS, **extra)
    assert isinstance(reply.data[0].embedding, str) == (encoding == "base64")
    got = np.stack([vector(d.embedding) for d in reply.data])
    np.testing.assert_allclose(got, in_process(stack["embed"], CORPUS), atol=1e-5)
    assert reply.usage.prompt_tokens > len(CORPUS)


def test_cosine_ranks_the_corpus_in_the_expected_order(stack):
    client = stack["client"]
    query = np.array(client.embeddings.create(model="demo-embed", input=QUERY).data[0].embedding)
    docs = np.array([d.embedding for d in client.embeddings.create(model="demo-embed", input=CORPUS).data])
    cosine = docs @ query / (np.linalg.norm(docs, axis=1) * np.linalg.norm(query))
    assert list(np.argsort(-cosine)[:2]) == [0, 1], cosine
    assert math.isclose(cosine[0], 1.0, rel_tol=1e-5)


def test_rerank_scores_equal_cross_encoder_predict(stack):
    from sentence_transformers import CrossEncoder

    reply = httpx.post(f"{stack['url']}/v1/rerank", json={"model": "demo-rerank", "query": QUERY,
                                                          "documents": CORPUS, "top_n": 3}, timeout=60)
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    expected = CrossEncoder(str(stack["rerank"]), device="cpu", local_files_only=True).predict(
        [(QUERY, d) for d in CORPUS])
    order = sorted(range(len(CORPUS)), key=lambda i: -expected[i])[:3]
    assert [r["index"] for r in results] == order
    np.testing.assert_allclose([r["relevance_score"] for r in results], [expected[i] for i in order], atol=1e-5)
    assert results[0]["document"]["text"] == CORPUS[order[0]]
