"""The durable inbox in Redis: what the web tier writes before it says 200, and what the workers take from.

Per accepted notification the ingest script does, atomically:

* ``SET <dedup key> <id> NX EX <window>`` — the duplicate check; a redelivery stops here;
* ``SET cp:n:<id> <record> EX <TOKEN_TTL>`` — the record, with the token encrypted (tokens.py);
* ``RPUSH cp:inbox <id>`` — the hand-off to the workers, whose sessions take ids as they arrive;
* ``ZADD cp:pending <received ms> <id>`` — what `status` counts until a worker has processed it.

The web tier stores a whole group of concurrent postbacks with one script call (group commit, see
committer.py), which keeps Redis work off the ack path's CPU; no RQ job is built per notification
(a worker's job takes many, see workers/session.py). The script names its fixed keys itself instead
of taking them as KEYS: fewer arguments to encode per postback, and this deployment is a single
Redis, never a cluster.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import orjson
from redis import Redis

from concur_postback.concur.ess import ESS_REDELIVERY_SECONDS, EssEvent
from concur_postback.concur.notification import Kind, Postback
from concur_postback.config import Settings
from concur_postback.connections import text
from concur_postback.keys import (
    COALESCE_PREFIX,
    ESS_SEEN_PREFIX,
    INBOX_KEY,
    PENDING_KEY,
    RECORD_PREFIX,
    SEEN_PREFIX,
)
from concur_postback.tokens import TokenVault

# ARGV: record TTL, exact-dedup TTL, coalescing window, ESS dedup TTL, then three per notification:
# dedup key, id, record. The id starts with the received time in hex milliseconds (see new_id), the
# pending score. Returns two per notification: 1 and its id if stored, 0 and the first delivery's id
# if a duplicate.
INGEST_SCRIPT = f"""
local ttl, exact_ttl, window, ess_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out = {{}}
for i = 5, #ARGV, 3 do
  local key, id = ARGV[i], ARGV[i + 1]
  local keep = window
  if string.sub(key, 1, {len(ESS_SEEN_PREFIX)}) == '{ESS_SEEN_PREFIX}' then
    keep = ess_ttl
  elseif string.sub(key, 1, {len(SEEN_PREFIX)}) == '{SEEN_PREFIX}' then
    keep = exact_ttl
  end
  if redis.call('SET', key, id, 'NX', 'EX', keep) then
    redis.call('SET', '{RECORD_PREFIX}' .. id, ARGV[i + 2], 'EX', ttl)
    redis.call('RPUSH', '{INBOX_KEY}', id)
    redis.call('ZADD', '{PENDING_KEY}', tonumber(string.sub(id, 1, 12), 16), id)
    out[#out + 1] = 1
    out[#out + 1] = id
  else
    out[#out + 1] = 0
    out[#out + 1] = redis.call('GET', key) or ''
  end
end
return out
"""
INGEST_SCRIPT_SHA = hashlib.sha1(INGEST_SCRIPT.encode()).hexdigest()  # noqa: S324 - Redis names scripts by SHA-1


POSTBACK, ESS = "postback", "ess"  # a record's source


@dataclass(frozen=True)
class Record:
    """A stored notification: a postback's, or an ESS event's (``source`` "ess"). ``token`` is the
    AES-GCM ciphertext of a postback's token (see tokens.py), never the token itself; ``payload`` the
    sealed ESS event, which names people (logins, user ids) and so is never stored in clear."""

    id: str
    kind: Kind
    token: str
    subject: str
    dedup_key: str
    received_ms: int
    request_id: str | None = None
    userid_type: str | None = None
    userid_value: str | None = None
    object_uri: str | None = None
    trip_id: str | None = None
    event_type: str | None = None
    event_time: str | None = None
    context: str | None = None
    source: str = POSTBACK
    topic: str | None = None
    payload: str | None = None

    def to_json(self) -> bytes:
        encoded = orjson.dumps(self)  # orjson serialises dataclasses natively (and fast)
        if encoded.endswith(_POSTBACK_TAIL):  # a postback's, without the ESS fields: older workers read it
            return encoded[: -len(_POSTBACK_TAIL)] + b"}"
        return encoded

    @classmethod
    def from_json(cls, data: bytes | str) -> Record:
        """A stored record. One with a field this version does not know (a later version's) raises
        TypeError: the ledger makes it a failed notification, requeued once the workers are upgraded,
        rather than processing it by half."""
        stored = orjson.loads(data)
        stored["kind"] = Kind(stored["kind"])
        return cls(**stored)


# ESS redelivers an event it saw no 200 for during 72 h: its id is remembered a day longer, at least.
ESS_DEDUP_SECONDS = ESS_REDELIVERY_SECONDS + 24 * 3600

# The ESS fields come last and are always these for a postback, so the ack path cuts them from the
# encoded JSON with a slice rather than building a dict of every other field first.
_POSTBACK_TAIL = b',"source":"postback","topic":null,"payload":null}'

# One notification's arguments to the ingest script: dedup key, id, record.
IngestArgs = tuple[str, str, bytes]


def new_id(now_ms: int) -> str:
    """Time-ordered unique id, also valid as an RQ job id ([A-Za-z0-9_-]). Not a secret: ids are logged.

    The first 12 hex digits are the received time in milliseconds (the ingest script relies on it)."""
    return f"{now_ms:012x}{random.getrandbits(64):016x}"


def dedup_key(postback: Postback, subject: str) -> tuple[str, bool]:
    """Return (key, is_exact) identifying "the same notification" for redeliveries.

    An itinerary notification names its change: kind, subject, trip, event type and the event's time.
    A redelivery carries the same five, so the key is kept for DEDUP_TTL and a repeat is dropped.
    FOP and Profile notifications (and itineraries without EventDateTime) name no change, only "this
    traveller's data changed"; those are *coalesced*: repeats within COALESCE_WINDOW are dropped,
    because one fetch will read the latest state anyway. A worker clears the key when it starts to
    fetch, so a change that lands after the fetch began is queued again rather than lost.
    """
    parts = [postback.kind.value, subject]
    note = postback.itinerary
    if note is not None:
        parts += [note.trip_id, note.event_type.value]
        if note.event_time is not None:
            parts.append(note.event_time)
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]
    exact = note is not None and note.event_time is not None
    return (SEEN_PREFIX if exact else COALESCE_PREFIX) + digest, exact


def subject_of(postback: Postback, vault: TokenVault) -> str:
    """Who the notification is about: the named user for company notifications, else the token's owner."""
    if postback.userid_type and postback.userid_value:
        return f"{postback.userid_type}:{postback.userid_value}"
    return vault.subject_of(postback.token)


def build_record(postback: Postback, vault: TokenVault, request_id: str | None, now: float) -> Record:
    now_ms = int(now * 1000)
    subject = subject_of(postback, vault)
    key, _ = dedup_key(postback, subject)
    note = postback.itinerary
    ident = new_id(now_ms)
    return Record(
        id=ident,
        kind=postback.kind,
        token=vault.encrypt(postback.token, bound_to=ident),
        subject=subject,
        dedup_key=key,
        received_ms=now_ms,
        request_id=request_id,
        userid_type=postback.userid_type,
        userid_value=postback.userid_value,
        object_uri=note.object_uri if note else None,
        trip_id=note.trip_id if note else None,
        event_type=note.event_type.value if note else None,
        event_time=note.event_time if note else None,
        context=note.context if note else None,
    )


def build_ess_record(
    event: EssEvent, vault: TokenVault, request_id: str | None, now: float, kind: Kind = Kind.EVENT
) -> Record:
    """An ESS event as the inbox keeps it: deduplicated on ESS's own event id, sealed. ``kind`` FOP:
    the second record of a travel profile event, whose worker fetches the form of payment."""
    now_ms = int(now * 1000)
    ident = new_id(now_ms)
    named = event.id if kind is Kind.EVENT else f"{event.id}\x1f{kind.value}"
    digest = hashlib.sha256(named.encode()).hexdigest()[:40]
    person = event.user_id or event.company_id or event.id
    return Record(
        id=ident,
        kind=kind,
        token="",
        subject=vault.pseudonym("ess:" + person),
        dedup_key=ESS_SEEN_PREFIX + digest,
        received_ms=now_ms,
        request_id=request_id,
        event_type=event.event_type,
        source=ESS,
        topic=event.topic,
        payload=vault.seal(event.to_json(), bound_to=ident),
    )


def ingest_args(record: Record) -> IngestArgs:
    return (record.dedup_key, record.id, record.to_json())


def ingest_argv(batch: list[IngestArgs], settings: Settings) -> list[str | int | bytes]:
    """The script's whole ARGV for a batch."""
    ttls = (
        settings.token_ttl_seconds,
        settings.dedup_ttl_seconds,
        settings.coalesce_window_seconds,
        max(settings.dedup_ttl_seconds, ESS_DEDUP_SECONDS),
    )
    return [*ttls, *(arg for args in batch for arg in args)]


@dataclass(frozen=True)
class IngestResult:
    accepted: bool  # False: a duplicate of notification ``id``
    id: str


def ingest_results(replies: list[object]) -> list[IngestResult]:
    """The script's reply: a flag and an id per notification."""
    pairs = zip(replies[::2], replies[1::2], strict=True)
    return [IngestResult(flag == 1, text(ident)) for flag, ident in pairs]


def store(redis: Redis, records: list[Record], settings: Settings) -> list[IngestResult]:
    """Store ``records`` with one call of the ingest script, synchronously: backfill and the tests.
    The web tier's committer sends the same script, asynchronously and by its SHA."""
    if not records:
        return []
    argv = ingest_argv([ingest_args(record) for record in records], settings)
    return ingest_results(redis.eval(INGEST_SCRIPT, 0, *argv))
