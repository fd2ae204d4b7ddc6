"""The OpenAI proxy backend: any OpenAI-compatible upstream behind the Forgeway contract."""
