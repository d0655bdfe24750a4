"""The one URL redactor: what a message, a log line, a report or a checkpoint may show of a URL.

It lives in `schemas/`, the bottom layer with no I/O and no third-party imports, because both `sinks/` (the
ClickHouse client's messages) and `pulse/` (replay checkpoints, Grafana push, migrate and query messages) show
URLs and neither may import the other's way round.

urllib's parser is not used: with a password holding an unencoded `/`, `?`, `#` or `@` it reads part of the
password as host, port or path, and a redactor built on `parsed.password` then shows that part. Here
everything from the scheme up to the LAST `@` counts as credentials, whatever it holds; a URL without a
scheme is treated the same. Query parameters that name a secret (password, token, secret, key) lose their value.
"""
from __future__ import annotations

import re

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SECRET_PARAMETER = re.compile(r"([?&;][^=&;#]*(?:pass|secret|token|key)[^=&;#]*=)[^&;#]*", re.IGNORECASE)
MASK = "***"


def redact_url(url: str, *, mask: str | None = MASK, keep_query: bool = True) -> str:
    """`url` with its user name and password replaced by `mask` (`http://***@host:8123/db`).

    `mask=None` drops them with their `@` (`http://host:8123/db`: an identity that does not change when a
    password does); `keep_query=False` also drops the query string and fragment (a base URL to show)."""
    scheme = _SCHEME.match(url)
    prefix = scheme.group(0) if scheme else ""
    rest = url[len(prefix):]
    if _at_inside_secret_value(rest):
        # `h/db?password=p@ss` and `user:p&key=x@host/db` have the same shape: either the part before the `@`
        # or the part after it is a secret, and nothing tells which. Show neither.
        return prefix + MASK
    userinfo, at, location = rest.rpartition("@")
    if at:
        rest = location if mask is None else f"{mask}@{location}"
    if not keep_query:
        rest = re.split(r"[?#]", rest, maxsplit=1)[0]
    return prefix + _SECRET_PARAMETER.sub(rf"\1{MASK}", rest)


def _at_inside_secret_value(rest: str) -> bool:
    """Whether the last `@` falls in the value of a query parameter that names a secret."""
    last_at = rest.rfind("@")
    return last_at >= 0 and any(match.end(1) <= last_at < match.end() for match in _SECRET_PARAMETER.finditer(rest))
