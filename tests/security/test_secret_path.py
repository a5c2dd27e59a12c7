"""The secret path segment (`POSTBACK_SECRET`: the endpoint is `/postback/<secret>`).

Every wrong secret, however close to the right one, gets the same bytes back, and the comparison is
constant-time by construction: `hmac.compare_digest` sees every candidate (no length or prefix check
runs first) and its verdict alone decides. No timing is measured here (see bench/secret_timing.py).
`tests/service` checks the basic 404s and that the secret never reaches the logs.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from types import SimpleNamespace
from urllib.parse import quote

import pytest
from redis import Redis

from concur_postback.config import Settings
from concur_postback.service import postback as postback_module
from tests.conftest import TOKEN, CapturedLogs, LiveServer
from tests.security.conftest import RawConnection, stored_ids

SECRET = "s3cr3t-Path-0123456789abcdefXYZ"
QUERY = f"?type=FOP&oauth_token_key={TOKEN}"


def encode_all(text: str) -> str:
    """Every character percent-encoded (`abc` -> `%61%62%63`)."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


WRONG_SEGMENTS = {
    "last_character_differs": SECRET[:-1] + "Q",
    "first_character_differs": "S" + SECRET[1:],
    "one_character_short": SECRET[:-1],
    "one_character_long": SECRET + "x",
    "a_short_prefix": SECRET[:4],
    "empty": "",
    "other_case": SECRET.upper(),
    "percent_encoded_wrong_secret": encode_all(SECRET[:-1] + "Q"),
    "trailing_slash": SECRET + "/",
    "encoded_trailing_slash": SECRET + "%2F",
    "trailing_nul": SECRET + "%00",
    "leading_slash": "/" + SECRET,
    "dot_segment_before": "x/../" + SECRET,
    "unicode_lookalike": quote(SECRET.replace("a", "\u0430")),  # Cyrillic a
    "twice": SECRET + SECRET,
}
RIGHT_SEGMENTS = {
    "as_is": SECRET,
    # RFC 3986 6.2.2.2: an encoded unreserved character is the same character; uvicorn decodes the path.
    "percent_encoded": encode_all(SECRET),
    "partly_encoded": SECRET[:5] + encode_all(SECRET[5:9]) + SECRET[9:],
}


@pytest.fixture
def secret_server(
    make_server: Callable[..., LiveServer], make_settings: Callable[..., Settings]
) -> LiveServer:
    return make_server(make_settings(postback_secret=SECRET))


def exchange(connect: Callable[[str], RawConnection], url: str, method: str, segment: str) -> bytes:
    """The raw response to one request on its own connection, without its Date header (which ticks)."""
    connection = connect(url)
    connection.send(
        f"{method} /postback/{segment}{QUERY} HTTP/1.1\r\nHost: x\r\nX-Request-Id: fixed-request-id\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
    raw = connection.response().raw
    return b"\r\n".join(line for line in raw.split(b"\r\n") if not line.lower().startswith(b"date:"))


def test_every_wrong_secret_gets_the_same_bytes_and_stores_nothing(
    secret_server: LiveServer,
    redis: Redis,
    raw_connect: Callable[[str], RawConnection],
    captured_logs: CapturedLogs,
) -> None:
    answers = {
        name: exchange(raw_connect, secret_server.url, "POST", s) for name, s in WRONG_SEGMENTS.items()
    }
    assert len(set(answers.values())) == 1, answers
    assert next(iter(answers.values())).startswith(b"HTTP/1.1 404 ")
    assert next(iter(answers.values())).endswith(b"\r\n\r\nNot Found")
    assert redis.dbsize() == 0
    assert SECRET not in captured_logs.text
    assert SECRET[:-1] not in captured_logs.text  # nor the near misses


def test_the_right_secret_however_encoded_is_accepted(
    secret_server: LiveServer, redis: Redis, raw_connect: Callable[[str], RawConnection]
) -> None:
    statuses = {
        name: exchange(raw_connect, secret_server.url, "POST", s).split(b" ")[1]
        for name, s in RIGHT_SEGMENTS.items()
    }
    assert statuses == dict.fromkeys(RIGHT_SEGMENTS, b"200")
    assert len(stored_ids(redis)) == 1  # the same FOP change three times: coalesced into one


def test_other_methods_tell_a_right_secret_from_a_wrong_one_by_nothing(
    secret_server: LiveServer, raw_connect: Callable[[str], RawConnection]
) -> None:
    for method in ("GET", "PUT", "DELETE"):
        right = exchange(raw_connect, secret_server.url, method, SECRET)
        wrong = exchange(raw_connect, secret_server.url, method, SECRET[:-1] + "Q")
        assert right == wrong, method
        assert right.startswith(b"HTTP/1.1 405 ")


class CompareSpy:
    """Stands in for `hmac` in postback.py: records each comparison; ``verdict`` overrides the answer."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, bytes]] = []
        self.verdict: bool | None = None

    def compare_digest(self, a: bytes, b: bytes) -> bool:
        self.calls.append((a, b))
        return hmac.compare_digest(a, b) if self.verdict is None else self.verdict


@pytest.fixture
def compare_spy(monkeypatch: pytest.MonkeyPatch) -> CompareSpy:
    spy = CompareSpy()
    monkeypatch.setattr(postback_module, "hmac", SimpleNamespace(compare_digest=spy.compare_digest))
    return spy


def test_compare_digest_sees_every_candidate_whole_and_nothing_else_decides(
    secret_server: LiveServer, redis: Redis, compare_spy: CompareSpy
) -> None:
    for segment in (SECRET, SECRET[:-1] + "Q", SECRET[:4], SECRET + "x", ""):
        before = len(compare_spy.calls)
        secret_server.post(f"/postback/{segment}", type="FOP", oauth_token_key=TOKEN)
        # One comparison per request, of the whole candidate with the whole secret: a wrong length is
        # not refused before compare_digest, so nothing else takes a data-dependent shortcut.
        assert compare_spy.calls[before:] == [(segment.encode(), SECRET.encode())]

    compare_spy.verdict = False
    assert secret_server.post(f"/postback/{SECRET}", type="FOP", oauth_token_key=TOKEN).status_code == 404
    compare_spy.verdict = True
    accepted = secret_server.post("/postback/wrong", type="Profile", oauth_token_key=TOKEN)
    assert accepted.status_code == 200  # compare_digest's verdict is the whole decision
    assert len(stored_ids(redis)) == 2
