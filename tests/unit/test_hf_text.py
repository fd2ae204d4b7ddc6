"""Incremental detokenizing never splits a UTF-8 character; token bytes are the token's raw bytes."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.hf

from forgeway.services.hf.text import REPLACEMENT, IncrementalText, TokenBytes  # noqa: E402
from forgeway.demo.tokenizer import train_tokenizer  # noqa: E402

TEXT = "Grüße aus Köln: 東京タワー 🚀🌊 naïve café — fin."


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


def test_deltas_are_whole_characters_and_add_up_to_the_text(tokenizer):
    ids = tokenizer(TEXT)["input_ids"]
    assert len(ids) > len(TEXT.encode()) // 3, "the corpus tokenizer should split these characters into byte tokens"
    text = IncrementalText(tokenizer, [])
    deltas = [text.add(i) for i in ids] + [text.flush()]
    assert "".join(deltas) == TEXT
    assert not any(REPLACEMENT in d for d in deltas)
    assert any(d == "" for d in deltas), "some tokens hold part of a character and release nothing"


def test_prompt_context_is_not_repeated(tokenizer):
    prompt = tokenizer("Once upon a time")["input_ids"]
    more = tokenizer(" there was a boat")["input_ids"]
    text = IncrementalText(tokenizer, prompt)
    assert "".join(text.add(i) for i in more) + text.flush() == " there was a boat"


def test_an_unfinished_character_at_the_end_is_flushed_as_a_replacement(tokenizer):
    pieces = TokenBytes(tokenizer)
    rocket = [i for i in tokenizer("🚀")["input_ids"]]
    text = IncrementalText(tokenizer, [])
    assert text.add(rocket[0]) == ""
    assert text.flush() == REPLACEMENT
    assert b"".join(pieces.bytes(i) for i in rocket) == "🚀".encode()


def test_token_bytes_of_byte_level_tokens(tokenizer):
    pieces = TokenBytes(tokenizer)
    assert pieces.byte_level
    ids = tokenizer(TEXT)["input_ids"]
    assert b"".join(pieces.bytes(i) for i in ids) == TEXT.encode()
    space_word = tokenizer(" the")["input_ids"]
    assert pieces.text(space_word[0]).startswith(" ")
