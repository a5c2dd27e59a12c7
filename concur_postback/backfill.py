"""`concur-postback backfill`: queue a notification for every profile and trip changed since a date.

Walks Concur's profile summaries and trip summaries (concur/summaries.py) with a company administrator's
token and stores, for each changed profile or trip, the notification Concur would have posted for it —
a company notification (`userid_type=login`, `userid_value=<login>`), for trips with the trip's URI and
id, event UPDATE and the summary's last-modified time — through the web tier's own ingest script
(`build_record` + `ingest_args` + `INGEST_SCRIPT`). So it is deduplicated exactly like a postback and the
workers process it like one: a trip change already stored (by a postback or an earlier backfill) is a
duplicate for DEDUP_TTL; a profile is coalesced with a waiting notification for the same traveller
(and, once processed, queued again by the next backfill, as a postback would be).

Pages are fetched one after the other (Concur asks not to multi-thread page requests).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from redis import Redis

from concur_postback.backoff import retry_fetch
from concur_postback.budget import SharedBudget
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.hosts import HostPolicy
from concur_postback.concur.notification import (
    EventType,
    Kind,
    OAuthToken,
    Postback,
    checked_token,
    new_itinerary,
    new_postback,
)
from concur_postback.concur.summaries import (
    PROFILE_PAGE_MAX,
    PROFILE_SUMMARY_PATH,
    TRIP_SUMMARY_PATH,
    Paging,
    SummaryPage,
    parse_profile_summaries,
    parse_trip_summaries,
)
from concur_postback.config import Settings
from concur_postback.connections import async_client, connect
from concur_postback.errors import InvalidPostback
from concur_postback.inbox import build_record, store
from concur_postback.tokens import TokenVault, vault_from_settings

log = structlog.get_logger("concur_postback.backfill")

MAX_PAGES = 10_000  # a guard against a Concur that keeps saying "more"
KINDS = (Kind.PROFILE, Kind.ITINERARY)


@dataclass
class Counts:
    found: int = 0
    queued: int = 0
    duplicates: int = 0
    skipped: int = 0  # summaries that cannot become a notification (no login, a URI off Concur's hosts)


@dataclass
class BackfillResult:
    counts: dict[Kind, Counts] = field(default_factory=dict)

    def total(self) -> Counts:
        total = Counts()
        for counts in self.counts.values():
            total.found += counts.found
            total.queued += counts.queued
            total.duplicates += counts.duplicates
            total.skipped += counts.skipped
        return total

    def summary(self) -> str:
        parts = []
        for kind, c in self.counts.items():
            line = f"{kind.value}: found {c.found}, queued {c.queued}, duplicates {c.duplicates}"
            parts.append(line + (f", skipped {c.skipped}" if c.skipped else ""))
        t = self.total()
        return f"found {t.found} / queued {t.queued} / duplicates {t.duplicates}  ({'; '.join(parts)})"


class Progress(Protocol):
    """What the command line shows (progress bars)."""

    def start(self, kind: Kind, total: int | None) -> None:
        """A kind's first page arrived; ``total`` items are expected (None: unknown)."""

    def advance(self, kind: Kind, count: int) -> None:
        """``count`` more summaries were handled."""

    def finish(self, kind: Kind) -> None:
        """The kind is done."""


async def backfill(
    settings: Settings,
    redis: Redis,
    token: OAuthToken,
    since: str,
    *,
    kinds: tuple[Kind, ...] = KINDS,
    progress: Progress | None = None,
    client: ConcurClient | None = None,
    items_per_page: int = PROFILE_PAGE_MAX,
) -> BackfillResult:
    """Walk the summaries of ``kinds`` modified since ``since`` (ISO date-time) and store notifications."""
    show = progress or _Quiet()
    vault = vault_from_settings(settings)
    request_id = "backfill-" + secrets.token_hex(6)
    own = client is None
    shared = (
        async_client(settings.redis_url or "", connect_timeout=settings.redis_timeout_seconds)
        if own
        else None
    )
    # Backfill's requests count toward the deployment's budget, like the workers' fetches.
    concur = client or ConcurClient(
        settings, budget=SharedBudget(shared, settings.concur_max_rps) if shared else None
    )
    result = BackfillResult()
    try:
        for kind in kinds:
            counts = result.counts[kind] = Counts()
            store = _InboxWriter(settings, redis, vault, token, request_id, counts)
            walker = (
                _ProfileWalk(token)
                if kind is Kind.PROFILE
                else _TripWalk(settings, token, HostPolicy.from_settings(settings))
            )
            await _walk(
                settings, concur, walker, since=since, per_page=items_per_page, store=store, show=show
            )
            show.finish(kind)
            log.info("backfill.done", kind=kind.value, request_id=request_id, found=counts.found,
                     queued=counts.queued, duplicates=counts.duplicates, skipped=counts.skipped)  # fmt: skip
    finally:
        if own:
            await concur.aclose()
        if shared is not None:
            await shared.aclose()
    return result


class _Walk(Protocol):
    """What differs between walking profile summaries and trip summaries."""

    @property
    def kind(self) -> Kind: ...

    @property
    def path(self) -> str: ...

    def params(self, since: str, per_page: int) -> dict[str, str]: ...

    def read(self, body: bytes) -> SummaryPage[Any]: ...

    def postbacks(self, items: list[Any]) -> list[Postback]: ...


async def _walk(
    settings: Settings,
    concur: ConcurClient,
    walker: _Walk,
    *,
    since: str,
    per_page: int,
    store: _InboxWriter,
    show: Progress,
) -> None:
    """Page through the summaries one page after another (Concur asks not to multi-thread them)."""
    url = settings.concur_base_url + walker.path
    params = walker.params(since, per_page)
    for page in range(1, MAX_PAGES + 1):
        summaries = walker.read(await _get(settings, concur, url, store.token, {**params, "Page": str(page)}))
        _started(show, walker.kind, page, summaries.paging)
        postbacks = walker.postbacks(summaries.items)
        store.skip(len(summaries.items) - len(postbacks))
        store.put(postbacks)
        show.advance(walker.kind, len(summaries.items))
        if not summaries.has_more(page):
            return


@dataclass(frozen=True)
class _ProfileWalk:
    token: OAuthToken
    kind: Kind = Kind.PROFILE
    path: str = PROFILE_SUMMARY_PATH

    def params(self, since: str, per_page: int) -> dict[str, str]:
        return {"LastModifiedDate": since, "ItemsPerPage": str(min(per_page, PROFILE_PAGE_MAX))}

    def read(self, body: bytes) -> SummaryPage[Any]:
        return parse_profile_summaries(body)

    def postbacks(self, items: list[Any]) -> list[Postback]:
        postbacks = []
        for summary in items:
            try:
                postbacks.append(new_postback(Kind.PROFILE, self.token, "login", summary.login_id))
            except InvalidPostback as exc:
                log.warning("backfill.skipped", kind=Kind.PROFILE, reason=exc.code)
        return postbacks


@dataclass(frozen=True)
class _TripWalk:
    settings: Settings
    token: OAuthToken
    policy: HostPolicy
    kind: Kind = Kind.ITINERARY
    path: str = TRIP_SUMMARY_PATH

    def params(self, since: str, per_page: int) -> dict[str, str]:
        return {
            "lastModifiedDate": since,
            "userid_type": "login",
            "userid_value": "ALL",
            "includeMetadata": "true",
            "ItemsPerPage": str(per_page),
        }

    def read(self, body: bytes) -> SummaryPage[Any]:
        return parse_trip_summaries(body)

    def postbacks(self, items: list[Any]) -> list[Postback]:
        base = self.settings.concur_base_url
        postbacks = []
        for trip in items:
            uri = trip.uri or f"{base}/api/travel/trip/v1.1/{trip.trip_id}"
            try:
                note = new_itinerary(
                    uri, trip.trip_id, EventType.UPDATE, trip.last_modified, policy=self.policy
                )
                postbacks.append(new_postback(Kind.ITINERARY, self.token, "login", trip.login_id, note))
            except InvalidPostback as exc:
                log.warning(
                    "backfill.skipped", kind=Kind.ITINERARY, trip_id=trip.trip_id[:128], reason=exc.code
                )
        return postbacks


class _Quiet:
    def start(self, kind: Kind, total: int | None) -> None:
        pass

    def advance(self, kind: Kind, count: int) -> None:
        pass

    def finish(self, kind: Kind) -> None:
        pass


def run_backfill(
    settings: Settings,
    token: str,
    since: str,
    *,
    kinds: tuple[Kind, ...] = KINDS,
    progress: Progress | None = None,
    items_per_page: int = PROFILE_PAGE_MAX,
) -> BackfillResult:
    """The command: connect to Redis, walk the summaries, close everything."""
    checked = checked_token(token)  # a malformed token is refused before Redis and Concur
    redis = connect(settings)
    try:
        redis.ping()  # what the walk finds goes to Redis: one that cannot take it is refused before Concur
        walk = backfill(
            settings,
            redis,
            checked,
            since,
            kinds=kinds,
            progress=progress,
            items_per_page=items_per_page,
        )
        return asyncio.run(walk)
    finally:
        redis.close()


async def _get(
    settings: Settings, concur: ConcurClient, url: str, token: OAuthToken, params: dict[str, str]
) -> bytes:
    """GET one page; 429, 5xx and network errors are retried in place (backoff, Retry-After)."""

    def on_retry(attempt: int, delay: float, exc: BaseException | None) -> None:
        log.info("backfill.retry", attempt=attempt, wait_s=round(delay, 2), reason=str(exc))

    return await retry_fetch(lambda: concur.get(url, token, params), settings, on_retry)


def _started(show: Progress, kind: Kind, page: int, paging: Paging | None) -> None:
    if page == 1:
        show.start(kind, paging.total_items if paging and paging.total_items is not None else None)


@dataclass
class _InboxWriter:
    settings: Settings
    redis: Redis
    vault: TokenVault
    token: OAuthToken
    request_id: str
    counts: Counts

    def skip(self, count: int) -> None:
        self.counts.found += count
        self.counts.skipped += count

    def put(self, postbacks: list[Postback]) -> None:
        """Store one page with one call of the web tier's ingest script."""
        if not postbacks:
            return
        now = time.time()
        records = [build_record(postback, self.vault, self.request_id, now) for postback in postbacks]
        stored = sum(result.accepted for result in store(self.redis, records, self.settings))
        self.counts.found += len(postbacks)
        self.counts.queued += stored
        self.counts.duplicates += len(postbacks) - stored


def parse_since(value: str) -> str:
    """A date or date-time as Concur's LastModifiedDate wants it: `YYYY-MM-DDThh:mm:ss`."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or date-time: {value!r}") from None
    if parsed.tzinfo is not None:  # Concur's modification times are UTC
        parsed = parsed.astimezone(UTC)
    return parsed.replace(tzinfo=None, microsecond=0).isoformat(timespec="seconds")
