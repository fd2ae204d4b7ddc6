"""The ChatML special tokens and chat template of the demo model (and of the tiny models tests build)."""

from __future__ import annotations

import re

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# ChatML. The assistant's content and its closing <|im_end|> sit inside
# {% generation %} so that apply_chat_template(..., return_assistant_tokens_mask=True)
# marks exactly the tokens an assistant-only loss should train on.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_GENERATION_TAG = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


def plain_chat_template(template: str = CHAT_TEMPLATE) -> str:
    """``template`` without transformers' generation tags, for llama.cpp and plain Jinja."""
    return _GENERATION_TAG.sub("", template)
