"""`concur-postback rekey`: re-seal what Redis stores with the key that seals now.

Run it after putting a new key at the head of TOKEN_ENCRYPTION_KEYS everywhere; once it reports
nothing left under another key, the old key can leave the ring. Each value is replaced only if it
is still what was read (a worker may retire or rewrite it meanwhile), and keeps its expiry.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from redis import Redis

from concur_postback.connections import text
from concur_postback.errors import TokenDecryptionError
from concur_postback.events import open_event, seal_event
from concur_postback.inbox import Record
from concur_postback.keys import EVENT_PREFIX, RECORD_PREFIX
from concur_postback.tokens import TokenVault

# KEYS[1]: the value's key. ARGV: what was read, what replaces it. 1 if replaced.
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""


@dataclass(frozen=True)
class Rekeyed:
    resealed: int = 0
    current: int = 0  # already under the key that seals now
    unreadable: int = 0  # sealed with a key the ring does not hold: it needs that key back
    changed: int = 0  # rewritten or gone while this ran: sealed with the current key by its writer


def rekey(redis: Redis, vault: TokenVault) -> dict[str, Rekeyed]:
    """Re-seal every stored notification's token and every kept event; counts by what was stored."""
    swap = redis.register_script(_SWAP)

    def records(key: str, raw: bytes) -> str | None:
        record = Record.from_json(raw)
        if all(vault.is_current(sealed) for sealed in (record.token, record.payload) if sealed):
            return None

        def reseal(sealed: str) -> str:  # a postback's token, an ESS event's payload
            return vault.seal(vault.open(sealed, record.id), record.id) if sealed else sealed

        resealed = replace(record, token=reseal(record.token), payload=reseal(record.payload or "") or None)
        return resealed.to_json().decode()

    def events(key: str, raw: bytes) -> str | None:
        if vault.is_current(text(raw)):
            return None
        notification_id = key.removeprefix(EVENT_PREFIX)
        return seal_event(vault, notification_id, open_event(vault, notification_id, raw))

    return {
        "notifications": _each(redis, RECORD_PREFIX, records, swap),
        "events": _each(redis, EVENT_PREFIX, events, swap),
    }


def _each(
    redis: Redis, prefix: str, reseal: Callable[[str, bytes], str | None], swap: Callable[..., object]
) -> Rekeyed:
    counts: Counter[str] = Counter()
    for raw_key in redis.scan_iter(match=prefix + "*", count=1000):
        key = text(raw_key)
        raw = redis.get(key)
        if not isinstance(raw, bytes):
            counts["changed"] += 1
            continue
        try:
            sealed = reseal(key, raw)
        except (TokenDecryptionError, ValueError, TypeError, KeyError):
            counts["unreadable"] += 1
            continue
        if sealed is None:
            counts["current"] += 1
        else:
            counts["resealed" if swap(keys=[key], args=[raw, sealed]) else "changed"] += 1
    return Rekeyed(**counts)
