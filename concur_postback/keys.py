"""Every Redis key this project writes, in one place: its type, how long it lives, and who writes it.

A notification is, at every moment until it is finished, findable in exactly one of these places:
the inbox (or `taking`, where a session waiting for arrivals moves one for the next take), `leased`
(a job has it, or had it until its worker died), or `retry` (waiting for another attempt); one
script moves it between them. So nothing accepted can be lost between them: a job that
dies leaves its notifications in `leased`, whose scores are lease ends, and any job takes a lapsed
lease back like a due retry. It is finished when it is handed over, once every sink has been tried
(its record deleted, its event stored only for the sinks that failed), or becomes a failed
notification.

Scores in `retry`, `leased`, `sink-retry:*`, `failed` and `dead` are Unix times in seconds; in `pending`
the received time in milliseconds (the ingest script writes it from the notification id).
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "cp:"

# --- written by the web tier (ingest script, inbox.py) and backfill -----------------------------------
RECORD_PREFIX = PREFIX + "n:"
SEEN_PREFIX = PREFIX + "seen:"
ESS_SEEN_PREFIX = SEEN_PREFIX + "ess:"
COALESCE_PREFIX = PREFIX + "coalesce:"
INBOX_KEY = PREFIX + "inbox"
PENDING_KEY = PREFIX + "pending"

# --- a notification in the workers' hands (workers/ledger.py) -------------------------------------------
TAKING_KEY = PREFIX + "taking"
LEASED_KEY = PREFIX + "leased"
RETRY_KEY = PREFIX + "retry"
CLAIM_PREFIX = PREFIX + "claim:"
TRY_PREFIX = PREFIX + "try:"
FAILED_KEY = PREFIX + "failed"
FAILED_PREFIX = PREFIX + "failed:"

# --- delivery to sinks (workers/deliveries.py) ----------------------------------------------------------
EVENT_PREFIX = PREFIX + "ev:"
OWED_PREFIX = PREFIX + "owed:"
ATTEMPTS_PREFIX = PREFIX + "attempts:"
SINK_RETRY_PREFIX = PREFIX + "sink-retry:"
DEAD_KEY = PREFIX + "dead"
DEAD_PREFIX = PREFIX + "dead:"
SINK_NAMES_KEY = PREFIX + "sinks"
SINK_LIVE_PREFIX = PREFIX + "sink-live:"

# --- company tokens (companies.py): the company commands and the workers ---------------------------------
COMPANIES_KEY = PREFIX + "companies"
COMPANY_PREFIX = PREFIX + "company:"
COMPANY_LOCK_PREFIX = PREFIX + "company-lock:"
REAUTHORIZE_KEY = PREFIX + "companies:reauthorize"

# --- shared by the workers --------------------------------------------------------------------------------
BUDGET_PREFIX = PREFIX + "budget:"
SWEEP_LOCK_KEY = PREFIX + "sweep:lock"
SWEEP_CURSOR_KEY = PREFIX + "sweep:cursor"


@dataclass(frozen=True)
class KeySpec:
    """One key (or family of keys) as README's schema table shows it."""

    key: str
    type: str
    ttl: str
    holds: str


@dataclass(frozen=True)
class Section:
    """The keys one part of the service writes (and only it)."""

    writer: str
    keys: tuple[KeySpec, ...]


# <id>: a notification id; <sink>: a sink id; <digest>: of what makes a notification the same;
# <host>: a Concur host. RQ's own keys (rq:*) are RQ's.
SCHEMA = (
    Section(
        "web tier, backfill (inbox.py)",
        (
            KeySpec(
                RECORD_PREFIX + "<id>", "string", "EX TOKEN_TTL_SECONDS", "the notification (token encrypted)"
            ),
            KeySpec(
                SEEN_PREFIX + "<digest>",
                "string",
                "EX DEDUP_TTL_SECONDS",
                "an itinerary change's dedup key -> first id",
            ),
            KeySpec(
                ESS_SEEN_PREFIX + "<digest>",
                "string",
                "EX DEDUP_TTL_SECONDS, at least 96 h",
                "an ESS event id's dedup key -> first id",
            ),
            KeySpec(
                COALESCE_PREFIX + "<digest>",
                "string",
                "EX COALESCE_WINDOW_SECONDS",
                "FOP/profile coalescing -> id",
            ),
            KeySpec(INBOX_KEY, "list of ids", "none", "accepted, waiting for a worker"),
            KeySpec(
                PENDING_KEY,
                "zset id -> received ms",
                "none",
                "accepted and not yet finished (status, expiry)",
            ),
        ),
    ),
    Section(
        "workers (workers/ledger.py)",
        (
            KeySpec(TAKING_KEY, "list of ids", "none", "arrivals that woke a session, for the next take"),
            KeySpec(LEASED_KEY, "zset id -> lease end", "none", "in a job; taken again when lapsed"),
            KeySpec(RETRY_KEY, "zset id -> due", "none", "waiting for another fetch attempt"),
            KeySpec(
                CLAIM_PREFIX + "<id>",
                "string",
                "PX WORKER_HEARTBEAT_TTL_SECONDS",
                "the worker fetching it now",
            ),
            KeySpec(
                TRY_PREFIX + "<id>",
                "hash attempts, since, reason",
                "EX TOKEN_TTL_SECONDS",
                "the fetch attempts so far",
            ),
            KeySpec(FAILED_KEY, "zset id -> failed at", "none", "failed notifications (`failed list`)"),
            KeySpec(FAILED_PREFIX + "<id>", "hash", "EX DEAD_LETTER_TTL_SECONDS", "why it failed"),
        ),
    ),
    Section(
        "workers (workers/deliveries.py)",
        (
            KeySpec(
                EVENT_PREFIX + "<id>",
                "string",
                "EX SINK_RETRY_HORIZON_SECONDS, then DEAD_LETTER_TTL_SECONDS",
                "an event some sink still owes",
            ),
            KeySpec(
                OWED_PREFIX + "<id>",
                "hash sink id -> start",
                "the event's",
                "the sinks that still owe the event, and since when",
            ),
            KeySpec(
                ATTEMPTS_PREFIX + "<id>", "hash sink id -> count", "the event's", "delivery attempts so far"
            ),
            KeySpec(
                SINK_RETRY_PREFIX + "<sink>",
                "zset id -> due",
                "none",
                "a sink's deliveries to retry (or claimed, until the claim ends)",
            ),
            KeySpec(DEAD_KEY, "zset <id>.<sink> -> failed at", "none", "dead letters (`failed list`)"),
            KeySpec(DEAD_PREFIX + "<id>.<sink>", "hash", "EX DEAD_LETTER_TTL_SECONDS", "one dead letter"),
            KeySpec(
                SINK_NAMES_KEY,
                "hash sink id -> name",
                "none",
                "every sink ever used, by its name without credentials",
            ),
            KeySpec(SINK_LIVE_PREFIX + "<sink>", "string", "EX 30 s", "some live worker has this sink"),
        ),
    ),
    Section(
        "workers (budget.py)",
        (
            KeySpec(
                BUDGET_PREFIX + "<host>",
                "hash tat, pause",
                "PX 1 h idle",
                "the request budget of one Concur host",
            ),
        ),
    ),
    Section(
        "workers (workers/sweeper.py)",
        (
            KeySpec(SWEEP_LOCK_KEY, "string", "EX one sweep interval", "the worker sweeping expired state"),
            KeySpec(SWEEP_CURSOR_KEY, "string", "EX 1 h", "where the sweep's walk through pending stopped"),
        ),
    ),
    Section(
        "company commands, workers (companies.py)",
        (
            KeySpec(COMPANIES_KEY, "set of company ids", "none", "the connected companies (`company list`)"),
            KeySpec(REAUTHORIZE_KEY, "set of company ids", "none", "those Concur refused a refresh"),
            KeySpec(
                COMPANY_PREFIX + "<company>",
                "hash",
                "none",
                "sealed refresh and access tokens, geolocation, state",
            ),
            KeySpec(
                COMPANY_LOCK_PREFIX + "<company>", "string", "PX 30 s", "the worker refreshing its token"
            ),
        ),
    ),
)


def schema_table() -> str:
    """README.md's schema table (tests/test_keys.py holds the README to it)."""
    rows = [
        f"| `{spec.key}` | {spec.type} | {spec.ttl} | {spec.holds} | {section.writer} |"
        for section in SCHEMA
        for spec in section.keys
    ]
    return "\n".join(["| Key | Type | Expiry | Holds | Written by |", "|---|---|---|---|---|", *rows])


def sink_retry_key(sink_id: str) -> str:
    return SINK_RETRY_PREFIX + sink_id
