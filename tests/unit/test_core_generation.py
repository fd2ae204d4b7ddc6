"""GenerationRequest.from_proto: what the contract accepts, and the field it names when it does not."""

from __future__ import annotations

import pytest

from forgeway.core.errors import InvalidArgument
from forgeway.core.generation import ROLES, GenerationRequest
from forgeway.v1 import generate_pb2


def chat(*roles: str) -> generate_pb2.GenerateRequest:
    return generate_pb2.GenerateRequest(model="m", messages=[generate_pb2.Message(role=r, content="x") for r in roles])


def test_every_openai_role_is_accepted():
    msg = chat(*ROLES)
    msg.messages[ROLES.index("assistant")].tool_calls.add(id="call_1", name="f", arguments="{}")
    msg.messages[ROLES.index("tool")].tool_call_id = "call_1"
    request = GenerationRequest.from_proto(msg)
    assert [m.role for m in request.messages] == list(ROLES)


@pytest.mark.parametrize("role", ["wizard", "User", "function "])
def test_an_unknown_role_is_invalid_naming_the_message(role):
    with pytest.raises(InvalidArgument) as caught:
        GenerationRequest.from_proto(chat("system", "user", role))
    assert caught.value.field == "messages[2].role"
    assert repr(role) in caught.value.message and "allowed: system" in caught.value.message
