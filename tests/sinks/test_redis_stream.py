"""The Redis stream sink against a real Redis: entries, trimming, de-duplication, failures, secrets."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from redis import Redis

from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.errors import ConfigurationError, SinkError
from concur_postback.events import Event
from concur_postback.sinks.redis_stream import (
    DEFAULT_DEDUP_TTL_SECONDS,
    DEFAULT_MAXLEN,
    DEFAULT_STREAM,
    RedisStreamSink,
)
from tests.conftest import CapturedLogs, sample_event

PASSWORD = "s3cret-Pa55word"


def sink_url(redis_url: str, query: str = "stream=test:events") -> str:
    parts = urlsplit(redis_url)
    return f"redis+stream://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")


def make_event(n: int = 0, trip_id: str | None = "TRIP-1", kind: str = "itinerary") -> Event:
    return sample_event(n, trip_id, kind, data={"n": n, "note": "x" * 200})


def deliver_all(sink: RedisStreamSink, events: list[Event]) -> None:
    async def run() -> None:
        try:
            for event in events:
                await sink.deliver(event, event.to_json())
        finally:
            await sink.aclose()

    asyncio.run(run())


def test_appends_one_entry_per_event_with_its_fields(redis_url: str, redis: Redis) -> None:
    sink = RedisStreamSink.from_url(sink_url(redis_url))
    trip, profile = make_event(1), make_event(2, trip_id=None, kind="profile")
    deliver_all(sink, [trip, profile])

    entries = redis.xrange("test:events")
    assert len(entries) == 2
    for (_, fields), event in zip(entries, [trip, profile], strict=True):
        assert fields == {
            b"id": event.id.encode(),
            b"kind": event.kind.encode(),
            b"event_type": b"UPDATE",
            b"trip_id": (event.trip_id or "").encode(),
            b"subject": b"login:traveller@example.com",
            b"event": event.to_json(),
        }
        assert orjson.loads(fields[b"event"])["id"] == event.id
    assert entries[1][1][b"trip_id"] == b""


def test_defaults_stream_name_and_maxlen(redis_url: str, redis: Redis) -> None:
    sink = RedisStreamSink.from_url(sink_url(redis_url, query=""))
    assert (sink.stream, sink.maxlen, sink.dedup_ttl) == (
        DEFAULT_STREAM,
        DEFAULT_MAXLEN,
        DEFAULT_DEDUP_TTL_SECONDS,
    )
    assert sink.name.endswith(f"?stream={DEFAULT_STREAM}")
    deliver_all(sink, [make_event()])
    assert redis.xlen(DEFAULT_STREAM) == 1


def test_maxlen_bounds_the_stream(redis_url: str, redis: Redis) -> None:
    maxlen = 10
    # Approximate trimming (MAXLEN ~) only drops whole radix-tree nodes, which hold at most
    # stream-node-max-entries entries: the stream keeps at least maxlen and fewer than maxlen + that.
    node_entries = int(redis.config_get("stream-node-max-entries")["stream-node-max-entries"])
    count = maxlen + node_entries + 50
    sink = RedisStreamSink.from_url(sink_url(redis_url, f"stream=small&maxlen={maxlen}"))
    events = [make_event(n) for n in range(count)]
    deliver_all(sink, events)

    length = redis.xlen("small")
    assert maxlen <= length < maxlen + node_entries < count
    newest = redis.xrevrange("small", count=1)[0][1]
    assert newest[b"id"] == events[-1].id.encode()


def test_redelivery_adds_no_second_entry(redis_url: str, redis: Redis) -> None:
    sink = RedisStreamSink.from_url(sink_url(redis_url))
    event = make_event(7)
    deliver_all(sink, [event, event])
    deliver_all(sink, [event])  # a new event loop, as after a worker restart: a new client

    entries = redis.xrange("test:events")
    assert len(entries) == 1
    marker = sink.seen_key(event.id)
    assert marker == f"test:events:seen:{event.id}"
    assert redis.get(marker) == entries[0][0]  # the marker names the entry of the first delivery
    assert DEFAULT_DEDUP_TTL_SECONDS - 60 < redis.ttl(marker) <= DEFAULT_DEDUP_TTL_SECONDS


def test_without_dedup_ttl_redelivery_appends_again(redis_url: str, redis: Redis) -> None:
    sink = RedisStreamSink.from_url(sink_url(redis_url, "stream=test:events&dedup_ttl=0"))
    event = make_event(7)
    deliver_all(sink, [event, event])

    entries = redis.xrange("test:events")
    assert [fields[b"id"] for _, fields in entries] == [event.id.encode()] * 2
    assert redis.exists(sink.seen_key(event.id)) == 0


@pytest.mark.parametrize(
    "tail",
    [
        "HOST:notaport/0",
        "HOST:70000/0",
        "HOST:0/0",
        "HOST:PORT/x",
        "HOST:PORT/-1",
        "HOST:PORT/0/1",
        "HOST:PORT/0?maxlen=0",
        "HOST:PORT/0?maxlen=-5",
        "HOST:PORT/0?maxlen=ten",
        "HOST:PORT/0?maxlen=",
        "HOST:PORT/0?maxlen=1.5",
        "HOST:PORT/0?stream=",
        "HOST:PORT/0?stream=a&stream=b",
        "HOST:PORT/0?maxLen=10",
        "HOST:PORT/0?dedup_ttl=-1",
        "HOST:PORT/0?timeout=0",
        "HOST:PORT/0?timeout=soon",
        ":PORT/0",
    ],
)
def test_bad_urls_are_refused_at_start_up(redis_url: str, tail: str) -> None:
    parts = urlsplit(redis_url)
    url = "redis+stream://" + tail.replace("HOST", "127.0.0.1").replace("PORT", str(parts.port))
    with pytest.raises(ConfigurationError):
        RedisStreamSink.from_url(url)


def test_another_scheme_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis\\+stream"):
        RedisStreamSink.from_url("redis://127.0.0.1:6379/0")


def test_unreachable_server_is_only_logged_at_start_up(captured_logs: CapturedLogs) -> None:
    port = free_port()
    RedisStreamSink.from_url(f"redis+stream://alice:{PASSWORD}@127.0.0.1:{port}/0?stream=s")
    (warning,) = captured_logs.named("sink.unreachable_at_start")
    assert warning["sink"] == f"redis+stream://alice:****@127.0.0.1:{port}/0?stream=s"
    assert "ConnectionError" in warning["reason"]
    assert PASSWORD not in captured_logs.text


def test_a_server_that_refuses_the_credentials_is_refused_at_start_up(redis_url: str) -> None:
    parts = urlsplit(redis_url)
    url = f"redis+stream://alice:{PASSWORD}@127.0.0.1:{parts.port}/0?stream=s"
    with pytest.raises(ConfigurationError) as caught:
        RedisStreamSink.from_url(url)
    message = str(caught.value)
    assert f"redis+stream://alice:****@127.0.0.1:{parts.port}/0" in message
    assert PASSWORD not in message


def test_stream_key_of_another_type_is_refused_at_start_up(redis_url: str, redis: Redis) -> None:
    redis.set("test:events", "not a stream")
    with pytest.raises(ConfigurationError, match="holds a string"):
        RedisStreamSink.from_url(sink_url(redis_url))


def test_server_gone_after_start_up_is_a_retryable_failure(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        sink = RedisStreamSink.from_url(f"redis+stream://127.0.0.1:{server.port}/0?stream=s")

        async def scenario() -> SinkError:
            await sink.deliver(make_event(1), make_event(1).to_json())
            server.stop()
            try:
                with pytest.raises(SinkError) as caught:
                    await sink.deliver(make_event(2), make_event(2).to_json())
                server.start()  # same port, same data (AOF): the same sink delivers again
                await sink.deliver(make_event(2), make_event(2).to_json())
                return caught.value
            finally:
                await sink.aclose()

        failure = asyncio.run(scenario())
        assert failure.permanent is False
        assert "ConnectionError" in str(failure)
        client = Redis(port=server.port)
        assert [fields[b"id"] for _, fields in client.xrange("s")] == [
            make_event(1).id.encode(),
            make_event(2).id.encode(),
        ]
        client.close()
    finally:
        server.stop()


def test_stream_key_of_another_type_is_a_permanent_failure(redis_url: str, redis: Redis) -> None:
    sink = RedisStreamSink.from_url(sink_url(redis_url))
    redis.set("test:events", "not a stream")
    event = make_event(3)
    with pytest.raises(SinkError) as caught:
        deliver_all(sink, [event])
    assert caught.value.permanent is True
    assert "WRONGTYPE" in str(caught.value)

    redis.delete("test:events")  # the failed append left no marker: the retry appends
    assert redis.exists(sink.seen_key(event.id)) == 0
    deliver_all(sink, [event])
    assert redis.xlen("test:events") == 1


def test_name_hides_the_password() -> None:
    sink = RedisStreamSink.parse(
        f"redis+stream://alice:{PASSWORD}@redis.internal:6380/2?stream=ev:x&maxlen=5"
    )
    assert sink.name == "redis+stream://alice:****@redis.internal:6380/2?stream=ev:x"
    only_password = RedisStreamSink.parse(f"rediss+stream://:{PASSWORD}@redis.internal/3")
    assert only_password.name == f"rediss+stream://:****@redis.internal:6379/3?stream={DEFAULT_STREAM}"
    assert only_password.tls is True
    assert RedisStreamSink.parse("redis+stream://[::1]:6390").name.startswith("redis+stream://[::1]:6390/0?")
    assert RedisStreamSink.parse("redis+stream://u%40x:p%2Fw@h/0").name.startswith(
        "redis+stream://u%40x:****@h:"
    )


def test_password_authenticates_and_never_shows(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        admin = Redis(port=server.port)
        admin.config_set("requirepass", PASSWORD)
        admin.close()
        base = f"redis+stream://default:{{}}@127.0.0.1:{server.port}/0?stream=s"

        with pytest.raises(ConfigurationError) as refused:
            RedisStreamSink.from_url(base.format("wrong-" + PASSWORD))
        assert "AuthenticationError" in str(refused.value)
        assert PASSWORD not in str(refused.value)

        sink = RedisStreamSink.from_url(base.format(PASSWORD))
        assert PASSWORD not in sink.name
        deliver_all(sink, [make_event(1)])
        server.stop()
        with pytest.raises(SinkError) as failed:
            deliver_all(sink, [make_event(2)])
        assert failed.value.permanent is False
        assert PASSWORD not in str(failed.value)
    finally:
        server.stop()
