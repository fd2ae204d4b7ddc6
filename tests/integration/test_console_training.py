"""The console's Train and Jobs pages in a real chromium against real gateway + trl + hf processes: ModelForge's flow
on the tiny model (upload, settings checked by the trainer, train with a live loss chart, chat with the result),
a dataset with a bad row refused inline, and cancel of a running job."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import pytest

from forgeway.testing.console import TINY_MODEL, browser_page, chromium_browser, console_stack, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.trl, pytest.mark.hf]

ROWS = [{"prompt": f"Where did cat {i} sit?", "completion": f" Cat {i} sat on the mat."} for i in range(12)]
STEPS = 150  # enough steps that the chart is seen gaining points while the job runs


def points(page) -> int:
    text = page.locator("#jobs-points").inner_text()
    return int(re.match(r"\s*(\d+) progress points", text).group(1)) if re.match(r"\s*\d+ progress", text) else 0


def step_of(page) -> tuple[int, int]:
    found = re.search(r"Step (\d+) of (\d+)", page.locator("#jobs-summary").inner_text())
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def wait_for_points(page, more_than: int) -> None:
    """Until the job's chart has more than `more_than` points."""
    page.wait_for_function("n => { const e = document.querySelector('#jobs-points'); "
                           "return e !== null && parseInt(e.innerText) > n; }", arg=more_than)


@contextmanager
def opened(stack, browser, name: str):
    """A page on the console; on a failure, a screenshot (test-artifacts/console/failed-NAME.png) and the services'
    logs join the error."""
    with browser_page(stack.url, browser) as page:
        try:
            yield page
        except Exception as exc:
            shot = screenshot(page, f"failed-{name}")
            raise AssertionError(f"{exc}\n(screenshot: {shot})\n{stack.logs()}") from exc


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with console_stack(tmp_path_factory.mktemp("console-training")) as started:
        yield started


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as started:
        yield started


def dataset(folder: Path, name: str, rows: list[dict]) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def number(page, field: str, value) -> None:
    box = page.locator(f"#train-{field} input")
    box.fill(str(value))


def fill_train_form(page, data: Path, steps: int, model_name: str = "") -> None:
    """Train tab: the defaults for text generation with huggingface (trl), the tiny model from the store, a few steps
    of batch 2 on short sequences; upload the dataset."""
    page.set_default_timeout(90_000)  # two shared cores: model loads and trainer checks take seconds
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-providers").get_by_text("huggingface").first.wait_for()
    page.locator("#train-hardware").get_by_text("cpu").first.wait_for()
    page.locator("#train-base-model input").fill(TINY_MODEL)
    page.get_by_role("option", name=TINY_MODEL, exact=True).click()
    for field, value in (("max_steps", steps), ("batch_size", 2), ("gradient_accumulation_steps", 1),
                         ("max_seq_length", 32)):
        number(page, field, value)
    if model_name:
        page.locator("#train-model-name textarea, #train-model-name input").first.fill(model_name)
    page.locator("#train-dataset input[type=file]").set_input_files(str(data))
    page.locator("#train-dataset-status").get_by_text("Uploaded").wait_for()


def test_train_a_tiny_model_watch_the_loss_and_chat_with_it(stack, browser, tmp_path):
    with opened(stack, browser, "train-flow") as page:
        fill_train_form(page, dataset(tmp_path, "cats.jsonl", ROWS), STEPS, model_name="console-cats")
        settings = page.locator("#train-settings-status")
        number(page, "learning_rate", 5)  # the trainer's own message, as typed
        settings.get_by_text("hyperparameters.learning_rate").wait_for()
        assert "must be in (0, 1)" in settings.inner_text()
        assert page.locator("#train-start").is_disabled()
        number(page, "learning_rate", 0.001)
        settings.get_by_text("The trainer accepts these settings.").wait_for()
        page.locator("#train-dataset-status").get_by_text("Every row is valid").wait_for()
        start = page.locator("#train-start")
        assert start.is_enabled()
        screenshot(page, "train")
        start.click()
        # the Jobs page opens on the new job and draws its curves as the events arrive
        summary = page.locator("#jobs-summary")
        summary.get_by_text("running").wait_for()
        wait_for_points(page, 0)
        first, (step, total) = points(page), step_of(page)
        assert total == STEPS and step < total, "the job ended before the chart was seen growing"
        wait_for_points(page, first)
        assert points(page) > first
        screenshot(page, "jobs")
        summary.get_by_text("succeeded").wait_for(timeout=300_000)
        assert points(page) == STEPS
        assert "console-cats" in summary.inner_text()
        assert "[state] succeeded" in page.locator("#jobs-log textarea").input_value()
        screenshot(page, "jobs-succeeded")
        # chat with the new model: the playground opens with it picked, and streams text
        page.locator("#jobs-chat").click()
        page.locator("#playground-message textarea").wait_for()
        assert "console-cats" in page.locator("#playground-model input").input_value()
        page.locator("#playground-message textarea").fill("Where did cat 3 sit?")
        page.locator("#playground-send").click()
        page.locator("#playground-stats").get_by_text(re.compile("tokens/s")).wait_for(timeout=120_000)
        reply = page.locator("#playground-chat .bot, #playground-chat [data-testid=bot]").last
        assert reply.inner_text().strip()


def test_a_bad_row_is_shown_inline_and_nothing_starts(stack, browser, tmp_path):
    bad = [*ROWS[:3], {"prompt": "Where did the dog sit?", "completion": "   "}, *ROWS[3:]]
    with opened(stack, browser, "bad-row") as page:
        fill_train_form(page, dataset(tmp_path, "bad.jsonl", bad), 2)
        status = page.locator("#train-dataset-status")
        status.get_by_text("dataset.rows[3].completion").wait_for()
        assert "missing or empty" in status.inner_text()
        assert page.locator("#train-start").is_disabled()
        screenshot(page, "train-bad-row")


def test_cancel_a_running_job(stack, browser, tmp_path):
    with opened(stack, browser, "cancel") as page:
        fill_train_form(page, dataset(tmp_path, "long.jsonl", ROWS), 100_000)
        page.locator("#train-dataset-status").get_by_text("Every row is valid").wait_for()
        page.locator("#train-start").click()
        wait_for_points(page, 0)
        page.locator("#jobs-cancel").click()
        summary = page.locator("#jobs-summary")
        summary.get_by_text("cancelled").wait_for(timeout=120_000)
        assert "cancel requested" in page.locator("#jobs-log textarea").input_value()
        assert page.locator("#jobs-cancel").is_hidden() and page.locator("#jobs-chat").is_hidden()
        screenshot(page, "jobs-cancelled")
