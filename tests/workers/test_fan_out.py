"""Postback to three real sinks at once — a webhook receiver over HTTP, PostgreSQL, a Redis stream —
with the webhook down for a while: it gets each event once, the others are not touched again."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from redis import Redis
from standardwebhooks import Webhook

from concur_postback.config import Settings
from concur_postback.keys import SINK_NAMES_KEY, sink_retry_key
from concur_postback.workers.deliveries import event_ttl
from concur_postback.workers.failed import list_failed, per_sink, requeue
from tests.conftest import TOKEN, LiveServer, Pipeline, Simulator
from tests.sinks.test_http import Receiver, Reply, receiver  # noqa: F401 - fixture
from tests.sinks.test_postgres import Admin, admin, rows, server_url, table  # noqa: F401 - fixtures

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def fan_out(
    simulator: Simulator,
    make_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
    tmp_path: Path,
    sinks: str,
) -> Pipeline:
    settings = make_settings(
        concur_base_url=simulator.url,
        concur_allowed_hosts=[],
        sinks=sinks,
        sink_http_secret=SECRET,
        sink_backoff_seconds=0,
        sink_backoff_max_seconds=0,
        sink_retry_horizon_seconds=2,
    )
    return Pipeline(settings, make_server(settings), tmp_path / "unused.jsonl")


def test_fan_out_with_a_sink_down_then_back(
    simulator: Simulator,
    receiver: Receiver,  # noqa: F811
    admin: Admin,  # noqa: F811
    server_url: str,  # noqa: F811
    table: str,  # noqa: F811
    redis: Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
    tmp_path: Path,
) -> None:
    stream_url = redis_url.replace("redis://", "redis+stream://") + "?stream=events"
    sinks = f"{receiver.url}/hook {server_url}?table={table} {stream_url}"
    pipeline = fan_out(simulator, make_settings, make_server, tmp_path, sinks)
    receiver.reply(Reply(503), Reply(503))  # down for the first two attempts
    pipeline.post(simulator.notification("FANOUT1", "CREATE"), type="Itinerary", oauth_token_key=TOKEN)
    pipeline.post(simulator.notification("FANOUT1", "CREATE"), type="Itinerary", oauth_token_key=TOKEN)  # dup
    pipeline.work()  # fetch once; each sink tried; a burst worker retries what is due before it stops

    [row] = rows(admin, table)
    assert redis.xlen("events") == 1
    assert all(redis.zcard(sink_retry_key(ident.decode())) == 0 for ident in redis.hkeys(SINK_NAMES_KEY))
    ok = [seen for seen in receiver.requests if seen.body]
    assert [seen.headers["webhook-id"] for seen in ok] == [row["id"]] * 3  # 2 failures, then delivered
    Webhook(SECRET).verify(ok[-1].body, ok[-1].headers)  # the reference implementation agrees
    assert orjson.loads(ok[-1].body)["trip_id"] == "FANOUT1"
    assert len(rows(admin, table)) == 1 and redis.xlen("events") == 1  # the others were not touched again
    assert list_failed(redis) == []


def test_a_permanently_refusing_webhook_is_a_dead_letter_until_requeued(
    simulator: Simulator,
    receiver: Receiver,  # noqa: F811
    redis: Redis,
    redis_url: str,
    make_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    pipeline = fan_out(
        simulator, make_settings, make_server, tmp_path, f"{receiver.url}/hook file://{events}"
    )
    receiver.reply(Reply(422))
    pipeline.post(type="Profile", oauth_token_key=TOKEN)
    pipeline.work()
    [letter] = list_failed(redis)
    assert "HTTP 422" in letter.reason and letter.attempts == 1
    assert per_sink(redis)[letter.sink]["dead"] == 1
    assert len(events.read_bytes().splitlines()) == 1

    assert requeue(redis, [letter.id], event_ttl(pipeline.settings))[0] == [letter.id]
    pipeline.work()
    assert len([seen for seen in receiver.requests if seen.body]) == 2  # refused once, then accepted
    assert len(events.read_bytes().splitlines()) == 1  # the file sink was not written again
    assert list_failed(redis) == []


def test_two_webhooks_that_differ_only_in_a_query_parameter_are_two_sinks(
    simulator: Simulator,
    receiver: Receiver,  # noqa: F811
    redis: Redis,
    make_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
    tmp_path: Path,
) -> None:
    """Tenant a and tenant b each get the event (a sink's id is its whole URL, not its display name),
    and `status` tells them apart."""
    sinks = f"{receiver.url}/in?tenant=a {receiver.url}/in?tenant=b"
    pipeline = fan_out(simulator, make_settings, make_server, tmp_path, sinks)
    pipeline.post(type="Profile", oauth_token_key=TOKEN)
    pipeline.work()
    assert sorted(seen.query for seen in receiver.requests) == ["tenant=a", "tenant=b"]
    assert len(per_sink(redis)) == 2
