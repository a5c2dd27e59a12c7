"""Where each notification stands while the workers have it: claimed, waiting for a retry, or failed.

A job *takes* each notification it works on — a due retry, a lapsed lease or a new arrival — leasing
it in `cp:leased` and claiming it (`SET cp:claim:<id> <owner> NX PX`) in one script, renews the
claims while it works (every quarter of WORKER_HEARTBEAT_TTL_SECONDS) and ends each one by one of:

* hand-over to the sinks (deliveries.py), the normal end;
* ``retry``: another attempt is due later (exponential backoff, at least Retry-After) — the
  notification moves from `cp:leased` to `cp:retry`, its attempt counted in `cp:try:<id>`;
* ``release``: back to `cp:retry` without counting an attempt (the request budget is taken, the job's
  time is up, or Redis failed under it);
* ``fail``: a failed notification (`cp:failed`), with its reason, for a person to look at; its record
  stays until its TTL so that `failed requeue` can send it round again.

Every one of these checks, in the same script, that the claim is still this job's: a worker cut off
from Redis for longer than its claim lasts may find another worker has taken the notification over,
and then it changes nothing (fencing). So two workers never both hand a notification over, and a
step repeated by a client retry (the reply lost, the script sent again) finds its claim gone and does
nothing twice. A notification claimed by another job is skipped: its lease in `cp:leased` stands,
and it comes back, taken like a due retry, should that job's worker die.

The scripts name their keys themselves (see keys.py): one Redis, never a cluster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError
from redis.typing import EncodableT

from concur_postback.config import Settings
from concur_postback.connections import text
from concur_postback.inbox import Record
from concur_postback.keys import (
    CLAIM_PREFIX,
    COALESCE_PREFIX,
    FAILED_KEY,
    FAILED_PREFIX,
    INBOX_KEY,
    LEASED_KEY,
    PENDING_KEY,
    RECORD_PREFIX,
    RETRY_KEY,
    TAKING_KEY,
    TRY_PREFIX,
)

log = structlog.get_logger("concur_postback.ledger")

LEASE_MARGIN_SECONDS = 5  # a lapsed claim's notification can be taken again this much later

# fail(id, now, retention, fields): make `id` a failed notification with the given hash fields.
FAIL_FUNCTION = f"""
local function fail(id, now, retention, fields)
  local key = '{FAILED_PREFIX}' .. id
  redis.call('DEL', key)
  redis.call('HSET', key, 'id', id, 'failed_at', now, unpack(fields))
  redis.call('EXPIRE', key, retention)
  redis.call('ZADD', '{FAILED_KEY}', now, id)
  redis.call('ZREM', '{PENDING_KEY}', id)
  redis.call('ZREM', '{LEASED_KEY}', id)
  redis.call('ZREM', '{RETRY_KEY}', id)
  redis.call('DEL', '{TRY_PREFIX}' .. id, '{CLAIM_PREFIX}' .. id)
end
-- record_fields(fields, raw): add to `fields` what a failed notification keeps of its record, if
-- that can be read (no token: the record's own `token` is not among them).
local function record_fields(out, raw)
  local readable, r = pcall(cjson.decode, raw or '')
  if not readable or type(r) ~= 'table' then
    return out
  end
  for _, name in ipairs({{'kind', 'subject', 'request_id', 'trip_id', 'received_ms'}}) do
    if type(r[name]) == 'string' or type(r[name]) == 'number' then
      out[#out + 1] = name
      out[#out + 1] = r[name]
    end
  end
  return out
end
"""

# The step that gives a job a notification, shared by `claim` and `take`. ARGV: owner, claim ms, lease
# end, now, failed retention, then each script's own. Only an id that has a lease is taken: a re-run
# of an RQ job must not take up again what its first run retried, failed or handed over. `out` gets,
# for an id this job now holds: 1, id, record, attempts, since; for an id that ends here (its record
# expired, or cannot be read): 2, id, reason. Ids another job holds are left out. A claim already this
# owner's counts as held, so a resent script finds its own claims.
_CLAIM_FUNCTION = (
    FAIL_FUNCTION
    + f"""
local owner, claim_ms, lease_end, now, retention = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local out = {{}}
local function emit(status, id, a, b, c)
  out[#out + 1] = status
  out[#out + 1] = id
  out[#out + 1] = a
  out[#out + 1] = b
  out[#out + 1] = c
end
local function claim(id)
  local key = '{CLAIM_PREFIX}' .. id
  if not (redis.call('ZSCORE', '{LEASED_KEY}', id)
      and (redis.call('SET', key, owner, 'NX', 'PX', claim_ms) or redis.call('GET', key) == owner)) then
    return
  end
  local raw = redis.call('GET', '{RECORD_PREFIX}' .. id)
  local readable, record = false, nil
  if raw then
    readable, record = pcall(cjson.decode, raw)
  end
  if raw and readable and type(record) == 'table' and type(record.dedup_key) == 'string' then
    redis.call('PEXPIRE', key, claim_ms)
    redis.call('ZADD', '{LEASED_KEY}', lease_end, id)
    local coalesce = record.dedup_key
    if string.sub(coalesce, 1, {len(COALESCE_PREFIX)}) == '{COALESCE_PREFIX}'
        and redis.call('GET', coalesce) == id then
      redis.call('DEL', coalesce)  -- a change landing from now on queues again: this fetch may miss it
    end
    local tried = redis.call('HMGET', '{TRY_PREFIX}' .. id, 'attempts', 'since')
    emit(1, id, raw, tried[1] or '0', tried[2] or '')
  elseif raw then
    fail(id, now, retention, {{'reason', 'unreadable record'}})
    emit(2, id, 'unreadable record', '', '')
  elseif redis.call('ZSCORE', '{PENDING_KEY}', id) then
    local reason = 'expired: its record (and token) reached TOKEN_TTL_SECONDS'
    fail(id, now, retention, {{'reason', reason}})
    emit(2, id, reason, '', '')
  else
    redis.call('DEL', key)
    redis.call('ZREM', '{LEASED_KEY}', id)  -- finished by another job: nothing left to do
  end
end
"""
)
# ARGV[6..]: the ids a job was given (by an older version's pump, which leased them).
_CLAIM = (
    _CLAIM_FUNCTION
    + """
for i = 6, #ARGV do
  claim(ARGV[i])
end
return out
"""
)
# ARGV[6]: room, how many to take. Due retries first, then lapsed leases (a dead worker's), then new
# arrivals (those a waiting session moved to `taking` first), each leased and claimed. After what
# `claim` emits, the last element is when the next retry or lease comes due ('' if none): until then
# only an arrival brings work.
_TAKE = (
    _CLAIM_FUNCTION
    + f"""
local room = tonumber(ARGV[6])
local taken = {{}}
for _, key in ipairs({{'{RETRY_KEY}', '{LEASED_KEY}'}}) do
  if room > 0 then
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, room)
    if #due > 0 and key == '{RETRY_KEY}' then
      redis.call('ZREM', key, unpack(due))
    end
    for _, id in ipairs(due) do
      taken[#taken + 1] = id
    end
    room = room - #due
  end
end
for _, list in ipairs({{'{TAKING_KEY}', '{INBOX_KEY}'}}) do
  if room > 0 then
    local arrived = redis.call('LPOP', list, room) or {{}}
    for _, id in ipairs(arrived) do
      taken[#taken + 1] = id
    end
    room = room - #arrived
  end
end
for _, id in ipairs(taken) do
  redis.call('ZADD', '{LEASED_KEY}', lease_end, id)
  claim(id)
end
local next_due = ''
for _, key in ipairs({{'{RETRY_KEY}', '{LEASED_KEY}'}}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first > 0 and (next_due == '' or tonumber(first[2]) < tonumber(next_due)) then
    next_due = first[2]
  end
end
out[#out + 1] = next_due
return out
"""
)

# each_held(first, step): step(id) for each id from ARGV[first] on that ARGV[1] still holds; how many.
_EACH_HELD = f"""
local function each_held(first, step)
  local count = 0
  for i = first, #ARGV do
    if redis.call('GET', '{CLAIM_PREFIX}' .. ARGV[i]) == ARGV[1] then
      step(ARGV[i])
      count = count + 1
    end
  end
  return count
end
"""
# ARGV: owner, claim ms, lease end, then ids. Extends the claims this owner still holds.
_RENEW = (
    _EACH_HELD
    + f"""
return each_held(4, function(id)
  redis.call('PEXPIRE', '{CLAIM_PREFIX}' .. id, ARGV[2])
  redis.call('ZADD', '{LEASED_KEY}', 'XX', ARGV[3], id)
end)
"""
)
# ARGV: owner, due, then ids. Back to the retry schedule at `due`, no attempt counted.
_RELEASE = (
    _EACH_HELD
    + f"""
return each_held(3, function(id)
  redis.call('ZREM', '{LEASED_KEY}', id)
  redis.call('ZADD', '{RETRY_KEY}', ARGV[2], id)
  redis.call('DEL', '{CLAIM_PREFIX}' .. id)
end)
"""
)

# ARGV: owner, id, due, reason, now, try TTL, coalescing key ('' for none), coalescing window.
_RETRY = f"""
local id = ARGV[2]
if redis.call('GET', '{CLAIM_PREFIX}' .. id) ~= ARGV[1] then
  return 0
end
local try = '{TRY_PREFIX}' .. id
redis.call('HINCRBY', try, 'attempts', 1)
redis.call('HSETNX', try, 'since', ARGV[5])
redis.call('HSET', try, 'reason', ARGV[4])
redis.call('EXPIRE', try, ARGV[6])
redis.call('ZREM', '{LEASED_KEY}', id)
redis.call('ZADD', '{RETRY_KEY}', ARGV[3], id)
redis.call('DEL', '{CLAIM_PREFIX}' .. id)
if ARGV[7] ~= '' then
  redis.call('SET', ARGV[7], id, 'NX', 'EX', ARGV[8])  -- until it is fetched, repeats coalesce into it
end
return 1
"""

# ARGV: owner, id, now, retention, reason, attempts. The record stays (for a requeue) until its TTL.
_FAIL = (
    FAIL_FUNCTION
    + f"""
local id = ARGV[2]
if redis.call('GET', '{CLAIM_PREFIX}' .. id) ~= ARGV[1] then
  return 0
end
local fields = {{'reason', ARGV[5], 'attempts', ARGV[6]}}
fail(id, ARGV[3], ARGV[4], record_fields(fields, redis.call('GET', '{RECORD_PREFIX}' .. id)))
return 1
"""
)

# ARGV: id. A failed notification goes round again, with a fresh retry horizon, if its record lives.
REQUEUE_FAILED = f"""
local id = ARGV[1]
if redis.call('EXISTS', '{FAILED_PREFIX}' .. id) == 0 then
  return 'unknown'
end
local raw = redis.call('GET', '{RECORD_PREFIX}' .. id)
if not raw then
  return 'expired'
end
redis.call('DEL', '{FAILED_PREFIX}' .. id, '{TRY_PREFIX}' .. id)
redis.call('ZREM', '{FAILED_KEY}', id)
redis.call('ZADD', '{PENDING_KEY}', cjson.decode(raw).received_ms, id)
redis.call('RPUSH', '{INBOX_KEY}', id)
return 'requeued'
"""


@dataclass(frozen=True)
class Claimed:
    """A notification this job holds: its record and the fetch attempts made so far."""

    record: Record
    attempts: int
    since: float | None  # when its first attempt failed


@dataclass(frozen=True)
class Claims:
    held: list[Claimed]
    ended: dict[str, str]  # id -> why it is now a failed notification (record expired or unreadable)


class Ledger:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        claim_seconds = settings.worker_heartbeat_ttl_seconds
        self._claim_ms = int(claim_seconds * 1000)
        self._lease_seconds = claim_seconds + LEASE_MARGIN_SECONDS
        self._retention = settings.dead_letter_ttl_seconds
        self._try_ttl = settings.token_ttl_seconds
        self._window = settings.coalesce_window_seconds
        self._claim = redis.register_script(_CLAIM)
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._retry = redis.register_script(_RETRY)
        self._fail = redis.register_script(_FAIL)

    async def claim(self, owner: str, ids: list[str], now: float) -> Claims:
        """Claim ``ids``, which a job was given with their leases (by an older version's pump)."""
        return await self._claims(owner, await self._claim(args=[*self._claim_args(owner, now), *ids]), now)

    async def take(self, owner: str, room: int, now: float, wait: float = 0.0) -> tuple[Claims, float]:
        """Up to ``room`` notifications that are waiting — due retries, lapsed leases, new arrivals —
        leased and claimed for ``owner``; and when the next retry or lease comes due (inf: none).

        With ``wait``, first wait up to that many seconds for an arrival (moving it to `cp:taking`):
        the take is sent behind the blocking BLMOVE in one pipeline, so Redis runs it the moment
        the arrival lands and one reply brings both, rather than waking the worker twice. Its
        ``now`` is then up to ``wait`` old: a lease that much shorter, a retry that much later."""
        args: list[EncodableT] = [*self._claim_args(owner, now), room]
        reply: Any
        if wait > 0:
            async with self._redis.pipeline(transaction=False) as pipe:
                # Redis takes a fractional timeout (0 would block for ever); redis-py's stubs say int.
                pipe.blmove(INBOX_KEY, TAKING_KEY, max(wait, 0.01), "LEFT", "LEFT")  # type: ignore[arg-type]
                # Sent as a plain command: a Script in a pipeline costs a SCRIPT EXISTS round trip first.
                pipe.execute_command("EVALSHA", self._take.sha, 0, *args)
                waited, reply = await pipe.execute(raise_on_error=False)
            if isinstance(waited, Exception):  # e.g. OOM: the session pauses rather than ask again at once
                raise waited
            if isinstance(reply, NoScriptError):  # Redis restarted without it: load it and take now
                reply = await self._take(args=args)
            elif isinstance(reply, Exception):
                raise reply
        else:
            reply = await self._take(args=args)
        due = reply.pop()
        next_due = float(due) if due else float("inf")
        return await self._claims(owner, reply, now), next_due

    def _claim_args(self, owner: str, now: float) -> list[EncodableT]:
        return [owner, self._claim_ms, now + self._lease_seconds, now, self._retention]

    async def _claims(self, owner: str, reply: list[Any], now: float) -> Claims:
        held, ended = [], {}
        for n in range(0, len(reply), 5):
            status, ident, raw, attempts, since = reply[n : n + 5]
            if int(status) != 1:
                ended[text(ident)] = text(raw)
                continue
            try:
                record = Record.from_json(raw)
            except (TypeError, ValueError, KeyError) as exc:  # e.g. written by a newer web tier
                reason = f"unreadable record: {type(exc).__name__}"
                await self.fail(owner, text(ident), reason, 0, now)
                ended[text(ident)] = reason
                continue
            held.append(Claimed(record, int(attempts), float(since) if since else None))
        return Claims(held, ended)

    async def renew(self, owner: str, ids: list[str], now: float) -> int:
        if not ids:
            return 0
        return int(await self._renew(args=[owner, self._claim_ms, now + self._lease_seconds, *ids]))

    async def keep(self, owner: str, ids: list[str]) -> None:
        """`renew`, for the loops that keep claims alive: Redis failing is logged, and the next round
        tries again (the claims last four rounds)."""
        try:
            await self.renew(owner, ids, time.time())
        except RedisError as exc:
            log.warning("notification.claims_not_renewed", error=type(exc).__name__, count=len(ids))

    async def release(self, owner: str, ids: list[str], due: float) -> int:
        if not ids:
            return 0
        return int(await self._release(args=[owner, due, *ids]))

    async def retry(self, owner: str, record: Record, due: float, reason: str, now: float) -> bool:
        coalesce = record.dedup_key if record.dedup_key.startswith(COALESCE_PREFIX) else ""
        args: list[EncodableT] = [
            owner,
            record.id,
            due,
            reason[:500],
            now,
            self._try_ttl,
            coalesce,
            self._window,
        ]
        return bool(await self._retry(args=args))

    async def fail(self, owner: str, ident: str, reason: str, attempts: int, now: float) -> bool:
        """A failed notification, keeping what its record says (and the record, for a requeue)."""
        return bool(await self._fail(args=[owner, ident, now, self._retention, reason[:500], attempts]))
