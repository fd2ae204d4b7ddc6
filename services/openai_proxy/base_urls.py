"""Base URLs of OpenAI-compatible APIs in one normal form, and the operator's allow-list of them (prefix match)."""

from __future__ import annotations

from urllib.parse import quote, unquote, urlsplit

ANY = "*"  # in an allow-list: any http(s) URL
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise(url: str) -> str:
    """scheme://host[:port][/path]: scheme and host lower-cased (IDNA), the default port dropped, dot segments and
    repeated or trailing slashes resolved, the path percent-encoded once. This form is both what is checked and what
    is called, so an encoded `..` cannot pass the check and then climb out at the upstream.

    Raises ValueError (saying why, never echoing the URL's userinfo) for anything but an http(s) URL with a host and
    without credentials, query or fragment."""
    text = url.strip()
    if not text or any(c.isspace() or ord(c) < 32 or c == "\\" for c in text):
        raise ValueError("must be an http(s) URL such as https://api.openai.com/v1, without spaces or backslashes")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host, such as https://api.openai.com/v1")
    if "@" in parts.netloc:
        raise ValueError("must not carry credentials; pass the key as api_key")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError("must not have a query or a fragment")
    try:
        port = parts.port
        host = parts.hostname.encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise ValueError(f"has a malformed host or port: {exc}") from None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    segments: list[str] = []
    for segment in unquote(parts.path).split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    path = quote("/" + "/".join(segments), safe="/:@!$&'()*+,;=-._~") if segments else ""
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{path}"


def allowed(url: str, prefixes: list[str]) -> bool:
    """Whether a normalised URL is one of the normalised prefixes or lies below one (whole path segments only:
    http://host/v1 covers http://host/v1/x, not http://host/v10), or the list holds ANY."""
    return any(p == ANY or url == p or url.startswith(p + "/") for p in prefixes)
