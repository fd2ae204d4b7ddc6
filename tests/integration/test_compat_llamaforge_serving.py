"""Custom LlamaForge backends served through a gateway: `forgeway serve custom --backend-class module:Class` wraps a
backend class (the documented signature, or LlamaForge's own) as an inference engine; the gateway routes to it, the
SDK and the LlamaForge facade call it, LoadModel makes more models of it."""

from __future__ import annotations

import textwrap
import threading

import pytest

from forgeway.client import APIError, Client
from forgeway.compat.llamaforge.backends.base import BaseBackend
from forgeway.testing import InProcessStack, LoopThread, ServiceProcess, gateway_settings, start_gateway, stop_now

CALLS: list[tuple[str, dict]] = []  # (method, parameters) as the backend in this process received them
CALLS_LOCK = threading.Lock()


class Shouter(BaseBackend):
    """The documented signature: upper-cases the prompt, prefixed by a load parameter; streams word by word."""

    def __init__(self):
        super().__init__()
        self.model = None

    def load_model(self, model_path, parameters=None):
        self.model = {"path": model_path, **(parameters or {})}

    def generate(self, prompt, parameters=None):
        with CALLS_LOCK:
            CALLS.append(("generate", dict(parameters or {})))
        return self.answer(prompt)

    def generate_stream(self, prompt, parameters=None):
        with CALLS_LOCK:
            CALLS.append(("generate_stream", dict(parameters or {})))
        words = self.answer(prompt).split(" ")
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word

    def is_model_loaded(self):
        return self.model is not None

    def answer(self, prompt):
        return f"{self.model['prefix']} {prompt.upper()}"


def custom_service(**settings):
    def build():
        from forgeway.services.custom.engine import CustomSettings
        from forgeway.services.custom.service import CustomService

        values = {"host": "127.0.0.1", "port": 0, "metrics_port": -1,
                  "backend_class": f"{Shouter.__module__}:{Shouter.__qualname__}", **settings}
        return CustomService(CustomSettings(**values))

    return build


@pytest.fixture(scope="module")
def gateway():
    """The custom service serving "loud" (prefix "LOUD:") in this process, behind a gateway."""
    with InProcessStack(custom_service(model_name="loud", model_path="/models/loud",
                                       parameters={"prefix": "LOUD:"})) as stack:
        yield stack.target


@pytest.fixture
def client(gateway):
    with Client(gateway, timeout=30) as sdk:
        yield sdk


def test_the_gateway_routes_to_the_custom_backend(client):
    loud = {m.name: m for m in client.models.list()}["loud"]
    assert loud.backend == "custom" and loud.loaded and loud.source == "/models/loud"
    assert client.generate("loud", "hello there").text == "LOUD: HELLO THERE"
    with client.stream("loud", "one two", temperature=0.5, stop=["TWO"]) as stream:
        deltas = [d.text for d in stream]
    assert "".join(deltas) == "LOUD: ONE " and stream.final.finish_reason == "stop_sequence"
    with CALLS_LOCK:
        assert CALLS[-1] == ("generate_stream", {"temperature": 0.5, "stop": ["TWO"]})


def test_the_custom_backend_refuses_what_it_cannot_do(client):
    with pytest.raises(APIError, match="no chat template"):
        client.chat("loud", [{"role": "user", "content": "hi"}])
    with pytest.raises(APIError, match="multiple_choices"):
        client.generate("loud", "hi", n=2)
    with pytest.raises(APIError) as caught:
        client.generate("nobody", "hi")
    assert caught.value.code.name == "NOT_FOUND"


def test_load_model_makes_another_instance_with_typed_options(client):
    model = client.models.load("quiet", "/models/quiet", backend="custom", options={"prefix": "quiet:"})
    assert model.backend == "custom" and model.name == "quiet"
    assert client.generate("quiet", "x").text == "quiet: X" and client.generate("loud", "x").text == "LOUD: X"
    with pytest.raises(APIError, match="already loaded"):
        client.models.load("quiet", "/models/quiet", backend="custom")
    with pytest.raises(APIError, match="adapters"):
        client.models.load("adapted", "/a", backend="custom", base_model="loud")
    client.models.unload("quiet")
    assert "quiet" not in {m.name for m in client.models.list()}


def test_the_llamaforge_facade_uses_the_served_custom_model_with_its_generation_defaults(client, tmp_path):
    from forgeway.compat.llamaforge import LlamaForge

    forge = LlamaForge(tmp_path / "config.json", client=client)
    assert forge.load_model("loud") is True
    assert forge.generate("abc") == "LOUD: ABC"
    with CALLS_LOCK:  # the configuration's generation defaults (float32 on the wire), all honoured by the service
        assert CALLS[-1] == ("generate", pytest.approx({"max_tokens": 256, "temperature": 0.7, "top_p": 0.9,
                                                        "top_k": 40, "repetition_penalty": 1.1}))
    assert "".join(forge.generate_stream("abc", temperature=0.1, max_new_tokens=3)) == "LOUD: ABC"
    with CALLS_LOCK:
        assert CALLS[-1] == ("generate_stream", pytest.approx({"max_tokens": 3, "temperature": 0.1, "top_p": 0.9,
                                                               "top_k": 40, "repetition_penalty": 1.1}))


def test_sampling_parameters_the_operator_did_not_declare_are_refused(tmp_path):
    with InProcessStack(custom_service(model_name="plain", parameters={"prefix": ">"}, sampling_params=["temperature"]),
                        gateway=False) as stack, Client(stack.target, timeout=30) as client:
        assert client.generate("plain", "a", temperature=0.2).text == "> A"
        with pytest.raises(APIError, match="top_k"):
            client.generate("plain", "a", top_k=3)


def test_bad_backend_classes_are_refused_naming_the_setting():
    from pydantic import ValidationError

    from forgeway.services.custom.engine import CustomSettings

    for target, why in (("json", "not module:Class"), ("no_such_module:X", "cannot import"),
                        ("json:JSONDecoder", "not a backend class")):
        with pytest.raises(ValidationError, match=f"backend_class[\\s\\S]*{why}"):
            CustomSettings(backend_class=target)
    with pytest.raises(ValidationError, match="unknown sampling parameter 'colour'"):
        CustomSettings(backend_class=f"{Shouter.__module__}:Shouter", sampling_params=["colour"])


SEED_STYLE = '''
"""A backend written against LlamaForge's code (llamaforge/backends/base.py): load_model(model), **kwargs."""
from typing import Any, Dict, Iterator

from forgeway.compat.llamaforge.backends.base import BaseBackend
from forgeway.compat.llamaforge.model import Model


class EchoBackend(BaseBackend):
    def __init__(self) -> None:
        self._model = None

    @property
    def name(self) -> str:
        return "seed-echo"

    def load_model(self, model: Model) -> None:
        if model.get_parameter("fail"):
            raise RuntimeError("cannot load " + model.name)
        self._model = model

    def generate(self, prompt: str, **kwargs: Any) -> str:
        return self._model.get_parameter("greeting") + " " + prompt + " " + str(kwargs.get("max_tokens"))

    def generate_stream(self, prompt: str, **kwargs: Any) -> Iterator[str]:
        raise NotImplementedError("no streaming here")

    def is_model_loaded(self) -> bool:
        return self._model is not None

    def unload_model(self) -> None:
        self._model = None

    def get_model_info(self) -> Dict[str, Any]:
        return {"name": self._model.name}
'''


def test_forgeway_serve_custom_runs_llamaforges_own_signature_behind_a_gateway(tmp_path):
    (tmp_path / "seed_style.py").write_text(textwrap.dedent(SEED_STYLE))
    service = ServiceProcess("custom", "--backend-class", "seed_style:EchoBackend", "--model-name", "seeded",
                             "--parameters", '{"greeting": "hi"}', "--grace-seconds", "0",
                             env={"PYTHONPATH": str(tmp_path)})
    loop = LoopThread()
    with service:
        gateway = loop.run(start_gateway(gateway_settings([service.address])))
        try:
            with Client(f"127.0.0.1:{gateway.port}", timeout=30) as client:
                assert client.generate("seeded", "there", max_tokens=5).text == "hi there 5"
                with pytest.raises(APIError) as caught:
                    list(client.stream("seeded", "there"))
                assert caught.value.code.name == "UNIMPLEMENTED" and "generate_stream" in str(caught.value)
                with pytest.raises(APIError, match="cannot load broken"):
                    client.models.load("broken", "/x", backend="custom", options={"fail": "true"})
        finally:
            loop.run(stop_now(gateway))
            loop.close()


def test_forgeway_serve_custom_names_a_bad_class_in_one_line(tmp_path):
    from forgeway.testing import one_line_error, run_cli

    error = one_line_error(run_cli("serve", "custom", "--backend-class", "nowhere:Nothing", "--port", "0"))
    assert "backend_class" in error and "cannot import 'nowhere:Nothing'" in error
