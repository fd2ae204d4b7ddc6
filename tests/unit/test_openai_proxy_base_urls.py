"""The normal form of upstream base URLs and the operator's allow-list of them (run-time upstreams of the proxy)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from forgeway.services.openai_proxy.base_urls import allowed, normalise
from forgeway.services.openai_proxy.settings import OpenAIProxySettings


@pytest.mark.parametrize(("url", "normal"), [
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    (" HTTPS://API.OpenAI.com:443/v1/ ", "https://api.openai.com/v1"),
    ("http://127.0.0.1:80//v1///", "http://127.0.0.1/v1"),
    ("http://127.0.0.1:8000/v1/./x/../", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1/%2e%2e/admin", "http://127.0.0.1:8000/admin"),
    ("http://127.0.0.1:8000/../../v1", "http://127.0.0.1:8000/v1"),
    ("http://[::1]:8000/v1", "http://[::1]:8000/v1"),
    ("http://bücher.example/v1", "http://xn--bcher-kva.example/v1"),
    ("http://host/a b".replace(" ", "%20"), "http://host/a%20b"),
    ("http://host", "http://host"),
])  # fmt: skip
def test_normal_form(url, normal):
    assert normalise(url) == normal


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://example.com/v1", "http(s)"),
    ("example.com/v1", "http(s)"),
    ("http:///v1", "host"),
    ("http://user:hunter2@example.com/v1", "credentials"),
    ("http://example.com/v1?key=1", "query"),
    ("http://example.com/v1#x", "fragment"),
    ("http://example.com/v1\\..\\admin", "backslash"),
    ("http://exa mple.com/v1", "spaces"),
    ("http://example.com:99999/v1", "port"),
])  # fmt: skip
def test_what_is_no_base_url(url, why):
    with pytest.raises(ValueError, match=why) as caught:
        normalise(url)
    assert "hunter2" not in str(caught.value)


def test_prefixes_match_whole_path_segments_and_whole_hosts():
    prefixes = ["http://127.0.0.1:8000/v1", "https://gateway.example"]
    assert allowed("http://127.0.0.1:8000/v1", prefixes)
    assert allowed("http://127.0.0.1:8000/v1/tenant", prefixes)
    assert allowed("https://gateway.example/anything/v1", prefixes)
    assert not allowed("http://127.0.0.1:8000/v10", prefixes)
    assert not allowed("http://127.0.0.1:8000", prefixes)
    assert not allowed("http://127.0.0.1:8001/v1", prefixes)
    assert not allowed("https://gateway.example.evil.com/v1", prefixes)
    assert not allowed("http://gateway.example/v1", prefixes), "the scheme counts"
    assert allowed("http://anywhere:1/v1", ["*"])


def test_settings_keep_the_allow_list_normalised_and_base_url_always_allowed():
    settings = OpenAIProxySettings(base_url="http://upstream:8000/v1/", runtime_base_urls=["HTTP://Other:80/v1/"])
    assert settings.runtime_base_urls == ["http://other/v1"]
    assert settings.runtime_base_url_allowed("http://upstream:8000/v1")
    assert settings.runtime_base_url_allowed("http://other/v1/x")
    assert not settings.runtime_base_url_allowed("http://elsewhere/v1")
    assert settings.allow_runtime_upstreams, "on by default, for base_url and the listed URLs only"
    with pytest.raises(ValidationError) as caught:
        OpenAIProxySettings(runtime_base_urls=["http://u:secret@host/v1"])
    error = caught.value.errors()[0]  # what `forgeway serve` prints: the location and the message, not the input
    assert "RUNTIME_BASE_URLS" in str(error["loc"]).upper() and "credentials" in error["msg"]
    assert "secret" not in error["msg"]
