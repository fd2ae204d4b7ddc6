"""The OpenAI-compatible HTTP shim: FastAPI in front of any endpoint serving the forgeway.v1 contract."""

from .app import create_app
from .settings import HttpSettings

__all__ = ["HttpSettings", "create_app"]
