"""Bodies the endpoint must not take: too large however they are framed (413), or not an XML notification
(400), and in either case nothing stored.

`tests/service` checks a too-large body with a Content-Length and one streamed by httpx; here the
framing is done by hand over a raw socket, so the refusal can be shown to come before the body has
been sent, and the limit to hold to the byte.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from redis import Redis

from concur_postback.config import Settings
from concur_postback.service.protocol import HttpProtocol
from tests.conftest import NOTIFICATION, TOKEN, LiveServer
from tests.security.conftest import RawConnection, stored_ids

LIMIT = 2048
TARGET = f"/postback?type=Itinerary&oauth_token_key={TOKEN}"


@pytest.fixture
def small_limit_server(
    make_server: Callable[..., LiveServer], make_settings: Callable[..., Settings]
) -> LiveServer:
    return make_server(make_settings(max_body_bytes=LIMIT), http=HttpProtocol)


def head(headers: str, target: str = TARGET) -> bytes:
    return f"POST {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(
    small_limit_server: LiveServer, redis: Redis, raw_connect: Callable[[str], RawConnection]
) -> None:
    connection = raw_connect(small_limit_server.url)
    connection.send(head(f"Content-Length: {10**9}\r\nExpect: 100-continue\r\n"))  # and never a body byte
    response = connection.response()
    assert response.status == 413  # not `100 Continue`: the server did not ask for the gigabyte
    assert response.json_error() == "body_too_large"
    assert redis.dbsize() == 0


def test_a_chunked_body_is_refused_once_it_passes_the_limit_however_it_is_cut(
    small_limit_server: LiveServer, redis: Redis, raw_connect: Callable[[str], RawConnection]
) -> None:
    many_small = raw_connect(small_limit_server.url)
    many_small.send(head("Transfer-Encoding: chunked\r\n") + chunked(*[b"<" * 64] * (LIMIT // 64 + 1)))
    assert (many_small.response().status, stored_ids(redis)) == (413, [])

    # One chunk that announces a megabyte: refused after a little over the limit has arrived, without
    # waiting for (or ever receiving) the rest.
    one_huge = raw_connect(small_limit_server.url)
    one_huge.send(head("Transfer-Encoding: chunked\r\n") + b"%x\r\n" % 2**20 + b"<" * (LIMIT + 100))
    response = one_huge.response()
    assert (response.status, response.json_error()) == (413, "body_too_large")
    assert redis.dbsize() == 0


@pytest.mark.parametrize("type_", ["FOP", "Profile"])
def test_the_limit_holds_for_kinds_that_ignore_their_body(
    small_limit_server: LiveServer, redis: Redis, type_: str
) -> None:
    response = small_limit_server.post(body=b"x" * (LIMIT + 1), type=type_, oauth_token_key=TOKEN)
    assert response.status_code == 413
    assert redis.dbsize() == 0


def test_the_limit_is_exact_to_the_byte(
    small_limit_server: LiveServer, redis: Redis, raw_connect: Callable[[str], RawConnection]
) -> None:
    padded = NOTIFICATION.replace(b"<Context/>", b"<Context></Context>")
    at_limit = padded.replace(b"<Context>", b"<Context>" + b"x" * (LIMIT - len(padded)))
    assert len(at_limit) == LIMIT
    for framing in ("length", "chunked"):
        connection = raw_connect(small_limit_server.url)
        over = at_limit + b" "
        if framing == "length":
            connection.send(head(f"Content-Length: {len(over)}\r\n") + over)
        else:
            connection.send(head("Transfer-Encoding: chunked\r\n") + chunked(over[:1000], over[1000:]))
        assert connection.response().status == 413, framing
    assert redis.dbsize() == 0
    assert small_limit_server.post(body=at_limit, type="Itinerary", oauth_token_key=TOKEN).status_code == 200
    assert len(stored_ids(redis)) == 1


def test_an_absurd_content_length_is_refused_cleanly(
    small_limit_server: LiveServer, redis: Redis, raw_connect: Callable[[str], RawConnection]
) -> None:
    for length in (str(2**64), "9" * 40):
        connection = raw_connect(small_limit_server.url)
        connection.send(head(f"Content-Length: {length}\r\n"))
        assert connection.response().status in (400, 413), length  # the parser's 400 or ours
    assert redis.dbsize() == 0


NOT_A_NOTIFICATION = {
    "json": (b'{"ObjectURI": "https://www.concursolutions.com/api/travel/trip/v1.1/ABC"}', "malformed_xml"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "malformed_xml"),
    "nul_bytes": (b"\x00" * 64, "malformed_xml"),
    "whitespace_only": (b" \r\n\t ", "empty_body"),
    "utf16_garbage": (b"\xff\xfe" + bytes(range(0xD8, 0xE0)) * 8, "malformed_xml"),
    "utf16_without_bom": ("<Notification/>".encode("utf-16-le"), "malformed_xml"),
    "declared_utf16_but_utf8": (b"<?xml version='1.0' encoding='UTF-16'?>" + NOTIFICATION, "malformed_xml"),
    "truncated_in_a_tag": (NOTIFICATION[: NOTIFICATION.index(b"<EventType>") + 5], "malformed_xml"),
    "truncated_in_an_entity": (NOTIFICATION.replace(b"<Context/>", b"<Context>&am"), "malformed_xml"),
    "two_roots": (NOTIFICATION + NOTIFICATION, "malformed_xml"),
    "html": (b"<html><body><p>hello</p></body></html>", "unexpected_document"),
    "text": (b"type=Itinerary&ObjectURI=x", "malformed_xml"),
    "empty_notification": (b"<Notification/>", "missing_field"),
}


def test_bodies_that_are_not_a_notification_get_400_and_store_nothing(
    small_limit_server: LiveServer, redis: Redis
) -> None:
    codes = {}
    for name, (body, _) in NOT_A_NOTIFICATION.items():
        response = small_limit_server.post(body=body, type="Itinerary", oauth_token_key=TOKEN)
        assert response.headers["content-type"] == "application/json", name
        codes[name] = (response.status_code, response.json()["error"])
    assert codes == {name: (400, code) for name, (_, code) in NOT_A_NOTIFICATION.items()}
    assert redis.dbsize() == 0
