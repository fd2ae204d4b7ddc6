"""LlamaForge's OpenAI backend: an upstream model registered at run time on Forgeway's OpenAI proxy."""

from __future__ import annotations

from .forgeway import ForgewayBackend


class OpenAIBackend(ForgewayBackend):
    """The path is the upstream model id (gpt-4o-mini); load parameters api_key, api_base, organization. The key
    travels once, in LoadModel, to the proxy, which keeps it as a secret (never logged or listed)."""

    name, kind = "openai", "openai"
