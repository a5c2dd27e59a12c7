"""Property-based fuzzing of the postback endpoint over real HTTP (uvicorn, real Redis).

Generated query strings (known parameters, their case and percent-encoded spellings, repeats, odd
separators and values) and bodies (bytes, and XML-ish documents built from the `<Notification>`
element names with valid and hostile values, DOCTYPEs, encodings, truncation, oversize): the answer is
always 200 with a JSON status or a 4xx with a JSON error, never a 5xx; a refused request stores
nothing; the token never appears in a response or a log line. Each request is bounded by the client's
timeout, so a hang fails the example instead of stalling the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import httpx
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import Redis

from concur_postback.config import Settings
from concur_postback.service.protocol import HttpProtocol
from tests.conftest import TOKEN, CapturedLogs, LiveServer
from tests.security.conftest import stored_ids

MAX_BODY = 4096
TRIP = "https://www.concursolutions.com/api/travel/trip/v1.1/"
# No deadline: each request is bounded by the client's timeout instead (a slow machine is not a failure).
FUZZ = settings(max_examples=150, deadline=None)

# --- the query string ------------------------------------------------------------------------------------

NAMES = st.one_of(
    st.sampled_from(["type", "oauth_token_key", "userid_type", "userid_value"]),
    st.sampled_from(["TYPE", "Oauth_Token_Key", "%74ype", "oauth%5Ftoken%5Fkey", "type%00", "x", ""]),
    st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=6),
)
VALUES = st.one_of(
    st.sampled_from(["Itinerary", "FOP", "Profile", "itinerary", "fOp", "Expense", "login", "xmlsyncid"]),
    st.sampled_from([TOKEN, TOKEN + "%00", TOKEN + "%0A", "%0D%0A" + TOKEN, "%FF", "%E2%80%8B", "a;b", "+"]),
    st.text(max_size=12),
)


@st.composite
def query(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(NAMES, VALUES), max_size=8))
    if draw(st.booleans()):  # often a plausible postback, so the body gets read too
        kind = draw(st.sampled_from(["Itinerary", "FOP", "Profile"]))
        pairs = [("type", kind), ("oauth_token_key", TOKEN), *pairs]
    separator = draw(st.sampled_from(["&", "&", ";", "&&"]))
    text = separator.join(f"{name}={value}" for name, value in pairs)
    # Whatever the text, a request target an HTTP client would send.
    return quote(text, safe="&;=%+/?:@!$'()*,~-._")


# --- the body --------------------------------------------------------------------------------------------

FIELDS = ["ObjectType", "ObjectURI", "EventDateTime", "EventType", "Context", "TripId", "Unknown"]
FIELD_VALUES = st.one_of(
    st.sampled_from(["ITINERARY", "itinerary", "PROFILE", "CREATE", "UPDATE", "CANCEL", "DELETE", ""]),
    st.sampled_from(["2026-11-22T10:00:00", "2026-11-22", "yesterday", "ABC", "A" * 200, "$x.y~z-_"]),
    st.sampled_from([TRIP + "ABC", TRIP + "%2e%2e", "https://169.254.169.254/", "file:///etc/passwd"]),
    st.builds(lambda trip: TRIP + trip, st.from_regex(r"[A-Za-z0-9$]{1,20}", fullmatch=True)),
    st.text(max_size=20).map(lambda t: t.replace("&", "&amp;").replace("<", "&lt;")),
)


@st.composite
def notification(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(st.tuples(st.sampled_from(FIELDS), FIELD_VALUES), max_size=9))
    root = draw(st.sampled_from(["Notification", "Notification", "notification", "Trip", "n:Notification"]))
    xmlns = draw(st.sampled_from(["", ' xmlns="http://www.concursolutions.com/api/travel/trip/2010/06"']))
    if root.startswith("n:"):
        xmlns += ' xmlns:n="urn:n"'
    inner = "".join(f"<{name}>{value}</{name}>" for name, value in fields)
    prologue = draw(
        st.sampled_from(
            [
                "",
                "<?xml version='1.0' encoding='UTF-8'?>",
                '<!DOCTYPE n [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
                '<!DOCTYPE n [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
                "<?pi x?><!-- c -->",
            ]
        )
    )
    text = f"{prologue}<{root}{xmlns}>{inner}</{root}>"
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))  # sometimes truncated
    return data if cut is None else data[:cut]


BODIES = st.one_of(
    notification(),
    st.binary(max_size=256),
    st.sampled_from([b"", b" ", b'{"ObjectURI": "x"}', b"\x00" * 16, "<\u2603/>".encode("utf-16")]),
    st.integers(MAX_BODY - 2, MAX_BODY + 2).map(lambda n: b"<" * n),  # around the limit
)


def assert_well_formed_answer(response: httpx.Response) -> None:
    assert response.status_code in (200, 400, 413), (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    payload = orjson.loads(response.content)
    if response.status_code == 200:
        assert payload["status"] in ("accepted", "duplicate") and payload["id"]
    else:
        assert isinstance(payload["error"], str) and isinstance(payload["detail"], str)
    assert TOKEN.encode() not in response.content


def test_any_query_and_body_get_a_json_answer_and_a_refusal_stores_nothing(
    make_server: Callable[..., LiveServer],
    make_settings: Callable[..., Settings],
    redis: Redis,
    captured_logs: CapturedLogs,
) -> None:
    server = make_server(make_settings(max_body_bytes=MAX_BODY), http=HttpProtocol)

    # One server for every example (the property is about the server, not a fresh one per request).
    @FUZZ
    @given(query=query(), body=BODIES, chunked=st.booleans())
    def check(query: str, body: bytes, chunked: bool) -> None:
        before = stored_ids(redis)
        content = iter([body[: len(body) // 2], body[len(body) // 2 :]]) if chunked else body
        response = server.client.post(f"/postback?{query}", content=content, timeout=5)
        assert_well_formed_answer(response)
        after = stored_ids(redis)
        if response.status_code == 200 and response.json()["status"] == "accepted":
            assert len(after) == len(before) + 1
        else:
            assert after == before

    check()
    assert TOKEN not in captured_logs.text
