"""The console's login, Overview and Models pages in a real chromium, against real gateway + trl + hf processes
with API keys configured."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from forgeway.testing.console import TINY_MODEL, browser_page, chromium_browser, console_stack, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.trl, pytest.mark.hf]

API_KEY = "console-test-key-0123456789"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with console_stack(tmp_path_factory.mktemp("console-overview"), api_keys=[API_KEY]) as started:
        yield started


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as started:
        yield started


def log_in(page, key: str) -> None:
    page.locator("#api_key").fill(key)
    page.locator("#login-submit").click()


def loaded_cell(table, value: str):
    """The visible cell of the models table's "loaded" column (the third) saying `value`."""
    cells = table.locator('[role="gridcell"][data-col="2"]')
    return cells.filter(has_text=re.compile(rf"^\s*{value}\s*$")).first


def test_without_a_session_only_the_login_page_is_served(stack):
    with httpx.Client(base_url=stack.url, follow_redirects=False) as http:
        page = http.get("/", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"] == "/login"
        login = http.get("/login")
        assert login.status_code == 200 and 'name="api_key"' in login.text
        for path in ("/config", "/gradio_api/info", "/assets/index.js", "/theme.css"):
            assert http.get(path).status_code == 401, path
        joined = http.post("/gradio_api/queue/join", json={"fn_index": 0, "data": [], "session_hash": "x"})
        assert joined.status_code == 401
        refused = http.post("/login", data={"api_key": "not-a-key"})
        assert refused.status_code == 401 and "not accepted" in refused.text
        assert "set-cookie" not in refused.headers
        assert http.get("/v1/models", headers=stack.headers()).status_code == 200  # the API is not behind the gate


def test_login_with_a_key_then_the_overview_shows_endpoints_and_hardware(stack, browser):
    with browser_page(stack.url, browser) as page:
        assert page.url.endswith("/login")
        log_in(page, "wrong-key")
        assert "not accepted" in page.locator("#login-error").inner_text()
        log_in(page, API_KEY)
        page.wait_for_url(re.compile(r"/$"))
        endpoints = page.locator("#overview-endpoints")
        for text in (stack.services["trl"].address, stack.services["hf"].address, "trl", "hf", "SERVING", TINY_MODEL):
            expect(endpoints).to_contain_text(text)
        ram = page.locator("#overview-hardware").get_by_text(re.compile(r"GiB / [0-9.]+ GiB"))
        expect(ram.filter(visible=True).first).to_be_visible()  # a row of its own, not hidden below the headers
        expect(page.locator("#overview-advice")).to_contain_text("cpu")
        expect(page.locator("#overview-recommendations")).to_contain_text("text-generation")
        expect(page.locator("#overview-status")).to_contain_text("2 of 2 endpoints serving")
        assert API_KEY not in page.content()
        assert all(API_KEY not in cookie["value"] for cookie in page.context.cookies())
        screenshot(page, "overview")


def test_models_page_lists_the_store_and_loads_and_unloads(stack, browser):
    with browser_page(stack.url, browser) as page:
        log_in(page, API_KEY)
        page.get_by_role("tab", name="Models").click()
        table = page.locator("#models-table")
        description = table.get_by_text("tiny text-generation model built for the console tests")
        expect(description.filter(visible=True).first).to_be_visible()
        pick = page.locator("#models-name input")
        pick.fill(TINY_MODEL)
        pick.press("Enter")
        page.locator("#models-unload").click()
        expect(page.locator("#models-message")).to_contain_text(f"Unloaded {TINY_MODEL}")
        expect(loaded_cell(table, "no")).to_be_visible()
        page.locator("#models-load").click()
        expect(page.locator("#models-message")).to_contain_text(f"Loaded {TINY_MODEL} on hf")
        expect(loaded_cell(table, "yes")).to_be_visible()
        loaded = httpx.get(f"{stack.url}/v1/models/{TINY_MODEL}", headers=stack.headers())
        assert loaded.status_code == 200, loaded.text
        screenshot(page, "models")


def test_models_page_exports_to_gguf_and_deletes_after_confirmation(stack, browser):
    exported = stack.models / f"{TINY_MODEL}-gguf"
    with browser_page(stack.url, browser) as page:
        log_in(page, API_KEY)
        page.get_by_role("tab", name="Models").click()
        message = page.locator("#models-message")
        pick = page.locator("#models-name input")
        pick.fill(TINY_MODEL)
        pick.press("Enter")
        page.locator("#models-export").click()
        expect(message).to_contain_text(f"Exported {TINY_MODEL} to {TINY_MODEL}-gguf (GGUF f16")
        assert (exported / "model.gguf").stat().st_size > 0

        confirm_box, typed = page.locator("#models-delete-confirm"), page.locator("#models-delete-typed textarea")
        served = httpx.post(f"{stack.url}/v1/completions", headers=stack.headers(), timeout=60,
                            json={"model": TINY_MODEL, "prompt": "hi", "max_tokens": 1})
        assert served.status_code == 200, served.text  # hf serves (has loaded) the tiny model: deleting it is refused
        page.locator("#models-delete").click()
        expect(confirm_box).to_be_visible()
        typed.fill(TINY_MODEL)
        page.locator("#models-delete-yes").click()
        expect(message).to_contain_text(f"model '{TINY_MODEL}' is loaded")
        expect(confirm_box).to_be_hidden()
        assert (stack.models / TINY_MODEL).is_dir()

        pick.fill(f"{TINY_MODEL}-gguf")
        pick.press("Enter")
        page.locator("#models-delete").click()
        expect(page.locator("#models-delete-question")).to_contain_text(f"Delete {TINY_MODEL}-gguf")
        typed.fill(TINY_MODEL)  # not the name asked about: nothing is deleted
        page.locator("#models-delete-yes").click()
        expect(message).to_contain_text("nothing was deleted")
        assert exported.is_dir()
        typed.fill(f"{TINY_MODEL}-gguf")
        screenshot(page, "models-delete")
        page.locator("#models-delete-yes").click()
        expect(message).to_contain_text(f"Deleted {TINY_MODEL}-gguf from the model store")
        expect(confirm_box).to_be_hidden()
        assert not exported.exists()
