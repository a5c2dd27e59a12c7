"""The HTTP webhook sink against a real receiver: a Starlette app under uvicorn, over a socket."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from concur_postback.config import load_settings
from concur_postback.errors import ConfigurationError, SinkError
from concur_postback.events import Event
from concur_postback.sinks import factories
from concur_postback.sinks.http import SECRET_ENV, HttpSink, HttpSinkError, parse_secret, sign
from tests.conftest import CapturedLogs, serve_asgi

SECRET = "whsec_" + base64.b64encode(b"k" * 8 + bytes(range(24))).decode()  # 32-byte key
MARKER = "payload-marker-7f3a9c"  # must never show up in an error message


def make_event(event_id: str = "evt_0123456789abcdef0123456789abcdef") -> Event:
    return Event(
        id=event_id,
        kind="itinerary",
        event_type="UPDATE",
        received_at="2026-11-22T10:00:00.000Z",
        fetched_at="2026-11-22T10:00:01.000Z",
        notification_id="ntf_1",
        request_id="req-1",
        subject="login:traveller@example.com",
        login_id="traveller@example.com",
        userid_type="login",
        userid_value="traveller@example.com",
        trip_id="trip-1",
        object_uri="https://us.api.concursolutions.com/api/travel/trip/v1.1/trip-1",
        event_time="2026-11-22T10:00:00",
        data={"note": MARKER, "city": "Zürich"},
    )


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    echo: bool = False  # answer with the request's body (an error message must not repeat it)


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    client_port: int | None


@dataclass
class Receiver:
    """Records every request; answers with the queued replies in order, then 204."""

    url: str = ""
    requests: list[Seen] = field(default_factory=list)
    replies: deque[Reply] = field(default_factory=deque)

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            port = request.client.port if request.client else None
            seen = Seen(
                request.method, request.url.path, request.url.query, dict(request.headers), body, port
            )
            self.requests.append(seen)
            reply = self.replies.popleft() if self.replies else Reply(204)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            content = body if reply.echo else b""
            return Response(content, status_code=reply.status, headers=reply.headers)

        return Starlette(routes=[Route("/{path:path}", hook, methods=["POST", "GET"])])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    running = serve_asgi(state.app())
    state.url = next(running).url
    yield state
    next(running, None)


@pytest.fixture(autouse=True)
def no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)


def http_sink(url: str) -> HttpSink:
    """Built the way SINKS builds it: signed with SINK_HTTP_SECRET from the environment, if set."""
    sink = factories(load_settings())["https"](url)  # the same factory for http://
    assert isinstance(sink, HttpSink)
    return sink


def deliver(sink: HttpSink, *events: Event) -> None:
    """Deliver each event in one event loop, as a worker does, then close the sink."""

    async def run() -> None:
        try:
            for event in events or (make_event(),):
                await sink.deliver(event, event.to_json())
        finally:
            await sink.aclose()

    asyncio.run(run())


def failure(sink: HttpSink) -> HttpSinkError:
    with pytest.raises(HttpSinkError) as caught:
        deliver(sink)
    error = caught.value
    assert isinstance(error, SinkError)
    assert MARKER not in str(error)
    assert SECRET not in str(error)
    return error


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Delivery, headers, signature


def test_posts_the_payload_as_is_with_webhook_headers(receiver: Receiver) -> None:
    event = make_event()
    before = int(time.time())
    deliver(http_sink(f"{receiver.url}/hooks/concur?tenant=a%20b&timeout=5"), event)

    [seen] = receiver.requests
    assert seen.method == "POST"
    assert seen.path == "/hooks/concur"
    assert seen.query == "tenant=a%20b"  # the receiver's own parameters kept as written, sink options gone
    assert seen.body == event.to_json()
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"] == "concur-postback"
    assert seen.headers["webhook-id"] == event.id
    assert re.fullmatch(r"\d+", seen.headers["webhook-timestamp"])
    assert before <= int(seen.headers["webhook-timestamp"]) <= int(time.time())
    assert "webhook-signature" not in seen.headers  # no secret configured
    assert "authorization" not in seen.headers


def test_signature_verifies_with_standardwebhooks(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    event = make_event()
    deliver(http_sink(receiver.url + "/hook"), event)

    [seen] = receiver.requests
    signature = seen.headers["webhook-signature"]
    assert re.fullmatch(r"v1,[A-Za-z0-9+/]{43}=", signature)  # base64 of 32 bytes
    signed = f"{event.id}.{seen.headers['webhook-timestamp']}.".encode() + event.to_json()
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    assert parse_secret(SECRET) == key
    assert signature == "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()

    assert Webhook(SECRET).verify(seen.body, seen.headers) == orjson.loads(event.to_json())
    tampered = seen.body.replace(MARKER.encode(), b"payload-marker-000000")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, seen.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(seen.body, {**seen.headers, "webhook-id": "evt_other"})
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(seen.body, seen.headers)


def test_each_attempt_is_signed_afresh_with_the_same_id(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    receiver.reply(Reply(503))
    sink = http_sink(receiver.url)
    event = make_event()

    async def twice() -> None:
        try:
            with pytest.raises(HttpSinkError):
                await sink.deliver(event, event.to_json())
            await sink.deliver(event, event.to_json())
        finally:
            await sink.aclose()

    asyncio.run(twice())
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == event.id
    for seen in (first, second):
        Webhook(SECRET).verify(seen.body, seen.headers)


def test_blank_secret_means_unsigned(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "  \n")
    deliver(http_sink(receiver.url))
    [seen] = receiver.requests
    assert "webhook-signature" not in seen.headers
    assert seen.headers["webhook-id"]


def test_secret_with_trailing_newline_and_no_padding_is_accepted(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpadded = "whsec_" + base64.b64encode(bytes(range(20))).decode().rstrip("=")  # as some providers issue
    monkeypatch.setenv(SECRET_ENV, unpadded + "\n")
    deliver(http_sink(receiver.url))
    [seen] = receiver.requests
    Webhook(unpadded).verify(seen.body, seen.headers)


@given(
    msg_id=st.text(min_size=1, max_size=40).filter(lambda s: "." not in s),
    body=st.text(max_size=200),
    key=st.binary(min_size=16, max_size=64),
    timestamp=st.integers(min_value=0, max_value=4_000_000_000),
)
def test_sign_matches_the_reference_implementation(
    msg_id: str, body: str, key: bytes, timestamp: int
) -> None:
    reference = Webhook(key).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)
    assert sign(key, msg_id, timestamp, body.encode()) == reference


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_delivered(receiver: Receiver, status: int) -> None:
    receiver.reply(Reply(status))
    deliver(http_sink(receiver.url))
    assert len(receiver.requests) == 1


def test_one_pooled_connection_for_successive_deliveries(receiver: Receiver) -> None:
    receiver.reply(Reply(200, echo=True), Reply(200, echo=True))
    sink = http_sink(receiver.url)
    deliver(sink, make_event("evt_1"), make_event("evt_2"), make_event("evt_3"))
    ports = {seen.client_port for seen in receiver.requests}
    assert [seen.headers["webhook-id"] for seen in receiver.requests] == ["evt_1", "evt_2", "evt_3"]
    assert len(ports) == 1  # keep-alive: the same connection each time


def test_client_is_created_lazily_and_closing_is_idempotent(receiver: Receiver) -> None:
    sink = http_sink(receiver.url)  # outside any event loop: nothing is opened yet

    async def close_twice() -> None:
        await sink.aclose()
        await sink.aclose()

    asyncio.run(close_twice())
    deliver(sink)  # a fresh loop after closing: a new client
    deliver(sink)
    assert len(receiver.requests) == 2


def test_user_info_is_sent_as_basic_auth(receiver: Receiver) -> None:
    url = receiver.url.replace("http://", "http://hook%40user:p%3Ass@")
    deliver(http_sink(url))
    [seen] = receiver.requests
    assert seen.headers["authorization"] == "Basic " + base64.b64encode(b"hook@user:p:ss").decode()


# Failures


@pytest.mark.parametrize(
    ("status", "retry_after", "seconds"),
    [(500, None, None), (503, "2", 2.0), (429, "7", 7.0), (408, None, None), (502, "0.5", 0.5)],
)
def test_retryable_statuses(
    receiver: Receiver, status: int, retry_after: str | None, seconds: float | None
) -> None:
    receiver.reply(Reply(status, {"Retry-After": retry_after} if retry_after else {}, echo=True))
    error = failure(http_sink(receiver.url))
    assert error.permanent is False
    assert error.status == status
    assert error.retry_after == seconds
    assert str(error).startswith(f"HTTP {status} ")


def test_retry_after_as_http_date(receiver: Receiver) -> None:
    when = datetime.fromtimestamp(time.time() + 120, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    receiver.reply(Reply(503, {"Retry-After": when}))
    error = failure(http_sink(receiver.url))
    assert error.retry_after is not None
    assert 100 < error.retry_after <= 120


def test_unreadable_retry_after_is_ignored(receiver: Receiver) -> None:
    receiver.reply(Reply(429, {"Retry-After": "soon"}))
    error = failure(http_sink(receiver.url))
    assert (error.permanent, error.retry_after) == (False, None)


def test_error_message_is_readable(receiver: Receiver) -> None:
    receiver.reply(Reply(503, {"Retry-After": "3"}))
    assert str(failure(http_sink(receiver.url))) == "HTTP 503 Service Unavailable (retry after 3 s)"
    receiver.reply(Reply(404))
    assert str(failure(http_sink(receiver.url))) == "HTTP 404 Not Found"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_other_4xx_are_permanent(receiver: Receiver, status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    receiver.reply(Reply(status, {"Retry-After": "5"}, echo=True))  # echo: the body holds the payload
    error = failure(http_sink(receiver.url))
    assert error.permanent is True
    assert error.status == status
    assert error.retry_after is None


def test_redirect_is_not_followed_and_is_permanent(receiver: Receiver) -> None:
    location = receiver.url.replace("http://", "http://u:hunter2@") + "/moved?token=abc"
    receiver.reply(Reply(302, {"Location": location}))
    error = failure(http_sink(receiver.url + "/old"))
    assert len(receiver.requests) == 1  # only the original request
    assert error.permanent is True
    assert error.status == 302
    assert str(error).startswith("HTTP 302 Found: redirect to http://****@127.0.0.1:")
    assert "hunter2" not in str(error)
    assert "token=abc" not in str(error)


def test_connection_refused_is_retryable() -> None:
    error = failure(http_sink(f"http://127.0.0.1:{closed_port()}/hook"))
    assert error.permanent is False
    assert error.status is None
    assert error.retry_after is None
    assert str(error).startswith("connection error (")


def raw_server(answer: bytes | None) -> int:
    """A TCP server that is not HTTP: it reads a request, sends ``answer`` (None: nothing) and hangs up."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        with server:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                if answer is not None:
                    connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return int(server.getsockname()[1])


@pytest.mark.parametrize(
    ("answer", "kind"),
    [(None, "connection error"), (b"HTTP/1.1 abc nonsense\r\n\r\n", "protocol error")],
)
def test_hang_up_or_non_http_answer_is_retryable(answer: bytes | None, kind: str) -> None:
    # aiohttp's own error text names the full URL, query included: it must not reach the message
    error = failure(http_sink(f"http://127.0.0.1:{raw_server(answer)}/hook?token=hunter2"))
    assert error.permanent is False
    assert error.status is None
    assert str(error).startswith(f"{kind} (")
    assert "hunter2" not in str(error)


def test_timeout_is_retryable(receiver: Receiver) -> None:
    receiver.reply(Reply(200, delay=1.5))
    started = time.monotonic()
    error = failure(http_sink(receiver.url + "/slow?timeout=0.2"))
    assert time.monotonic() - started < 1.2
    assert error.permanent is False
    assert error.status is None
    assert str(error).startswith("timeout (")
    assert receiver.requests[0].query == ""  # the option is not sent


def test_errors_never_contain_the_secret_or_the_payload(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    for status in (400, 500, 302):
        receiver.reply(Reply(status, {"Location": "/x"}, echo=True))
        failure(http_sink(receiver.url))  # asserts on the message
    sink = http_sink(receiver.url)
    assert SECRET not in repr(sink)
    assert SECRET.removeprefix("whsec_") not in repr(sink)


# Configuration


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "hooks.example.com/x",
        "http://",
        "https:///path",
        "http://:8080/x",
        "http://[::1/x",
        "http://hooks.example.com:99999/x",
        "http://hooks.example.com:port/x",
        "http://hooks.example.com:0/x",
        "http://hooks example.com/x",
        "http://hooks.example.com/x\n",
        "http://hooks.example.com/x?timeout=abc",
        "http://hooks.example.com/x?timeout=0",
        "http://hooks.example.com/x?timeout=-1",
        "http://hooks.example.com/x?timeout=nan",
        "http://hooks.example.com/x?timeout=inf",
        "http://hooks.example.com/x?timeout=1000",
        "http://hooks.example.com/x?timeout=1&timeout=2",
    ],
)
def test_bad_urls_fail_at_start_up(url: str) -> None:
    with pytest.raises(ConfigurationError):
        http_sink(url)


def test_bad_url_message_hides_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        http_sink("http://user:hunter2@hooks.example.com/x?timeout=zero&token=abc")
    assert "hunter2" not in str(caught.value)
    assert "token=abc" not in str(caught.value)
    assert "timeout must be a number" in str(caught.value)


@pytest.mark.parametrize(
    "secret",
    [
        "c2VjcmV0LXNlY3JldC1zZWNyZXQ=",  # base64 but no prefix
        "WHSEC_c2VjcmV0LXNlY3JldC1zZWNyZXQ=",
        "whsec_",
        "whsec_not*base64*at*all!!",
        "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=x",  # one character too many
        "whsec_" + base64.b64encode(b"short").decode(),  # 5 bytes: a typo, not a key
        "whsec_c2VjcmV0 LXNlY3JldC1zZWNyZXQ=",
    ],
)
def test_bad_secrets_fail_at_start_up(secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, secret)
    with pytest.raises(ConfigurationError) as caught:
        http_sink("https://hooks.example.com/concur")
    assert secret.removeprefix("whsec_") not in str(caught.value) or secret == "whsec_"
    assert SECRET_ENV in str(caught.value)


def test_secret_can_be_given_directly(receiver: Receiver) -> None:
    deliver(HttpSink.configure(receiver.url, SECRET))
    [seen] = receiver.requests
    Webhook(SECRET).verify(seen.body, seen.headers)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (
            "https://user:hunter2@hooks.example.com:8443/concur?token=abc&timeout=3",
            "https://****@hooks.example.com:8443/…",
        ),
        ("https://:hunter2@hooks.example.com/concur", "https://****@hooks.example.com/…"),
        ("https://apikey@hooks.example.com/concur#frag", "https://****@hooks.example.com/…"),
        ("http://hooks.example.com/concur?sig=hunter2", "http://hooks.example.com/…"),
        ("https://hooks.slack.example/services/T000/B000/hunter2", "https://hooks.slack.example/…"),
        ("HTTPS://Hooks.Example.com", "https://Hooks.Example.com"),
    ],
)
def test_name_hides_credentials(url: str, name: str, captured_logs: CapturedLogs) -> None:
    """User-info, the query and the path (a Slack-style webhook's secret) never show: scheme and host
    do, and `sink_label` adds the sink's id."""
    sink = http_sink(url)
    assert sink.name == name
    assert "hunter2" not in sink.name
    assert "apikey" not in sink.name
    assert "hunter2" not in repr(sink)
    assert "hunter2" not in captured_logs.text
