"""API keys and admission: hashed keys compared in constant time, in-flight limits, per-key rate limits."""

from __future__ import annotations

import hashlib

import grpc
import pytest

from forgeway.gateway.admission import Admission
from forgeway.gateway.auth import ApiKeys
from forgeway.gateway.settings import GatewaySettings
from forgeway.core.errors import PermissionDenied, ResourceExhausted, Unauthenticated


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


SETTINGS = GatewaySettings(api_keys=[
    {"name": "alice", "sha256": sha("sk-alice"), "models": ["small"], "train": False},
    {"name": "bob", "sha256": sha("sk-bob").upper(), "rate_limit": {"requests_per_minute": 2}},
], rate_limit={"requests_per_minute": 60, "tokens_per_minute": 100}, limits={"max_in_flight": 3})


def test_keys_authenticate_by_hash():
    keys = ApiKeys(SETTINGS.api_keys)
    assert keys.authenticate([("authorization", "Bearer sk-alice")]).name == "alice"
    assert keys.authenticate((("authorization", "bearer sk-bob"),)).name == "bob"
    for metadata, message in [([], "missing API key"), ([("authorization", "Bearer sk-eve")], "invalid API key"),
                              ([("authorization", "Basic sk-alice")], "invalid API key"),
                              ([("authorization", "Bearer ")], "invalid API key")]:
        with pytest.raises(Unauthenticated, match=message) as caught:
            keys.authenticate(metadata)
        assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_auth_off_without_keys():
    assert ApiKeys([]).authenticate([]).name == "anonymous"


def test_key_permissions():
    alice = ApiKeys(SETTINGS.api_keys).authenticate([("authorization", "Bearer sk-alice")])
    alice.check_model("small")
    alice.check_model("alias-of-small", "small")
    with pytest.raises(PermissionDenied, match="may not use model 'big'"):
        alice.check_model("big")
    with pytest.raises(PermissionDenied, match="may not train"):
        alice.check_train("train")


def test_request_rate_limit_per_key_with_retry_after():
    clock = Clock()
    admission = Admission(SETTINGS, clock=clock)
    bob = ApiKeys(SETTINGS.api_keys).authenticate([("authorization", "Bearer sk-bob")])
    admission.admit(bob).done()
    admission.admit(bob).done()
    with pytest.raises(ResourceExhausted) as caught:
        admission.admit(bob)
    assert caught.value.quota == "bob:requests_per_minute"
    assert 29 < caught.value.retry_after <= 30  # one request per 30 s refills
    clock.now += 30
    admission.admit(bob).done()


def test_token_rate_limit_charges_usage_after_the_call():
    clock = Clock()
    admission = Admission(SETTINGS, clock=clock)
    alice = ApiKeys(SETTINGS.api_keys).authenticate([("authorization", "Bearer sk-alice")])
    admission.admit(alice).done(tokens=150)  # may overdraw: usage is known only afterwards
    with pytest.raises(ResourceExhausted, match="100 tokens per minute") as caught:
        admission.admit(alice)
    assert caught.value.retry_after == pytest.approx(0.6 * 51, rel=0.01)  # 51 tokens at 100/min


def test_global_in_flight_limit():
    admission = Admission(SETTINGS, clock=Clock())
    anyone = ApiKeys([]).authenticate([])
    tickets = [admission.admit(anyone) for _ in range(3)]
    with pytest.raises(ResourceExhausted, match="limit of 3"):
        admission.admit(anyone)
    tickets[0].done()
    tickets[0].done()  # idempotent
    admission.admit(anyone)
    assert admission.in_flight == 3


def test_reconfigure_keeps_unchanged_buckets():
    clock = Clock()
    admission = Admission(SETTINGS, clock=clock)
    bob = ApiKeys(SETTINGS.api_keys).authenticate([("authorization", "Bearer sk-bob")])
    admission.admit(bob).done()
    admission.admit(bob).done()
    admission.configure(SETTINGS.model_copy(update={"limits": SETTINGS.limits}))
    with pytest.raises(ResourceExhausted):
        admission.admit(bob)
    faster = GatewaySettings(api_keys=[{"name": "bob", "sha256": sha("sk-bob"),
                                        "rate_limit": {"requests_per_minute": 10}}])
    admission.configure(faster)
    admission.admit(bob).done()
