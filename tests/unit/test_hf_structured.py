"""JSON-schema constrained decoding: unsupported keywords are rejected, and constrained output parses."""

from __future__ import annotations

import json
import random

import pytest

pytestmark = pytest.mark.hf

import torch  # noqa: E402

from forgeway.services.hf import structured  # noqa: E402
from forgeway.core.errors import Unsupported  # noqa: E402
from forgeway.demo.chat_template import IM_END  # noqa: E402
from forgeway.demo.tokenizer import train_tokenizer  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["red", "green"]}, "maxItems": 3},
        "pet": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/pet"}]},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
    "$defs": {"pet": {"type": "object", "properties": {"kind": {"const": "cat"}}, "required": ["kind"]}},
}


@pytest.fixture(scope="module")
def compiler():
    tokenizer = train_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(IM_END)
    return structured.GrammarCompiler(tokenizer, len(tokenizer), [eos]), tokenizer, eos


@pytest.mark.parametrize("schema, keyword", [
    ({"oneOf": [{"type": "string"}]}, "oneOf"),
    ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not"),
    ({"type": "array", "uniqueItems": True}, "uniqueItems"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties"),
    ({"type": "string", "format": "credit-card"}, "credit-card"),
    ({"$ref": "https://example.com/schema.json"}, "local references"),
])
def test_unsupported_keywords_are_rejected_by_name(schema, keyword):
    with pytest.raises(Unsupported, match=keyword) as info:
        structured.check_schema(schema)
    assert info.value.feature == "json_schema"


def _sample(compiler, schema, seed):
    """Random draws under the constraint: whatever the model would say, the grammar decides the shape."""
    grammar, tokenizer, eos = compiler
    constraint = structured.JsonConstraint(grammar.compile(schema, json_object=schema is None), len(tokenizer))
    rng = torch.Generator().manual_seed(seed)
    tokens = []
    for _ in range(400):
        logits = torch.randn(len(tokenizer), generator=rng)
        constraint.mask(logits)
        token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=rng))
        assert constraint.accept(token)
        if token == eos or constraint.done:
            break
        tokens.append(token)
    return tokenizer.decode(tokens), constraint.done


@pytest.mark.parametrize("seed", range(6))
def test_constrained_output_is_valid_json_of_the_schema(compiler, seed):
    text, done = _sample(compiler, SCHEMA, seed)
    if not done:
        pytest.skip("the random walk did not close the object within 400 tokens")
    value = json.loads(text)  # strict: no raw control characters inside strings
    assert set(value) <= {"name", "age", "tags", "pet"} and {"name", "age", "tags"} <= set(value)
    assert isinstance(value["name"], str) and 1 <= len(value["name"]) <= 12
    assert isinstance(value["age"], int) and 0 <= value["age"] <= 120
    assert set(value["tags"]) <= {"red", "green"} and len(value["tags"]) <= 3
    assert value.get("pet") in (None, {"kind": "cat"})


def test_json_object_mode_gives_an_object(compiler):
    random.seed(0)
    results = [_sample(compiler, None, seed) for seed in range(4)]
    finished = [json.loads(text) for text, done in results if done]
    assert finished and all(isinstance(v, dict) for v in finished)
