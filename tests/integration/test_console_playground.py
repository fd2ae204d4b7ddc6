"""The console's Playground in a real chromium, against real trl + hf + gateway processes: streamed chat with the tiny
Llama, sampling settings that take effect, the numbers line, field errors inline, a model that appears on refresh,
and the summarization and extractive-QA forms with the tiny T5 and BERT models."""

from __future__ import annotations

import re
import shutil

import pytest

from forgeway.testing import browser_page, chromium_browser, chromium_path, console_stack, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.trl, pytest.mark.hf]

LONG = 120_000  # ms: how long Playwright waits for something that must come (a guard against hanging, not a bound)
NUMBERS = re.compile(r"(\d+) tokens? · [\d.]+ tokens/s · time to first token \d+ ms · finish: (\w+)")
CONTEXT, QUESTION = "The cat sat on the mat near the door of the old house.", "Where did the cat sit?"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    chromium_path()  # skips (fails under CI) before starting anything when there is no browser
    with console_stack(tmp_path_factory.mktemp("console-playground"), task_models=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser(stack):
    with chromium_browser() as running:
        yield running


@pytest.fixture
def page(stack, browser):
    with browser_page(stack.url, browser) as opened:
        opened.set_default_timeout(LONG)
        opened.get_by_role("tab", name="Playground").click()
        yield opened


def expect():
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect


def pick_model(page, name: str) -> None:
    page.locator("#playground-model input").click()
    page.get_by_role("option", name=re.compile(rf"^{re.escape(name)} \(")).click()
    expect()(page.locator("#playground-model-info")).to_contain_text(name, timeout=LONG)


def set_number(page, elem_id: str, value: str) -> None:
    field = page.locator(f"#{elem_id} input")
    field.fill(value)
    field.press("Tab")  # a gr.Number reports its value on change


def send(page, text: str) -> re.Match:
    """Send a chat message and wait for the reply's numbers line; returns its match (tokens, finish reason)."""
    page.locator("#playground-message textarea").fill(text)
    page.locator("#playground-send").click()
    stats = page.locator("#playground-stats")
    expect()(stats).to_contain_text("tokens/s", timeout=LONG)
    match = NUMBERS.search(stats.inner_text())
    assert match, stats.inner_text()
    return match


def last_reply(page) -> str:
    return page.locator('#playground-chat [data-testid="bot"]').last.inner_text()


def test_chat_streams_a_growing_reply_with_its_numbers(stack, page):
    pick_model(page, "tiny")
    page.locator("#playground-system textarea").fill("You are a terse assistant.")
    set_number(page, "playground-max-tokens", "200")
    page.evaluate("""() => {  // every length the latest reply has on screen, as the DOM changes
        window.replyLengths = [];
        const chat = document.querySelector('#playground-chat');
        new MutationObserver(() => {
            const replies = chat.querySelectorAll('[data-testid="bot"]');
            if (replies.length) window.replyLengths.push(replies[replies.length - 1].innerText.length);
        }).observe(chat, {subtree: true, childList: true, characterData: true});
    }""")
    tokens, finish = send(page, "Where did the cat sit?").groups()
    reply = last_reply(page)
    assert reply.strip() and int(tokens) > 0 and finish in ("length", "stop"), (reply, tokens, finish)
    seen = [n for n in page.evaluate("window.replyLengths") if n > 0]
    assert len(set(seen)) >= 2 and seen[-1] == len(reply), seen  # shown in parts, ending with the whole reply
    assert "served by hf/" in page.locator("#playground-stats").inner_text()
    screenshot(page, "playground")


def test_max_tokens_and_temperature_take_effect(page):
    pick_model(page, "tiny")
    temperature = page.locator("#playground-temperature input[type=number]")
    temperature.fill("0")
    temperature.press("Enter")
    set_number(page, "playground-max-tokens", "1")
    tokens, finish = send(page, "Where did the cat sit?").groups()
    one = last_reply(page)
    assert (tokens, finish) == ("1", "length"), (tokens, finish)
    page.locator("#playground-clear").click()
    set_number(page, "playground-max-tokens", "12")
    tokens, finish = send(page, "Where did the cat sit?").groups()
    longer = last_reply(page)
    assert int(tokens) > 1 and len(longer) > len(one), (tokens, one, longer)
    assert longer.startswith(one.strip()), (one, longer)  # greedy: the 1-token reply is where the longer one starts


def test_a_bad_setting_names_its_field(page):
    pick_model(page, "tiny")
    set_number(page, "playground-max-tokens", "0")
    page.locator("#playground-message textarea").fill("hello")
    page.locator("#playground-send").click()
    expect()(page.locator("#playground-stats")).to_contain_text("sampling.max_tokens: must be at least 1")
    page.locator("#playground-seed textarea, #playground-seed input").first.fill("seven")
    set_number(page, "playground-max-tokens", "4")
    page.locator("#playground-send").click()
    expect()(page.locator("#playground-stats")).to_contain_text("sampling.seed: must be a whole number")
    assert page.locator('#playground-chat [data-testid="bot"]').count() == 0  # nothing was sent


def test_a_new_model_in_the_store_appears_on_refresh(stack, page):
    shutil.copytree(stack.models / "tiny", stack.models / "tiny-copy")
    page.locator("#playground-refresh").click()
    pick_model(page, "tiny-copy")
    expect()(page.locator("#playground-model-info")).to_contain_text("text-generation")


def test_an_adapter_of_the_model_is_chosen_by_name(stack, page):
    """LoadModel puts a LoRA adapter beside the tiny model; the adapter list offers it and a greedy reply changes."""
    import grpc

    from forgeway.testing import build_tiny_lora
    from forgeway.v1 import models_pb2, models_pb2_grpc

    adapter = build_tiny_lora(stack.models / "tiny", stack.models / "cat-lora-files", seed=1)
    with grpc.insecure_channel(stack.target) as channel:
        models_pb2_grpc.ModelServiceStub(channel).LoadModel(
            models_pb2.LoadModelRequest(name="cat-lora", source=str(adapter), base_model="tiny"), timeout=120)
    page.locator("#playground-refresh").click()
    pick_model(page, "tiny")
    expect()(page.locator("#playground-model-info")).to_contain_text("adapters: cat-lora")
    temperature = page.locator("#playground-temperature input[type=number]")
    temperature.fill("0")
    temperature.press("Enter")
    set_number(page, "playground-max-tokens", "12")
    send(page, "Where did the cat sit?")
    base = last_reply(page)
    page.locator("#playground-clear").click()
    page.locator("#playground-adapter input").click()
    page.get_by_role("option", name="cat-lora").click()
    send(page, "Where did the cat sit?")
    assert last_reply(page) != base, base


def test_summarize_form_with_the_seq2seq_model(page):
    pick_model(page, "tiny-t5")
    expect()(page.locator("#playground-document")).to_be_visible()  # its task's form opens by itself
    set_number(page, "playground-max-tokens", "8")
    page.locator("#playground-document textarea").fill(
        "The cat sat on the mat all day while the dog slept by the door of the old house.")
    page.locator("#playground-summarize").click()
    stats = page.locator("#playground-summary-stats")
    expect()(stats).to_contain_text("tokens/s", timeout=LONG)
    tokens, _ = NUMBERS.search(stats.inner_text()).groups()
    assert int(tokens) > 0 and page.locator("#playground-summary textarea").input_value().strip(), stats.inner_text()
    screenshot(page, "playground-summarize")


def test_question_answering_form_shows_the_span_and_its_score(page):
    pick_model(page, "tiny-qa")
    expect()(page.locator("#playground-context")).to_be_visible()
    page.locator("#playground-context textarea").fill(CONTEXT)
    page.locator("#playground-question textarea").fill(QUESTION)
    page.locator("#playground-answer").click()
    stats = page.locator("#playground-answer-stats")
    expect()(stats).to_contain_text("score", timeout=LONG)
    found = re.search(r"characters (\d+)–(\d+) · score ([\d.]+)", stats.inner_text())
    assert found, stats.inner_text()
    start, end, score = int(found[1]), int(found[2]), float(found[3])
    assert 0 <= start < end <= len(CONTEXT) and 0 < score <= 1, found.groups()
    expect()(page.locator("#playground-span")).to_contain_text(CONTEXT[start:end].strip())
    screenshot(page, "playground-answer")
