"""API keys from `authorization: Bearer <key>` metadata, checked against SHA-256 hashes in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from forgeway.core.errors import PermissionDenied, Unauthenticated

from .settings import ApiKey

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a configured key's name, or anonymous when auth is off."""

    name: str
    key: ApiKey | None = None

    def check_model(self, requested: str, resolved: str = "") -> None:
        """The key may use a model named in its list, by the requested name or what its alias resolves to."""
        if self.key is not None and self.key.models and not {requested, resolved} & set(self.key.models):
            raise PermissionDenied(f"API key {self.name!r} may not use model {requested!r}")

    def check_train(self, what: str) -> None:
        if self.key is not None and not self.key.train:
            raise PermissionDenied(f"API key {self.name!r} may not {what}")


def bearer_token(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            scheme, _, token = str(value).partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


class ApiKeys:
    """The configured keys; with none configured, every caller is anonymous."""

    def __init__(self, keys: list[ApiKey]):
        self.keys = [(bytes.fromhex(k.sha256), k) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def authenticate(self, metadata) -> Principal:
        if not self.keys:
            return Principal(ANONYMOUS)
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("missing API key: send `authorization: Bearer <key>`")
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for expected, key in self.keys:  # compare with every key, so timing does not tell which one matched
            if hmac.compare_digest(digest, expected):
                found = key
        if not token or found is None:
            raise Unauthenticated("invalid API key")
        return Principal(found.name, found)
