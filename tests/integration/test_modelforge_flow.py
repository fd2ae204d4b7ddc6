"""ModelForge's whole flow for its three tasks, against a real gateway with the trl trainer and the hf service: detect
the hardware -> take the profile's recommended settings -> train a LoRA with the `huggingface` provider on
ModelForge-format JSONL -> ask the trained model through the SDK, the CLI and the HTTP API, and get a task-shaped
answer (a completion, a summary, a span of the context with its offsets)."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from forgeway.client import Client
from forgeway.compat.modelforge import ProviderRegistry, detect
from forgeway.gateway.http.app import create_app
from forgeway.gateway.http.serve import BackgroundServer
from forgeway.testing import InProcessStack, run_cli

pytestmark = [pytest.mark.trl, pytest.mark.hf, pytest.mark.slow]

CONTEXT, QUESTION = "The cat 7 sat on the mat.", "Where did the cat sit?"
DOCUMENT = "The cat 3 sat on the mat all day while the dog slept by the door."
ROWS = {  # ModelForge's three dataset formats, 12 rows each (ModelForge and Forgeway need at least 10)
    "text-generation": [{"input": f"Where did cat {i} sit?", "output": " On the mat."} for i in range(12)],
    "summarization": [{"article": f"The cat {i} sat on the mat all day while the dog slept by the door.",
                       "summary": "A cat sat."} for i in range(12)],
    "extractive-question-answering": [
        {"context": f"The cat {i} sat on the mat.", "question": QUESTION,
         "answers": {"text": ["the mat"], "answer_start": [len(f"The cat {i} sat on ")]}} for i in range(12)],
}
BASES = {"text-generation": "llama", "summarization": "t5", "extractive-question-answering": "qa"}
# What a CPU-sized test changes in the recommendation: a few steps, short sequences, a fast learning rate.
QUICK = {"max_steps": 30, "max_seq_length": 64, "learning_rate": 1e-2, "per_device_train_batch_size": 4,
         "gradient_accumulation_steps": 1, "lora_dropout": 0.0}


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    from forgeway import testing
    from forgeway.services.hf.service import HFService
    from forgeway.services.hf.settings import HFSettings
    from forgeway.services.trl.service import TRLService
    from forgeway.services.trl.settings import TRLSettings

    root = tmp_path_factory.mktemp("modelforge-flow")
    testing.build_tiny_llama(root / "llama", seed=0)
    testing.build_tiny_seq2seq(root / "t5")
    testing.build_tiny_qa(root / "qa")
    common = {"home": root / "home", "port": 0, "metrics_port": -1, "host": "127.0.0.1", "log_level": "WARNING"}

    def trl():
        return TRLService(TRLSettings(**common, grace_seconds=5, allowed_roots=[root]))

    def hf():
        bases = [{"name": name, "path": str(root / name)} for name in BASES.values()]
        return HFService(HFSettings(**common, torch_threads=1, model_roots=[root], models=bases))

    with InProcessStack(trl, hf, root=root) as stack, Client(stack.target, timeout=120) as sdk:
        reports = {}
        for task, rows in ROWS.items():
            found = detect(task, client=sdk)
            assert found["model_recommendation"] and "huggingface" in found["available_providers"], found
            settings = {**found["recommended_settings"], **QUICK}
            assert settings["provider"] == "huggingface" and settings["compute_specs"] == found["profile"]
            data = root / f"{task}.jsonl"
            data.write_text("".join(json.dumps(row) + "\n" for row in rows))
            provider = ProviderRegistry(sdk).create_provider("huggingface", str(root / BASES[task]), task,
                                                             found["profile"])
            reports[task] = provider.train(str(data), settings, output_name=f"mf-{BASES[task]}")
            assert reports[task]["state"] == "succeeded", reports[task]["error"]
        with BackgroundServer(create_app(stack.target)) as http:
            yield stack, sdk, reports, http.url


def test_each_trained_model_is_listed_with_its_task_and_provider(flow):
    _, sdk, reports, _ = flow
    listed = {m.name: m for m in sdk.models.list()}
    for task, report in reports.items():
        model = listed[report["model_name"]]
        assert (model.task, model.provider, model.trained_by) == (task, "huggingface", "trl")
        config = json.loads((Path(report["model_path"]) / "modelforge_config.json").read_text())
        assert config["provider"] == "huggingface"
        assert config["pipeline_task"] == {"extractive-question-answering": "question-answering"}.get(task, task)


def test_the_sdk_gets_task_shaped_answers(flow):
    _, sdk, _, _ = flow
    completion = sdk.generate("mf-llama", "Where did cat 3 sit?", max_tokens=4, temperature=0)
    assert completion.usage.completion_tokens > 0 and completion.served_by.startswith("hf/")
    summary = sdk.summarize("mf-t5", DOCUMENT, max_tokens=12)
    assert summary.text and summary.usage.completion_tokens > 0
    answer = sdk.answer("mf-qa", CONTEXT, QUESTION)
    span = answer.answer_span
    assert answer.text == "the mat" and CONTEXT[span.start:span.end] == "the mat" and 0 < span.score <= 1


def test_the_cli_gets_task_shaped_answers(flow):
    stack, sdk, _, _ = flow
    target = ("--target", stack.target)
    run = run_cli("run", "Where did cat 3 sit?", "-m", "mf-llama", "--max-tokens", "4", "--temperature", "0",
                  "--json", *target)
    assert run.returncode == 0 and json.loads(run.stdout)["usage"]["completion_tokens"] > 0, run.stderr
    summary = run_cli("summarize", "mf-t5", DOCUMENT, "--max-tokens", "12", *target)
    assert summary.returncode == 0 and summary.stdout.strip() == sdk.summarize("mf-t5", DOCUMENT, max_tokens=12).text
    answer = run_cli("answer", "mf-qa", "--context", CONTEXT, QUESTION, *target)
    assert (answer.returncode, answer.stdout) == (0, "the mat\n"), answer.stderr


def test_the_http_api_gets_task_shaped_answers(flow):
    _, sdk, _, url = flow
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    chat = client.chat.completions.create(model="mf-llama", messages=[{"role": "user", "content": "Where?"}],
                                          max_tokens=4, temperature=0)
    assert chat.usage.completion_tokens > 0
    summary = client.chat.completions.create(model="mf-t5", messages=[{"role": "user", "content": DOCUMENT}],
                                             max_tokens=12)
    assert summary.choices[0].message.content == sdk.summarize("mf-t5", DOCUMENT, max_tokens=12).text
    answer = client.chat.completions.create(model="mf-qa", messages=[
        {"role": "system", "content": CONTEXT}, {"role": "user", "content": QUESTION}])
    span = answer.choices[0].model_extra["answer"]
    assert answer.choices[0].message.content == "the mat" == CONTEXT[span["start"]:span["end"]] == span["text"]
