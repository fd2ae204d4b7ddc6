"""ModelForge's other two tasks from training to answers: LoRA adapters trained by the real trl service on a tiny T5
(summarization) and a tiny BERT reader (extractive QA) from ModelForge-format JSONL, served by the real hf service
behind a real gateway, asked through the SDK, the CLI, the official `openai` client over the HTTP shim, and the
ModelForge facade's playground."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest

from forgeway.client import AsyncClient, Client, InvalidArgumentError
from forgeway.core.generation import Task
from forgeway.testing import InProcessStack, run_cli

pytestmark = [pytest.mark.trl, pytest.mark.hf, pytest.mark.slow]

CONTEXT = "The cat 7 sat on the mat."
QUESTION = "Where did the cat sit?"
DOCUMENT = "The cat 3 sat on the mat all day while the dog slept by the door."
SUMMARIES = [{"document": f"The cat {i} sat on the mat all day while the dog slept by the door.",
              "summary": "A cat sat."} for i in range(12)]
QUESTIONS = [{"context": f"The cat {i} sat on the mat.", "question": QUESTION,
              "answers": {"text": ["the mat"], "answer_start": [len(f"The cat {i} sat on ")]}} for i in range(12)]
LORA = {"r": 8, "alpha": 16, "dropout": 0.0}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def stack_of(root: Path) -> InProcessStack:
    """The trl trainer and the hf service sharing one model store, behind a gateway."""
    def trainer():
        from forgeway.services.trl.service import TRLService
        from forgeway.services.trl.settings import TRLSettings

        return TRLService(TRLSettings(home=root / "home", port=0, metrics_port=-1, host="127.0.0.1", grace_seconds=5,
                                      log_level="WARNING", allowed_roots=[root], min_dataset_rows=2))

    def inference():
        from forgeway.services.hf.service import HFService
        from forgeway.services.hf.settings import HFSettings

        models = [{"name": "t5", "path": str(root / "t5")}, {"name": "reader", "path": str(root / "qa")}]
        return HFService(HFSettings(home=root / "home", port=0, metrics_port=-1, host="127.0.0.1", torch_threads=1,
                                    grace_seconds=1, models=models))

    return InProcessStack(trainer, inference, root=root)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from forgeway.testing import build_tiny_qa, build_tiny_seq2seq

    root = tmp_path_factory.mktemp("task-serving")
    build_tiny_seq2seq(root / "t5")
    build_tiny_qa(root / "qa")
    write_jsonl(root / "summaries.jsonl", SUMMARIES)
    write_jsonl(root / "questions.jsonl", QUESTIONS)
    with stack_of(root) as running:
        with Client(running.target, timeout=120) as sdk:
            for name, base, data, task in (("sum-lora", "t5", "summaries.jsonl", "summarization"),
                                           ("qa-lora", "qa", "questions.jsonl", "extractive-question-answering")):
                job = sdk.train(str(root / base), root / data, task=task, lora=LORA, max_steps=30, batch_size=4,
                                learning_rate=1e-2, max_seq_length=64, output_name=name, backend="trl",
                                export=["adapter", "merged"])  # and "<name>-merged", the full model
                assert job.wait(check=True).state == "succeeded"
        yield running


@pytest.fixture
def sdk(stack):
    with Client(stack.target, timeout=120) as client:
        yield client


def assert_span_of(context: str, text: str, span) -> None:
    assert span is not None and 0 <= span.start < span.end <= len(context)
    assert context[span.start:span.end] == text and 0 < span.score <= 1


def test_trained_adapters_are_listed_with_their_tasks(sdk):
    models = {m.name: m for m in sdk.models.list()}
    assert models["sum-lora"].task == Task.SUMMARIZATION.value
    assert models["qa-lora"].task == Task.EXTRACTIVE_QA.value


def test_a_summarization_adapter_summarizes_through_the_sdk(sdk):
    trained = sdk.summarize("sum-lora", DOCUMENT, max_tokens=12)
    base = sdk.summarize("t5", DOCUMENT, max_tokens=12)
    assert trained.text and trained.usage.completion_tokens > 0 and trained.served_by.startswith("hf/")
    assert trained.text != base.text  # the adapter is what answered
    assert "cat" in trained.text.lower() or "sat" in trained.text.lower(), trained.text


def test_a_qa_adapter_answers_with_a_span_of_the_context(sdk):
    trained = sdk.answer("qa-lora", CONTEXT, QUESTION)
    assert_span_of(CONTEXT, trained.text, trained.answer_span)
    assert trained.text == "the mat", trained.text
    base = sdk.answer("reader", CONTEXT, QUESTION)
    assert_span_of(CONTEXT, base.text, base.answer_span)
    assert (base.answer_span.start, base.answer_span.end, base.answer_span.score) != (
        trained.answer_span.start, trained.answer_span.end, trained.answer_span.score)


def test_the_async_client_has_the_same_calls(stack, sdk):
    async def ask():
        async with AsyncClient(stack.target, timeout=120) as client:
            return (await client.summarize("sum-lora", DOCUMENT, max_tokens=12),
                    await client.answer("qa-lora", CONTEXT, QUESTION))

    summary, answer = asyncio.run(ask())
    assert summary.text == sdk.summarize("sum-lora", DOCUMENT, max_tokens=12).text
    assert answer.text == "the mat" and answer.answer_span == sdk.answer("qa-lora", CONTEXT, QUESTION).answer_span


def test_merged_full_models_answer_as_their_adapters_do(sdk):
    assert sdk.summarize("sum-lora-merged", DOCUMENT, max_tokens=12).text == sdk.summarize(
        "sum-lora", DOCUMENT, max_tokens=12).text
    merged, adapter = sdk.answer("qa-lora-merged", CONTEXT, QUESTION), sdk.answer("qa-lora", CONTEXT, QUESTION)
    assert_span_of(CONTEXT, merged.text, merged.answer_span)
    assert (merged.text, merged.answer_span.start, merged.answer_span.end) == (
        adapter.text, adapter.answer_span.start, adapter.answer_span.end)
    assert merged.answer_span.score == pytest.approx(adapter.answer_span.score, rel=1e-3)


def test_an_adapter_of_another_task_is_refused_naming_source(stack, sdk):
    with pytest.raises(InvalidArgumentError) as caught:
        sdk.models.load("misfit", str(stack.root / "home" / "models" / "sum-lora"), base_model="reader",
                        backend="hf")
    assert caught.value.field_violations[0][0] == "source"
    assert "SEQ_2_SEQ_LM" in str(caught.value) and "QUESTION_ANS" in str(caught.value)
    assert sdk.answer("reader", CONTEXT, QUESTION).answer_span is not None  # the base is left as it was


def test_the_gateway_routes_by_task(sdk):
    with pytest.raises(InvalidArgumentError) as caught:
        sdk.generate("sum-lora", context=CONTEXT, question=QUESTION)
    assert caught.value.field_violations[0][0] == "task" and "summarization" in str(caught.value)
    with pytest.raises(InvalidArgumentError) as caught:
        sdk.summarize("qa-lora", DOCUMENT)
    assert caught.value.field_violations[0][0] == "task" and "extractive-question-answering" in str(caught.value)


def test_the_cli_summarizes_and_answers(stack):
    summary = run_cli("summarize", "sum-lora", DOCUMENT, "--max-tokens", "12", "--target", stack.target)
    assert summary.returncode == 0 and summary.stdout.strip(), summary.stderr
    piped = run_cli("summarize", "sum-lora", "-", "--max-tokens", "12", "--target", stack.target, input=DOCUMENT)
    assert piped.returncode == 0 and piped.stdout == summary.stdout
    answer = run_cli("answer", "qa-lora", "--context", CONTEXT, QUESTION, "--json", "--target", stack.target)
    assert answer.returncode == 0, answer.stderr
    choice = json.loads(answer.stdout)["choices"][0]
    assert CONTEXT[choice["answer_span"]["start"]:choice["answer_span"]["end"]] == choice["text"] == "the mat"
    plain = run_cli("answer", "qa-lora", "-c", CONTEXT, QUESTION, "--target", stack.target)
    assert plain.stdout == "the mat\n" and plain.stderr.startswith(f"[{choice['answer_span']['start']}:")
    wrong = run_cli("summarize", "qa-lora", DOCUMENT, "--target", stack.target)
    assert wrong.returncode == 1 and "task" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def http(stack):
    from forgeway.gateway.http.app import create_app
    from forgeway.gateway.http.serve import BackgroundServer

    with BackgroundServer(create_app(stack.target)) as shim:
        yield openai.OpenAI(base_url=f"{shim.url}/v1", api_key="k", max_retries=0)


def test_http_chat_and_completions_summarize(http, sdk):
    expected = sdk.summarize("sum-lora", DOCUMENT, max_tokens=12).text
    chat = http.chat.completions.create(model="sum-lora", messages=[{"role": "user", "content": DOCUMENT}],
                                        max_tokens=12)
    assert chat.choices[0].message.content == expected and chat.usage.completion_tokens > 0
    text = http.completions.create(model="sum-lora", prompt=DOCUMENT, max_tokens=12)
    assert text.choices[0].text == expected
    streamed = "".join(c.choices[0].delta.content or "" for c in http.chat.completions.create(
        model="sum-lora", messages=[{"role": "user", "content": DOCUMENT}], max_tokens=12, stream=True) if c.choices)
    assert streamed == expected
    with pytest.raises(openai.BadRequestError) as caught:
        http.chat.completions.create(model="sum-lora", max_tokens=12, messages=[
            {"role": "system", "content": "be brief"}, {"role": "user", "content": DOCUMENT}])
    assert caught.value.body["param"] == "messages[0].role"


def test_http_qa_takes_the_context_as_system_message_and_answers_with_the_span(http):
    messages = [{"role": "system", "content": CONTEXT}, {"role": "user", "content": QUESTION}]
    reply = http.chat.completions.create(model="qa-lora", messages=messages)
    choice = reply.choices[0]
    answer = choice.model_extra["answer"]
    assert choice.message.content == answer["text"] == "the mat" and choice.finish_reason == "stop"
    assert CONTEXT[answer["start"]:answer["end"]] == answer["text"] and 0 < answer["score"] <= 1
    chunks = list(http.chat.completions.create(model="qa-lora", messages=messages, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "the mat"
    assert [c.choices[0].model_extra["answer"] for c in chunks if c.choices and c.choices[0].finish_reason] == [answer]
    for bad, param in (([{"role": "user", "content": QUESTION}], "messages"),
                       ([messages[0], messages[1], {"role": "user", "content": "and?"}], "messages"),
                       ([*messages, {"role": "assistant", "content": "x"}], "messages[2].role")):
        with pytest.raises(openai.BadRequestError) as caught:
            http.chat.completions.create(model="qa-lora", messages=bad)
        assert caught.value.body["param"] == param
    with pytest.raises(openai.BadRequestError) as caught:
        http.chat.completions.create(model="qa-lora", messages=messages, n=2)
    assert caught.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as caught:
        http.completions.create(model="qa-lora", prompt=QUESTION)
    assert caught.value.body["param"] == "prompt" and "system message" in caught.value.body["message"]


def test_the_modelforge_playground_calls_each_task(stack, sdk):
    from forgeway.compat.modelforge.playground import PlaygroundModel

    folder = stack.root / "home" / "models" / "qa-lora"
    reader = PlaygroundModel(str(folder), client=sdk)  # ModelForge passes the model's folder
    assert reader.pipeline_task == "question-answering" and reader.model == "qa-lora"
    assert reader.generate_response(QUESTION, context=CONTEXT) == "the mat"
    details = reader.answer(QUESTION, CONTEXT)
    assert CONTEXT[details["start"]:details["end"]] == details["answer"] and 0 < details["score"] <= 1
    summarizer = PlaygroundModel("sum-lora", client=sdk)  # or a served name
    assert summarizer.pipeline_task == "summarization"
    sampling = {"temperature": 0.0, "top_p": 0.92, "top_k": 50, "repetition_penalty": 1.3}
    assert summarizer.generate_response(DOCUMENT, **sampling) == sdk.summarize("sum-lora", DOCUMENT, **sampling).text
    said: list[str] = []
    lines = iter([CONTEXT, QUESTION, "", QUESTION, "", "/bye"])  # context, then query, as ModelForge asks
    reader.chat(read=lambda prompt: next(lines), write=said.append)
    assert said[1:] == ["Assistant: the mat", "Context cannot be empty."]
