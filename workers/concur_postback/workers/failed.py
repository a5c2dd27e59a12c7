"""Everything that needs a person, in one place: failed notifications and dead letters.

* A **failed notification** (id: the notification id) could not be fetched or read: a permanent
  answer from Concur, a malformed document, the retry horizon or its record's TTL reached. Its record
  (with the encrypted token) stays until TOKEN_TTL_SECONDS, so it can be requeued until then: it goes
  round again, from the inbox, with a fresh retry horizon.
* A **dead letter** (id: `<notification id>.<sink id>`) is a delivery one sink refused for good or did
  not take within its horizon; requeueing it schedules the stored event for that one sink again.

Both are kept for DEAD_LETTER_TTL_SECONDS; `concur-postback failed list|show|requeue|purge` reads them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from concur_postback.connections import text
from concur_postback.events import open_event
from concur_postback.keys import (
    ATTEMPTS_PREFIX,
    DEAD_KEY,
    DEAD_PREFIX,
    EVENT_PREFIX,
    FAILED_KEY,
    FAILED_PREFIX,
    OWED_PREFIX,
    RECORD_PREFIX,
    SINK_LIVE_PREFIX,
    SINK_NAMES_KEY,
    SINK_RETRY_PREFIX,
    sink_retry_key,
)
from concur_postback.tokens import TokenVault
from concur_postback.workers.ledger import REQUEUE_FAILED

NOTIFICATION, DELIVERY = "notification", "delivery"

# ARGV: notification id, sink id, now, event TTL. The stored event goes to that sink again, with a
# fresh horizon; returns 'requeued', or why not.
_REQUEUE_LETTER = f"""
local id, sink, letter = ARGV[1], ARGV[2], ARGV[1] .. '.' .. ARGV[2]
if redis.call('EXISTS', '{DEAD_PREFIX}' .. letter) == 0 then
  return 'unknown'
end
if redis.call('EXISTS', '{EVENT_PREFIX}' .. id) == 0 then
  return 'expired'
end
if redis.call('TYPE', '{OWED_PREFIX}' .. id).ok == 'set' then
  redis.call('DEL', '{OWED_PREFIX}' .. id)  -- written by a version before per-sink schedules
end
redis.call('DEL', '{DEAD_PREFIX}' .. letter)
redis.call('ZREM', '{DEAD_KEY}', letter)
redis.call('HSET', '{OWED_PREFIX}' .. id, sink, ARGV[3])
redis.call('HSET', '{ATTEMPTS_PREFIX}' .. id, sink, 0)
redis.call('ZADD', '{SINK_RETRY_PREFIX}' .. sink, ARGV[3], id)
for _, key in ipairs({{'{EVENT_PREFIX}' .. id, '{OWED_PREFIX}' .. id, '{ATTEMPTS_PREFIX}' .. id}}) do
  if redis.call('TTL', key) < tonumber(ARGV[4]) then
    redis.call('EXPIRE', key, ARGV[4])
  end
end
return 'requeued'
"""


@dataclass(frozen=True)
class Failed:
    id: str
    what: str  # "notification" or "delivery"
    notification_id: str
    kind: str
    reason: str
    attempts: int
    failed_at: float
    request_id: str
    sink: str = ""  # deliveries: the sink, as `status` shows it
    event_id: str = ""  # deliveries: the event waiting for it
    requeueable: bool = True  # False once nothing is left to send: the record (token) or event expired


def _entry(ident: str, raw: dict[Any, Any], left: bool) -> Failed:
    """One entry from its hash; ``left``: its record (a notification) or event (a delivery) is there."""
    fields = {text(key): text(value) for key, value in raw.items()}
    delivery = "." in ident
    return Failed(
        id=ident,
        what=DELIVERY if delivery else NOTIFICATION,
        notification_id=fields.get("notification_id", ident),
        kind=fields.get("kind", "?"),
        reason=fields.get("reason", ""),
        attempts=int(fields.get("attempts", "0")),
        failed_at=float(fields.get("failed_at", "0")),
        request_id=fields.get("request_id", ""),
        sink=fields.get("sink", ""),
        event_id=fields.get("event_id", ""),
        requeueable=left,
    )


def list_failed(redis: Redis, limit: int = 1000) -> list[Failed]:
    """Failed notifications and dead letters, oldest first."""
    notifications = [text(raw) for raw in redis.zrange(FAILED_KEY, 0, limit - 1)]
    letters = [text(raw) for raw in redis.zrange(DEAD_KEY, 0, limit - 1)]
    with redis.pipeline(transaction=False) as pipe:
        for ident in notifications:
            pipe.hgetall(FAILED_PREFIX + ident)
            pipe.exists(RECORD_PREFIX + ident)
        for ident in letters:
            pipe.hgetall(DEAD_PREFIX + ident)
            pipe.exists(EVENT_PREFIX + ident.rpartition(".")[0])
        found = pipe.execute()
    mine, theirs = found[: 2 * len(notifications)], found[2 * len(notifications) :]
    entries = [
        _entry(ident, fields, bool(record))
        for ident, fields, record in zip(notifications, mine[0::2], mine[1::2], strict=True)
        if fields
    ]
    entries += [
        _entry(ident, fields, bool(event))
        for ident, fields, event in zip(letters, theirs[0::2], theirs[1::2], strict=True)
        if fields
    ]
    return sorted(entries, key=lambda entry: entry.failed_at)


def show(redis: Redis, ident: str, vault: TokenVault) -> tuple[Failed, bytes | None] | None:
    """One entry and what it holds: a dead letter's event (decrypted), a failed notification's record
    (the token still encrypted)."""
    if "." in ident:
        fields = redis.hgetall(DEAD_PREFIX + ident)
        if not fields:
            return None
        notification_id = ident.rpartition(".")[0]
        event = redis.get(EVENT_PREFIX + notification_id)
        letter = _entry(ident, fields, event is not None)
        return letter, open_event(vault, notification_id, event) if isinstance(event, bytes) else None
    fields = redis.hgetall(FAILED_PREFIX + ident)
    if not fields:
        return None
    record = redis.get(RECORD_PREFIX + ident)
    return _entry(ident, fields, record is not None), record if isinstance(record, bytes) else None


def requeue(redis: Redis, ids: list[str], event_ttl: int) -> tuple[list[str], dict[str, str]]:
    """Send each entry round again; return (requeued, {id: why not})."""
    notification = redis.register_script(REQUEUE_FAILED)
    letter = redis.register_script(_REQUEUE_LETTER)
    done, not_done = [], {}
    for ident in ids:
        if "." in ident:
            notification_id, _, sink = ident.rpartition(".")
            outcome = text(letter(args=[notification_id, sink, time.time(), event_ttl]))
        else:
            outcome = text(notification(args=[ident]))
        if outcome == "requeued":
            done.append(ident)
        else:
            not_done[ident] = {"unknown": "not found", "expired": "expired: nothing left to send"}[outcome]
    return done, not_done


def all_ids(redis: Redis, requeueable_only: bool = False) -> list[str]:
    return [
        entry.id for entry in list_failed(redis, limit=1_000_000) if entry.requeueable or not requeueable_only
    ]


def purge(redis: Redis) -> int:
    """Delete every failed notification (with its record and token) and every dead letter."""
    notifications = [text(raw) for raw in redis.zrange(FAILED_KEY, 0, -1)]
    letters = [text(raw) for raw in redis.zrange(DEAD_KEY, 0, -1)]
    with redis.pipeline(transaction=True) as pipe:
        for ident in notifications:
            pipe.delete(FAILED_PREFIX + ident, RECORD_PREFIX + ident)
        for ident in letters:
            pipe.delete(DEAD_PREFIX + ident)
        pipe.delete(FAILED_KEY, DEAD_KEY)
        pipe.execute()
    return len(notifications) + len(letters)


def per_sink(redis: Redis) -> dict[str, dict[str, int]]:
    """Deliveries waiting for a retry and dead letters, per sink (as `status` shows sinks)."""
    names = {text(key): text(value) for key, value in redis.hgetall(SINK_NAMES_KEY).items()}
    counts = {name: {"retrying": 0, "dead": 0} for name in names.values()}
    with redis.pipeline(transaction=False) as pipe:
        for ident in names:
            pipe.zcard(sink_retry_key(ident))
        retrying = pipe.execute()
    for ident, count in zip(names, retrying, strict=True):
        counts[names[ident]]["retrying"] = int(count)
    for raw in redis.zrange(DEAD_KEY, 0, -1):
        ident = text(raw).rpartition(".")[2]
        counts.setdefault(names.get(ident, ident), {"retrying": 0, "dead": 0})["dead"] += 1
    return counts


def unowned_sinks(redis: Redis) -> list[str]:
    """Sinks that deliveries wait for but no live worker has (a rolling deploy, or SINKS changed)."""
    names = {text(key): text(value) for key, value in redis.hgetall(SINK_NAMES_KEY).items()}
    with redis.pipeline(transaction=False) as pipe:
        for ident in names:
            pipe.zcard(sink_retry_key(ident))
            pipe.exists(SINK_LIVE_PREFIX + ident)
        found = pipe.execute()
    return [
        names[ident]
        for ident, owed, live in zip(names, found[0::2], found[1::2], strict=True)
        if owed and not live
    ]
