"""Every Redis key this project writes, in one place: its type, how long it lives, and who writes it.

A notification is, at every moment until it is finished, findable in exactly one of these places:
the inbox (or the pump's `pumping` list), `leased` (a job has it, or had it until its worker died),
or `retry` (waiting for another attempt). So nothing accepted can be lost between them: a job that
dies leaves its notifications in `leased`, whose scores are lease ends, and the pump takes a lapsed
lease back like a due retry. It is finished when it is handed over to the sinks (its event stored,
its record deleted) or becomes a failed notification.

Scores in `retry`, `leased`, `sink-retry:*`, `failed` and `dead` are Unix times in seconds; in `pending`
the received time in milliseconds (the ingest script writes it from the notification id).
"""

from __future__ import annotations

PREFIX = "cp:"

# --- written by the web tier (ingest script, inbox.py) and backfill -----------------------------------
RECORD_PREFIX = PREFIX + "n:"  # string: the notification (token encrypted); EX TOKEN_TTL_SECONDS
SEEN_PREFIX = PREFIX + "seen:"  # string: an itinerary change's dedup key -> first id; EX DEDUP_TTL_SECONDS
COALESCE_PREFIX = PREFIX + "coalesce:"  # string: FOP/profile coalescing -> id; EX COALESCE_WINDOW_SECONDS
INBOX_KEY = PREFIX + "inbox"  # list of ids: accepted, waiting for the pump
PENDING_KEY = PREFIX + "pending"  # zset id -> received ms: accepted and not yet finished (status, expiry)

# --- the pump (workers/pump.py) ------------------------------------------------------------------------
PUMPING_KEY = PREFIX + "pumping"  # list of ids: taken by the pump, not yet in an RQ job
PUMP_LOCK_KEY = PREFIX + "pump:lock"  # string: the pump lease holder; PX 10 s

# --- a notification in the workers' hands (workers/ledger.py) -------------------------------------------
LEASED_KEY = PREFIX + "leased"  # zset id -> lease end: in a job; re-fed by the pump when lapsed
RETRY_KEY = PREFIX + "retry"  # zset id -> due: waiting for another fetch attempt
CLAIM_PREFIX = PREFIX + "claim:"  # string: the worker fetching it now; PX WORKER_HEARTBEAT_TTL_SECONDS
TRY_PREFIX = PREFIX + "try:"  # hash attempts, since, reason: the fetch attempts so far; EX TOKEN_TTL
FAILED_KEY = PREFIX + "failed"  # zset id -> failed at: failed notifications (`failed list`)
FAILED_PREFIX = PREFIX + "failed:"  # hash: why it failed; EX DEAD_LETTER_TTL_SECONDS

# --- delivery to sinks (workers/deliveries.py) ----------------------------------------------------------
EVENT_PREFIX = PREFIX + "ev:"  # string: an event some sink still owes; EX horizon, then dead letter TTL
OWED_PREFIX = PREFIX + "owed:"  # hash sink id -> start of its retry window; same TTL as the event
ATTEMPTS_PREFIX = PREFIX + "attempts:"  # hash sink id -> attempts so far; same TTL as the event
SINK_RETRY_PREFIX = PREFIX + "sink-retry:"  # zset per sink id: notification id -> due (or claim end)
DEAD_KEY = PREFIX + "dead"  # zset "<notification id>.<sink id>" -> failed at: dead letters
DEAD_PREFIX = PREFIX + "dead:"  # hash: one dead letter; EX DEAD_LETTER_TTL_SECONDS
SINK_NAMES_KEY = PREFIX + "sinks"  # hash sink id -> display name (no credentials), every sink ever used
SINK_LIVE_PREFIX = PREFIX + "sink-live:"  # string: some live worker has this sink; EX 30 s

# --- shared by the workers --------------------------------------------------------------------------------
BUDGET_PREFIX = PREFIX + "budget:"  # hash tat, pause: the request budget of one Concur host (budget.py)
SWEEP_LOCK_KEY = PREFIX + "sweep:lock"  # string: the worker sweeping expired state (workers/sweeper.py)
SWEEP_CURSOR_KEY = PREFIX + "sweep:cursor"  # string: where the sweep's walk through pending stopped; EX 1 h


def sink_retry_key(sink_id: str) -> str:
    return SINK_RETRY_PREFIX + sink_id
