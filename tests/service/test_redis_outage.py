"""Redis stops mid-run: postbacks get 503 + Retry-After (never a false 200), then recover."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis import Redis

from concur_postback.config import Settings
from concur_postback.embedded import EmbeddedRedis
from concur_postback.inbox import INBOX_KEY
from tests.conftest import NOTIFICATION, TOKEN, LiveServer


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
