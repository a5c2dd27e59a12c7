"""Redis stops or hangs mid-run: postbacks get 503 + Retry-After in time (never a false 200), then recover."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from concur_postback.config import Settings
from concur_postback.embedded import EmbeddedRedis
from concur_postback.keys import INBOX_KEY
from tests.conftest import NOTIFICATION, TOKEN, CapturedLogs, LiveServer
from tests.netfaults import TcpProxy
from tests.service.test_ess import EVENT


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", appendfsync="always").start()
    yield server
    server.stop()


def test_redis_down_gives_503_and_recovery_keeps_earlier_data(
    own_redis: EmbeddedRedis,
    make_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
) -> None:
    server = make_server(
        make_settings(redis_url=own_redis.url, redis_timeout_seconds=0.5, retry_after_seconds=7)
    )
    first = server.post(body=NOTIFICATION, type="Itinerary", oauth_token_key=TOKEN)
    assert first.status_code == 200

    own_redis.kill()
    for _ in range(3):
        down = server.post(type="Profile", oauth_token_key=TOKEN)
        assert down.status_code == 503
        assert down.headers["retry-after"] == "7"
        assert down.json()["error"] == "unavailable"
        assert TOKEN not in down.text
    assert server.client.get("/readyz").status_code == 503
    assert server.client.get("/healthz").status_code == 200

    own_redis.start()  # same port, same AOF: the script cache is empty now (NOSCRIPT is handled)
    assert server.client.get("/readyz").status_code == 200
    again = server.post(type="Profile", oauth_token_key=TOKEN)
    assert again.status_code == 200, again.text
    redelivered = server.post(body=NOTIFICATION, type="Itinerary", oauth_token_key=TOKEN)
    assert redelivered.json() == {"status": "duplicate", "id": first.json()["id"]}
    client = Redis.from_url(own_redis.url)
    assert [raw.decode() for raw in client.lrange(INBOX_KEY, 0, -1)] == [
        first.json()["id"],
        again.json()["id"],
    ]
    client.close()


def test_an_ess_event_while_redis_is_down_is_503_so_ess_delivers_it_again(
    own_redis: EmbeddedRedis,
    make_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
) -> None:
    settings = make_settings(
        redis_url=own_redis.url, redis_timeout_seconds=0.5, retry_after_seconds=7, ess_verify_signature=False
    )
    server = make_server(settings)
    own_redis.kill()
    down = server.client.post("/events", content=EVENT)
    assert (down.status_code, down.headers["retry-after"], down.json()["error"]) == (503, "7", "unavailable")
    own_redis.start()
    assert server.client.post("/events", content=EVENT).json()["status"] == "accepted"


def test_with_redis_hung_every_postback_is_answered_within_the_redis_timeout(
    own_redis: EmbeddedRedis,
    make_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
    captured_logs: CapturedLogs,
) -> None:
    """Redis accepts the connection and then answers nothing. Postbacks queued behind a batch that
    waits for it are each answered 503 when their own REDIS_TIMEOUT_SECONDS is up, not one batch's
    timeout after another (with 300 waiting in batches of 50, the last waited three timeouts)."""
    proxy = TcpProxy("127.0.0.1", own_redis.port)
    proxy.up()
    timeout = 0.5
    settings = make_settings(
        redis_url=f"redis://127.0.0.1:{proxy.port}/0", redis_timeout_seconds=timeout, ingest_max_batch=50
    )
    server = make_server(settings)
    assert server.post(type="Profile", oauth_token_key=TOKEN).status_code == 200
    proxy.stall()

    async def flood() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            replies = await asyncio.gather(
                *(
                    client.post("/postback", params={"type": "FOP", "oauth_token_key": f"{TOKEN}{n}"})
                    for n in range(300)
                )
            )
        return [reply.status_code for reply in replies]

    try:
        statuses = asyncio.run(flood())
    finally:
        proxy.resume()
        proxy.close()
    assert set(statuses) == {503}
    durations = [entry["duration_ms"] for entry in captured_logs.named("postback.unavailable")]
    assert len(durations) == 300
    assert max(durations) < timeout * 1000 * 2  # the timeout and a margin, not six timeouts
