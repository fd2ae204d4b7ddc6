"""Token ids to text: incremental decoding that never splits a UTF-8 character, and each token's raw bytes."""

from __future__ import annotations

from functools import lru_cache

REPLACEMENT = "\ufffd"
PROMPT_CONTEXT = 4  # prompt tokens decoded with the first new ones, so leading spaces survive (SentencePiece)


def _gpt2_byte_decoder() -> dict[str, int]:
    """The byte-level BPE alphabet: printable stand-ins back to the bytes they encode (GPT-2's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class TokenBytes:
    """Raw bytes and display text of single tokens (tokens can hold part of a UTF-8 character)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self.byte_level = decoder is not None and "ByteLevel" in repr(decoder)
        self.byte_decoder = _gpt2_byte_decoder() if self.byte_level else {}
        self.bytes = lru_cache(maxsize=65536)(self._bytes)

    def _bytes(self, token_id: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if piece is None:
            return b""
        if self.byte_level and all(c in self.byte_decoder for c in piece):
            return bytes(self.byte_decoder[c] for c in piece)
        if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):  # SentencePiece byte fallback
            return bytes([int(piece[3:5], 16)])
        if self.tokenizer.convert_tokens_to_ids(piece) in self.tokenizer.all_special_ids:
            return piece.encode()
        return self.tokenizer.decode([token_id]).replace("▁", " ").encode()

    def text(self, token_id: int) -> str:
        return self.bytes(token_id).decode("utf-8", errors="replace")


class IncrementalText:
    """Turns generated token ids into text deltas of whole characters (the prefix/read offset method)."""

    def __init__(self, tokenizer, prompt_ids: list[int], drop: frozenset[int] = frozenset()):
        self.tokenizer = tokenizer
        self.drop = drop  # with it, special tokens outside it are decoded as text (they delimit tool calls)
        self.ids = list(prompt_ids[-PROMPT_CONTEXT:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def _decode(self, ids: list[int]) -> str:
        if self.drop:
            return self.tokenizer.decode([i for i in ids if i not in self.drop], skip_special_tokens=False,
                                         clean_up_tokenization_spaces=False)
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def add(self, token_id: int) -> str:
        """Append one token; return the text it completes (possibly empty while a character is incomplete)."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        if len(after) > len(before) and not after.endswith(REPLACEMENT):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return after[len(before):]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end decodes as U+FFFD)."""
        before = self._decode(self.ids[self.prefix_offset:self.read_offset])
        after = self._decode(self.ids[self.prefix_offset:])
        self.prefix_offset = self.read_offset = len(self.ids)
        return after[len(before):] if len(after) > len(before) else ""
