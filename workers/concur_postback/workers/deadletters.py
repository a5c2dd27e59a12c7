"""Dead letters: deliveries that failed for good, kept with their reason until requeued or purged.

A dead letter's id is `<notification id>.<sink id>`; requeueing it schedules a delivery of the
stored event to that one sink, which the workers' retry loop picks up at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from concur_postback.workers.deliveries import (
    ATTEMPTS_PREFIX,
    DEAD_KEY,
    DEAD_PREFIX,
    EVENT_PREFIX,
    OWED_PREFIX,
    RETRY_KEY,
    SINK_NAMES_KEY,
)


@dataclass(frozen=True)
class DeadLetter:
    id: str
    notification_id: str
    sink: str
    event_id: str
    kind: str
    reason: str
    attempts: int
    failed_at: float
    request_id: str


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _letter(letter_id: str, fields: dict[Any, Any]) -> DeadLetter:
    text = {_text(key): _text(value) for key, value in fields.items()}
    return DeadLetter(
        id=letter_id,
        notification_id=text.get("notification_id", ""),
        sink=text.get("sink", ""),
        event_id=text.get("event_id", ""),
        kind=text.get("kind", ""),
        reason=text.get("reason", ""),
        attempts=int(text.get("attempts", "0")),
        failed_at=float(text.get("failed_at", "0")),
        request_id=text.get("request_id", ""),
    )


def list_letters(redis: Redis, limit: int = 1000) -> list[DeadLetter]:
    ids = [_text(raw) for raw in redis.zrange(DEAD_KEY, 0, limit - 1)]
    with redis.pipeline(transaction=False) as pipe:
        for letter_id in ids:
            pipe.hgetall(DEAD_PREFIX + letter_id)
        found = pipe.execute()
    return [_letter(letter_id, fields) for letter_id, fields in zip(ids, found, strict=True) if fields]


def show(redis: Redis, letter_id: str) -> tuple[DeadLetter, bytes | None] | None:
    fields = redis.hgetall(DEAD_PREFIX + letter_id)
    if not fields:
        return None
    letter = _letter(letter_id, fields)
    event = redis.get(EVENT_PREFIX + letter.notification_id)
    return letter, event if isinstance(event, bytes) else None


def requeue(redis: Redis, letter_ids: list[str]) -> tuple[list[str], list[str]]:
    """Schedule each letter's event for its sink again; return (requeued, not requeued)."""
    done, skipped = [], []
    for letter_id in letter_ids:
        notification_id, _, sink_id = letter_id.rpartition(".")
        if not redis.exists(DEAD_PREFIX + letter_id) or not redis.exists(EVENT_PREFIX + notification_id):
            skipped.append(letter_id)  # unknown, already requeued, or its event expired
            continue
        with redis.pipeline(transaction=True) as pipe:
            pipe.delete(DEAD_PREFIX + letter_id)
            pipe.zrem(DEAD_KEY, letter_id)
            pipe.sadd(OWED_PREFIX + notification_id, sink_id)
            pipe.hset(ATTEMPTS_PREFIX + notification_id, sink_id, 0)
            pipe.zadd(RETRY_KEY, {letter_id: time.time()})
            pipe.execute()
        done.append(letter_id)
    return done, skipped


def all_ids(redis: Redis) -> list[str]:
    return [_text(raw) for raw in redis.zrange(DEAD_KEY, 0, -1)]


def purge(redis: Redis) -> int:
    ids = all_ids(redis)
    with redis.pipeline(transaction=True) as pipe:
        for letter_id in ids:
            pipe.delete(DEAD_PREFIX + letter_id)
        pipe.delete(DEAD_KEY)
        pipe.execute()
    return len(ids)


def per_sink(redis: Redis) -> dict[str, dict[str, int]]:
    """Deliveries waiting for a retry and dead letters, per sink (by name)."""
    names = {_text(key): _text(value) for key, value in redis.hgetall(SINK_NAMES_KEY).items()}
    counts: dict[str, dict[str, int]] = {name: {"retrying": 0, "dead": 0} for name in names.values()}
    for key, label in ((RETRY_KEY, "retrying"), (DEAD_KEY, "dead")):
        for raw in redis.zrange(key, 0, -1):
            sink_id = _text(raw).rpartition(".")[2]
            counts.setdefault(names.get(sink_id, sink_id), {"retrying": 0, "dead": 0})[label] += 1
    return counts
