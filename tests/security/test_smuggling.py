"""Request smuggling through headers and the query string, over raw sockets to a real uvicorn.

Every request here either gets a clean 4xx and stores nothing, or gets exactly the answer its bytes
mean (one response per request, the values as sent): never a 5xx, never a second request hidden in
the first, never the token in a log line. The server runs as `serve` runs it (httptools; see
server.py for why never h11).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import uvicorn
from redis import Redis
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from concur_postback.config import Settings
from concur_postback.inbox import RECORD_PREFIX, Record
from concur_postback.service import server as server_module
from concur_postback.service.protocol import HttpProtocol
from concur_postback.tokens import vault_from_settings
from tests.conftest import TOKEN, CapturedLogs, LiveServer
from tests.security.conftest import RawConnection, stored_ids

SMUGGLED_TOKEN = "smuggled-Tq4wE8rT2yU6iO0p"
SMUGGLED = (
    f"POST /postback?type=Profile&oauth_token_key={SMUGGLED_TOKEN} HTTP/1.1\r\nHost: x\r\n"
    "Content-Length: 0\r\n\r\n"
).encode()
PROBE = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
TARGET = f"/postback?type=FOP&oauth_token_key={TOKEN}".encode()


def request(headers: bytes, body: bytes = b"", target: bytes = TARGET, version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST " + target + b" " + version + b"\r\nHost: x\r\n" + headers + b"\r\n" + body


CHUNKED_END = b"0\r\n\r\n"
CL_HIDING = b"Content-Length: %d\r\n" % (len(CHUNKED_END) + len(SMUGGLED))  # CL covers the smuggled request

# Each of these frames its body in two ways at once, or not at all validly: a front proxy and this server
# could disagree on where the request ends, so the server must refuse it and close the connection.
AMBIGUOUS_FRAMING: dict[str, bytes] = {
    "content_length_then_chunked": request(
        CL_HIDING + b"Transfer-Encoding: chunked\r\n", CHUNKED_END + SMUGGLED
    ),
    "chunked_then_content_length": request(
        b"Transfer-Encoding: chunked\r\n" + CL_HIDING, CHUNKED_END + SMUGGLED
    ),
    "two_content_lengths": request(b"Content-Length: 0\r\nContent-Length: %d\r\n" % len(SMUGGLED), SMUGGLED),
    "two_equal_content_lengths": request(b"Content-Length: 0\r\nContent-Length: 0\r\n", SMUGGLED),
    "content_length_list": request(b"Content-Length: 0, %d\r\n" % len(SMUGGLED), SMUGGLED),
    "content_length_plus_sign": request(b"Content-Length: +0\r\n", SMUGGLED),
    "content_length_negative": request(b"Content-Length: -1\r\n", SMUGGLED),
    "chunked_folded_onto_next_line": request(
        CL_HIDING + b"Transfer-Encoding:\r\n chunked\r\n", CHUNKED_END + SMUGGLED
    ),
    "space_before_colon": request(CL_HIDING + b"Transfer-Encoding : chunked\r\n", CHUNKED_END + SMUGGLED),
    "unknown_coding": request(CL_HIDING + b"Transfer-Encoding: xchunked\r\n", CHUNKED_END + SMUGGLED),
    "chunked_not_last": request(b"Transfer-Encoding: chunked, identity\r\n", CHUNKED_END + SMUGGLED),
    "two_transfer_encodings": request(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", CHUNKED_END + SMUGGLED
    ),
    "http_1_0_chunked": request(
        CL_HIDING + b"Transfer-Encoding: chunked\r\n", CHUNKED_END + SMUGGLED, version=b"HTTP/1.0"
    ),
    "bare_cr_in_a_header": request(b"X: a\rContent-Length: 5\r\nContent-Length: 0\r\n", SMUGGLED),
    "bare_lf_line_ends": request(b"Content-Length: 0\r\n", SMUGGLED).replace(b"\r\n", b"\n"),
    "crlf_in_a_chunk_extension": request(
        b"Transfer-Encoding: chunked\r\n", b'0;x="y\r\n"\r\n\r\n' + SMUGGLED
    ),
    "chunk_size_overflow": request(
        b"Transfer-Encoding: chunked\r\n", b"FFFFFFFFFFFFFFFFF1\r\nx\r\n" + CHUNKED_END + SMUGGLED
    ),
    "nul_in_the_target": request(b"Content-Length: 0\r\n", target=TARGET + b"\x00&type=Profile"),
}


@pytest.fixture
def served(make_server: Callable[..., LiveServer], settings: Settings) -> LiveServer:
    """The app under uvicorn with the HTTP parser `serve` uses."""
    return make_server(settings, http=HttpProtocol)


def test_serve_pins_the_strict_http_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def run(server: uvicorn.Server, sockets: object = None) -> None:
        seen.update(http=server.config.http, access_log=server.config.access_log)
        server.started = True

    monkeypatch.setattr(server_module.uvicorn.Server, "run", run)
    monkeypatch.setattr(server_module.signal, "signal", lambda *args: None)
    server_module.serve("127.0.0.1", 0, 1)
    assert issubclass(seen["http"], HttpToolsProtocol)  # uvicorn's httptools protocol, our rules added
    assert seen["access_log"] is False  # uvicorn's would print the query string, token and all


def test_ambiguous_framing_is_refused_and_nothing_is_smuggled(
    served: LiveServer,
    redis: Redis,
    raw_connect: Callable[[str], RawConnection],
    captured_logs: CapturedLogs,
) -> None:
    outcomes: dict[str, tuple[int, list[int]]] = {}
    for name, raw in AMBIGUOUS_FRAMING.items():
        connection = raw_connect(served.url)
        connection.send(raw)
        first = connection.response()
        # Anything answered after the first response, other than the probe's own answer, was smuggled.
        outcomes[name] = (first.status, [r.status for r in connection.closed_after(PROBE)])
    assert outcomes == dict.fromkeys(AMBIGUOUS_FRAMING, (400, []))  # refused, and the connection closed
    assert redis.dbsize() == 0
    access = [entry for entry in captured_logs.events() if "method" in entry]
    assert all(entry["status"] is None or entry["status"] < 500 for entry in access), access
    assert TOKEN not in captured_logs.text
    assert SMUGGLED_TOKEN not in captured_logs.text


def test_a_well_framed_pipeline_is_answered_request_by_request(
    served: LiveServer, redis: Redis, raw_connect: Callable[[str], RawConnection], settings: Settings
) -> None:
    """The control for the test above: the same smuggled bytes, sent as a second request in their own
    right, are read as one, so a refusal above is the framing's doing."""
    connection = raw_connect(served.url)
    connection.send(request(b"Content-Length: 0\r\n") + SMUGGLED)
    assert [connection.response().status, connection.response().status] == [200, 200]
    assert [r.status for r in connection.closed_after(PROBE)] == [200]
    assert sorted(record.kind.value for record in records(redis)) == ["fop", "profile"]
    assert sorted(token_of(record, settings) for record in records(redis)) == sorted([TOKEN, SMUGGLED_TOKEN])


def records(redis: Redis) -> list[Record]:
    return [Record.from_json(redis.get(RECORD_PREFIX + ident)) for ident in stored_ids(redis)]


def token_of(record: Record, settings: Settings) -> str:
    return vault_from_settings(settings).decrypt(record.token, bound_to=record.id).value


# query (as sent on the wire) -> the error code, or what the stored record must hold
REFUSED_QUERIES: dict[str, str] = {
    f"type=FOP&type=Profile&oauth_token_key={TOKEN}": "duplicate_parameter",
    f"type=FOP&%74ype=Profile&oauth_token_key={TOKEN}": "duplicate_parameter",
    f"type=FOP&oauth_token_key={TOKEN}&oauth%5Ftoken%5Fkey=other-token-value": "duplicate_parameter",
    f"type=FOP&oauth_token_key={TOKEN}&OAUTH_TOKEN_KEY=other-token-value": "duplicate_parameter",
    f"type=FOP&oauth_token_key={TOKEN}%00": "invalid_token",
    f"type=FOP&oauth_token_key=%00{TOKEN}": "invalid_token",
    f"type=FOP&oauth_token_key={TOKEN}%0A": "invalid_token",
    f"type=FOP&oauth_token_key={TOKEN}%0D%0AX-Injected:%201": "invalid_token",
    f"type=FOP&oauth_token_key=%E2%80%8B{TOKEN}": "invalid_token",
    f"type=FOP&oauth_token_key=%20{TOKEN}": "invalid_token",
    f"type=FOP%00&oauth_token_key={TOKEN}": "invalid_type",
    f"type=FOP;oauth_token_key={TOKEN}": "invalid_type",  # `;` separates nothing: type is all of it
    f"type=Profile&oauth_token_key={TOKEN}&userid_type=login&userid_value=a%0Ab": "invalid_userid_value",
    f"type=Profile&oauth_token_key={TOKEN}&userid_type=login%00&userid_value=a": "invalid_userid_type",
    f"type=FOP&oauth_token_key={TOKEN}" + "&x=1" * 40: "invalid_query",
    f"type=FOP&oauth_token_key=%FF{TOKEN}": "invalid_query",
}
ACCEPTED_QUERIES: dict[str, tuple[str, str, str | None]] = {
    # query -> (kind, token, userid_value) the record must hold: decoded once, nothing split off
    f"type=F%4FP&oauth_token_key={TOKEN}": ("fop", TOKEN, None),
    f"type=FOP&oauth_token_key={TOKEN}1;type=Profile": ("fop", f"{TOKEN}1;type=Profile", None),
    f"type=FOP&oauth_token_key={TOKEN}2%26type%3DProfile": ("fop", f"{TOKEN}2&type=Profile", None),
    f"type=Profile&oauth_token_key={TOKEN}&userid_type=login&userid_value=u%26userid_value%3Dv": (
        "profile",
        TOKEN,
        "u&userid_value=v",
    ),
    # a `+` is a `+`: Concur sends tokens and logins unencoded, and neither holds a space
    f"type=FOP&oauth_token_key=+{TOKEN}3": ("fop", f"+{TOKEN}3", None),
    f"type=Profile&oauth_token_key={TOKEN}4&userid_type=login&userid_value=cm+travel@example.com": (
        "profile",
        f"{TOKEN}4",
        "cm+travel@example.com",
    ),
}


def test_smuggled_query_parameters_are_refused_or_read_exactly_as_sent(
    served: LiveServer,
    redis: Redis,
    raw_connect: Callable[[str], RawConnection],
    settings: Settings,
    captured_logs: CapturedLogs,
) -> None:
    connection = raw_connect(served.url)
    refused: dict[str, str] = {}
    for query in REFUSED_QUERIES:
        connection.send(request(b"Content-Length: 0\r\n", target=f"/postback?{query}".encode()))
        response = connection.response()
        refused[query] = response.json_error() if response.status == 400 else f"HTTP {response.status}"
        assert TOKEN.encode() not in response.body
    assert refused == REFUSED_QUERIES
    assert redis.dbsize() == 0

    accepted: dict[str, tuple[str, str, str | None]] = {}
    for query in ACCEPTED_QUERIES:
        before = set(stored_ids(redis))
        connection.send(request(b"Content-Length: 0\r\n", target=f"/postback?{query}".encode()))
        assert connection.response().status == 200, query
        [new] = set(stored_ids(redis)) - before
        record = Record.from_json(redis.get(RECORD_PREFIX + new))
        accepted[query] = (record.kind.value, token_of(record, settings), record.userid_value)
    assert accepted == ACCEPTED_QUERIES
    assert [r.status for r in connection.closed_after(PROBE)] == [200]

    access = [entry for entry in captured_logs.events() if "method" in entry]
    assert len(access) == len(REFUSED_QUERIES) + len(ACCEPTED_QUERIES) + 1
    assert {entry["path"] for entry in access} == {"/postback", "/healthz"}  # never the query string
    assert TOKEN not in captured_logs.text
    assert TOKEN[-12:] not in captured_logs.text


def test_a_token_only_in_a_form_body_is_not_read(
    served: LiveServer, redis: Redis, raw_connect: Callable[[str], RawConnection]
) -> None:
    body = f"oauth_token_key={TOKEN}".encode()
    connection = raw_connect(served.url)
    connection.send(
        request(
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n" % len(body),
            body,
            target=b"/postback?type=FOP",
        )
    )
    response = connection.response()
    assert (response.status, response.json_error()) == (400, "missing_token")
    assert redis.dbsize() == 0


def test_crlf_in_the_request_target_ends_the_request_line_and_smuggles_nothing(
    served: LiveServer,
    redis: Redis,
    raw_connect: Callable[[str], RawConnection],
    settings: Settings,
    captured_logs: CapturedLogs,
) -> None:
    """`POST /postback?…token\\r\\nX: y HTTP/1.1`: whatever the parser makes of it, the token is the one
    before the line break, and what follows is at most a header, never a parameter or a request."""
    connection = raw_connect(served.url)
    connection.send(request(b"Content-Length: 0\r\n", target=TARGET + b"\r\nX: y&type=Profile"))
    first = connection.response()
    assert first.status in (200, 400)
    after = [r.body for r in connection.closed_after(PROBE)]
    assert after in ([], [b'{"status":"ok"}'])  # at most the probe's own answer
    stored = records(redis)
    if first.status == 400:
        assert stored == []
    else:
        assert [(r.kind.value, token_of(r, settings)) for r in stored] == [("fop", TOKEN)]
    assert TOKEN not in captured_logs.text
