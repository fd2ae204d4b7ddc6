"""LlamaForge's Config as its docs describe it: where the file lives, dotted keys, defaults, profiles, LLAMAFORGE_*
overrides and the backend a path implies; the facade's parameter mapping and backend registry."""

from __future__ import annotations

import json
import pytest

from forgeway.compat.llamaforge import Config, get_backend, list_backends, register_backend
from forgeway.compat.llamaforge.backends import BUILTIN
from forgeway.compat.llamaforge.backends.base import BackendInstance, BaseBackend
from forgeway.compat.llamaforge.model import Model
from forgeway.compat.llamaforge.parameters import sampling, split

ENVIRONMENT = ("LLAMAFORGE_CONFIG", "LLAMAFORGE_CONFIG_PATH", "LLAMAFORGE_DEFAULT_MODEL", "LLAMAFORGE_OPENAI_API_KEY",
               "LLAMAFORGE_MODELS_DIR", "FORGEWAY_HOME")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))


def test_the_file_is_under_forgeway_home_else_llamaforges_own_folder(monkeypatch, tmp_path):
    assert Config().path == tmp_path / "user" / ".llamaforge" / "config.json"
    monkeypatch.setenv("FORGEWAY_HOME", str(tmp_path / "fw"))
    assert Config.load_default().path == tmp_path / "fw" / "llamaforge" / "config.json"
    assert Config().get("model_directories") == [str(tmp_path / "fw" / "llamaforge" / "models")]
    monkeypatch.setenv("LLAMAFORGE_CONFIG_PATH", str(tmp_path / "api-reference.json"))
    assert Config().config_path == tmp_path / "api-reference.json"
    monkeypatch.setenv("LLAMAFORGE_CONFIG", str(tmp_path / "guide.json"))
    assert Config().path == tmp_path / "guide.json"
    assert Config(tmp_path / "given.json").path == tmp_path / "given.json"


def test_a_new_configuration_has_llamaforges_defaults_and_saves_them(tmp_path):
    config = Config(tmp_path / "c.json")
    assert config.get("generation") == {"max_tokens": 256, "temperature": 0.7, "top_p": 0.9, "top_k": 40,
                                        "repetition_penalty": 1.1}
    assert config.get("server.port") == 8000 and config.get("server.host") == "127.0.0.1"
    assert config.get("default_backend") == "llama.cpp" and config.get("default_model") is None
    assert config.get("models") == {} and config.get("plugins") == [] and config.get("tools") == {}
    assert config.save() is True
    assert json.loads((tmp_path / "c.json").read_text())["generation"]["top_k"] == 40


def test_dotted_keys_read_nested_values_and_set_creates_the_dicts(tmp_path):
    config = Config(tmp_path / "c.json")
    config.set("logging.level", "INFO")
    config.set("models.llama-2-7b.parameters.n_gpu_layers", 32)
    assert config.get("logging") == {"level": "INFO"}
    assert config.get("models.llama-2-7b.parameters.n_gpu_layers") == 32
    assert config.get("api_keys.openai", default="no-key-set") == "no-key-set"
    config.set("default_model", "x")
    config.set("default_model.sub", 1)  # a value in the way is replaced by a dict, as LlamaForge does
    assert config.get("default_model") == {"sub": 1}
    config.save()
    reread = Config(tmp_path / "c.json")
    assert reread.get("logging.level") == "INFO" and reread.get("models.llama-2-7b.parameters.n_gpu_layers") == 32


def test_a_file_without_a_section_falls_back_to_the_defaults(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"models": {}, "generation": {"temperature": 0.2}}))
    config = Config(path)
    assert config.get("generation.temperature") == 0.2 and config.get("generation.top_k") == 40
    assert config.get("server.port") == 8000  # the defaults' (absent from the file)
    assert config.get("generation") == config.generation_defaults() == {
        "temperature": 0.2, "max_tokens": 256, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1}
    assert config.config == {"models": {}, "generation": {"temperature": 0.2}}  # the file as it stands


def test_invalid_json_keeps_the_defaults_and_says_so(tmp_path, caplog):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    config = Config(path)
    assert config.get("generation.max_tokens") == 256
    assert config.load() is False and "broken.json" in caplog.text


def test_environment_variables_override_the_file(monkeypatch, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"default_model": "from-file", "api_keys": {"openai": "file-key"},
                                "model_directories": ["/a"]}))
    monkeypatch.setenv("LLAMAFORGE_CONFIG", str(path))
    monkeypatch.setenv("LLAMAFORGE_DEFAULT_MODEL", "llama-2-7b")
    monkeypatch.setenv("LLAMAFORGE_OPENAI_API_KEY", "your-api-key")
    monkeypatch.setenv("LLAMAFORGE_MODELS_DIR", "/models")
    config = Config()
    assert config.get("default_model") == "llama-2-7b" and config.get("api_keys.openai") == "your-api-key"
    assert config.get("models_dir") == "/models" and config.get("model_directories") == ["/models", "/a"]
    config.save()
    saved = json.loads(path.read_text())  # overrides are not written into the file
    assert saved["default_model"] == "from-file" and saved["api_keys"]["openai"] == "file-key"


def test_profiles_override_the_file_while_active(tmp_path):
    config = Config(tmp_path / "c.json")
    config.set("default_model", "llama-2-7b-chat")
    config.create_profile("production")
    config.set_active_profile("production")
    config.set("default_model", "gpt-4")
    assert config.get("default_model") == "gpt-4" and config.get("generation.top_p") == 0.9
    config.save()
    assert Config(tmp_path / "c.json").get("default_model") == "gpt-4"  # the active profile is saved too
    assert Config(tmp_path / "c.json", profile="production").list_profiles() == ["production"]
    config.set_active_profile(None)
    assert config.get("default_model") == "llama-2-7b-chat"
    with pytest.raises(ValueError, match="profile: unknown profile 'staging' \\(known: production\\)"):
        config.set_active_profile("staging")


def test_init_resets_to_the_defaults(tmp_path):
    config = Config(tmp_path / "c.json")
    config.set("generation.temperature", 0.1)
    config.init()
    assert config.get("generation.temperature") == 0.7


@pytest.mark.parametrize("path, backend", [
    ("/models/llama-2-7b.gguf", "llama.cpp"), ("/models/old.bin", "llama.cpp"), ("gpt-4o-mini", "openai"),
    ("gpt-4", "openai"), ("mistralai/Mistral-7B-Instruct-v0.1", "huggingface"), ("/nowhere/plain", "llama.cpp"),
])
def test_the_backend_follows_from_the_path(tmp_path, path, backend):
    assert Config(tmp_path / "c.json").infer_backend(path) == backend


def test_a_local_transformers_folder_is_huggingface_and_the_default_backend_applies(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    config = Config(tmp_path / "c.json")
    assert config.infer_backend(str(folder)) == "huggingface"
    config.set("default_backend", "llama_cpp")  # LlamaForge's own spelling of its default
    assert config.infer_backend(str(tmp_path / "elsewhere")) == "llama.cpp"
    entry = config.add_model("mistral", "mistralai/Mistral-7B-Instruct-v0.1", parameters={"device": "cpu"},
                             metadata={"license": "apache-2.0"})
    assert entry == {"path": "mistralai/Mistral-7B-Instruct-v0.1", "backend": "huggingface",
                     "parameters": {"device": "cpu"}, "metadata": {"license": "apache-2.0"}}
    assert config.get_model("mistral") == entry and config.list_models() == ["mistral"]
    assert config.remove_model("mistral") is True and config.remove_model("mistral") is False


def test_backend_default_parameters_come_from_the_backends_section(tmp_path):
    config = Config(tmp_path / "c.json")
    config.set("backends", {"llama.cpp": {"default_parameters": {"n_gpu_layers": 32, "n_ctx": 2048}}})
    assert config.backend_parameters("llama_cpp") == {"n_gpu_layers": 32, "n_ctx": 2048}
    assert config.backend_parameters("openai") == {}


def test_parameters_split_into_load_options_and_generation():
    options, generation = split("llamacpp", {"n_gpu_layers": 32, "context_length": 2048, "temperature": 0.7})
    assert options == {"n_gpu_layers": 32, "n_ctx": 2048} and generation == {"temperature": 0.7}
    options, _ = split("hf", {"device": "cuda", "torch_dtype": "bfloat16", "trust_remote_code": True,
                              "context_length": 256})
    assert options == {"device": "cuda", "torch_dtype": "bfloat16", "trust_remote_code": True, "max_length": 256}
    assert sampling({"max_new_tokens": 5, "repeat_penalty": 1.2, "do_sample": False, "temperature": 0.9}) == {
        "max_tokens": 5, "repetition_penalty": 1.2, "temperature": 0.0}
    with pytest.raises(ValueError, match="unknown generation parameters: colour"):
        sampling({"colour": "red"})


class Documented(BaseBackend):
    def load_model(self, model_path, parameters=None):
        self.loaded = (model_path, parameters)

    def generate(self, prompt, parameters=None):
        return f"{prompt}|{sorted((parameters or {}).items())}"


class Seeded:
    """LlamaForge's code signatures, not subclassing anything of Forgeway's."""

    @property
    def name(self):
        return "seeded"

    def load_model(self, model: Model) -> None:
        self.model = model

    def generate(self, prompt: str, **kwargs) -> str:
        return f"{prompt}|{sorted(kwargs.items())}"


def test_a_backend_is_called_in_the_style_its_class_declares():
    documented = BackendInstance(Documented())
    documented.load(Model("m", "/p", {"parameters": {"a": 1}}))
    assert documented.backend.loaded == ("/p", {"a": 1})
    assert documented.generate("x", {"t": 0.5}) == "x|[('t', 0.5)]"
    seeded = BackendInstance(Seeded())
    seeded.load(Model("m", "/p", {"parameters": {"a": 1}}))
    assert seeded.backend.model.name == "m" and seeded.backend.model.parameters == {"a": 1}
    assert seeded.generate("x", {"t": 0.5}) == "x|[('t', 0.5)]" and seeded.name == "seeded"


def test_the_registry_lists_the_documented_backends_then_custom_ones():
    assert list_backends()[:3] == ["llama.cpp", "huggingface", "openai"] == list(BUILTIN)
    register_backend("seeded_style", Seeded)
    assert get_backend("seeded_style") is Seeded and list_backends()[-1] == "seeded_style"
    assert get_backend("llama_cpp").__name__ == "LlamaCppBackend" and get_backend("hf").kind == "hf"
    with pytest.raises(ValueError, match="Backend 'nope' not available \\(known: llama.cpp, huggingface, openai"):
        get_backend("nope")
    with pytest.raises(ValueError, match="name: 'llama_cpp' is a built-in backend"):
        register_backend("llama_cpp", Seeded)
    with pytest.raises(TypeError, match="backend_class"):
        register_backend("bad", object)


def test_the_base_backend_is_the_documented_interface():
    base = BaseBackend()
    for call in (lambda: base.load_model("/p", parameters={}), lambda: base.generate("x", parameters={}),
                 lambda: base.generate_stream("x"), base.is_model_loaded, base.get_model_info):
        with pytest.raises(NotImplementedError):
            call()
    assert base.unload_model() is None
