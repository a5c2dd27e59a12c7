"""How a sink keeps its credentials out of everything it shows.

A sink's name and its error messages reach logs, metrics, `status` and dead letters, so every sink
shows a URL's user-info and scrubs error text the same way, with the mask the rest of the service uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

MASK = "****"
SHORTEST_SCRUBBED = 4  # a shorter secret would garble a message without protecting anything


def userinfo(username: str | None, password: str | None) -> str:
    """User-info to show in a URL: ``alice:****@``, ``:****@``, ``alice@`` or nothing."""
    if not username and not password:
        return ""
    return quote(username or "", safe="") + (f":{MASK}" if password else "") + "@"


def scrub(message: str | BaseException, secrets: Iterable[str]) -> str:
    """The message on one line, each secret (longest first) replaced by the mask."""
    text = " ".join(str(message).split())
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= SHORTEST_SCRUBBED:
            text = text.replace(secret, MASK)
    return text
