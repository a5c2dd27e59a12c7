"""Prometheus metrics: every metric of the project, defined here and nowhere else.

Framework-free (no Starlette, no RQ): the web tier serves them at `GET /metrics`, a worker process with
WORKER_METRICS_PORT set on its own HTTP port. Counters and histograms live in the process that records
them; the queue depths are read from Redis at scrape time (``QueueDepthCollector``), so any one process
that can reach Redis — usually the web tier — exports them for the whole deployment.

With several uvicorn processes (`serve --workers N`) set PROMETHEUS_MULTIPROC_DIR to an empty directory
before start: prometheus-client then keeps each process's values in files there and `/metrics` sums
them, whichever process answers the scrape. Without it, the default registry of the one process.

The ack path records two things per postback (a counter and a histogram); their label children
are looked up once (``postback_counters``), not per request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from concur_postback.concur.notification import POSTBACK_KINDS, Kind
from concur_postback.connections import sync_client
from concur_postback.depths import read_depths

NAMESPACE = "concur_postback"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN_KIND = "unknown"  # a rejected postback whose `type` is missing or invalid

# Postback outcomes, as in the access log's event names (plus too_large, which logs as rejected).
ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"
UNAVAILABLE, TOO_LARGE = "unavailable", "too_large"
POSTBACK_OUTCOMES = (ACCEPTED, DUPLICATE, REJECTED, UNAVAILABLE, TOO_LARGE)
POSTBACK_LABELS = (*(kind.value for kind in POSTBACK_KINDS), UNKNOWN_KIND)
UNAUTHORIZED = "unauthorized"  # an ESS event whose signature no key verifies
ESS_OUTCOMES = (*POSTBACK_OUTCOMES, UNAUTHORIZED)
# Delivery outcomes, per sink and attempt.
DELIVERED, RETRY_SCHEDULED, DEAD_LETTER = "delivered", "retry_scheduled", "dead_letter"
DELIVERY_OUTCOMES = (DELIVERED, RETRY_SCHEDULED, DEAD_LETTER)
# Notification outcomes, one per attempt a job makes: handed over to the sinks, a retry scheduled, failed.
NOTIFICATION_DELIVERED, NOTIFICATION_RETRY, NOTIFICATION_FAILED = "delivered", "retry_scheduled", "failed"
NOTIFICATION_OUTCOMES = (NOTIFICATION_DELIVERED, NOTIFICATION_RETRY, NOTIFICATION_FAILED)
SCRAPE_REDIS_TIMEOUT_SECONDS = 0.5
# What ``exposition`` writes: the classic text format, which every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# --- web tier ---------------------------------------------------------------------------------------
POSTBACKS = Counter(
    "postbacks",
    "Postbacks answered, by notification kind (unknown when `type` is invalid) and outcome.",
    ["kind", "outcome"],
    namespace=NAMESPACE,
)
ESS_EVENTS = Counter(
    "ess_events",
    "ESS events answered, by outcome (unauthorized: no key of the ring verifies the signature).",
    ["outcome"],
    namespace=NAMESPACE,
)
ACK_SECONDS = Histogram(
    "ack_seconds",
    "Time from a postback's arrival to its answer (every answered postback, any status).",
    namespace=NAMESPACE,
    buckets=(0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0, 2.5),
)

# --- workers ----------------------------------------------------------------------------------------
FETCH_SECONDS = Histogram(
    "fetch_seconds",
    "Duration of one HTTP request to Concur (each attempt; the rate-limit wait not included).",
    ["kind"],
    namespace=NAMESPACE,
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
FETCHES = Counter(
    "fetches",
    "HTTP requests to Concur, by kind and outcome: ok, http_<status>, timeout or connection_error.",
    ["kind", "outcome"],
    namespace=NAMESPACE,
)
DELIVERIES = Counter(
    "deliveries",
    "Delivery attempts to a sink, by sink and outcome: delivered, retry_scheduled or dead_letter.",
    ["sink", "outcome"],
    namespace=NAMESPACE,
)
NOTIFICATIONS = Counter(
    "notifications",
    "Attempts at notifications by the workers, by kind and outcome: delivered (handed to the sinks), "
    "retry_scheduled or failed (a failed notification, for `failed list`).",
    ["kind", "outcome"],
    namespace=NAMESPACE,
)


def ess_counters() -> dict[str, Counter]:
    """The ESS counter's children for every outcome, created once (as postback_counters)."""
    return {outcome: ESS_EVENTS.labels(outcome) for outcome in ESS_OUTCOMES}


def postback_counters() -> dict[tuple[str, str], Counter]:
    """The postback counter's children for every (kind, outcome), created once: the ack path only
    looks them up in a dict, and every series exists (at 0) from the start."""
    return {
        (kind, outcome): POSTBACKS.labels(kind, outcome)
        for kind in POSTBACK_LABELS
        for outcome in POSTBACK_OUTCOMES
    }


def record_fetch(kind: str, outcome: str, seconds: float) -> None:
    FETCH_SECONDS.labels(kind).observe(seconds)
    FETCHES.labels(kind, outcome).inc()


def delivery_counters(sink: str) -> dict[str, Counter]:
    return {outcome: DELIVERIES.labels(sink, outcome) for outcome in DELIVERY_OUTCOMES}


def notification_counters() -> dict[tuple[Kind, str], Counter]:
    """Keyed by (kind, outcome)."""
    return {
        (kind, outcome): NOTIFICATIONS.labels(kind.value, outcome)
        for kind in Kind
        for outcome in NOTIFICATION_OUTCOMES
    }


# --- queue depths, from Redis -----------------------------------------------------------------------
class QueueDepthCollector(Collector):
    """`concur_postback_queue_depth{queue}` and the age of the oldest pending notification, read from
    Redis with one script call per scrape (depths.py). If Redis does not answer within a short
    timeout, nothing is exported (the series go stale) rather than the whole scrape failing.

    queue: ``pending`` (accepted, not yet handed over or failed), ``inbox`` (waiting for a worker),
    ``in_progress`` (in a job), ``fetch_retries`` (waiting for another attempt at Concur),
    ``failed_notifications``, ``jobs_queued`` and ``jobs_failed`` (RQ), ``dead_letters``,
    ``sink_retries`` (deliveries scheduled for a retry, including those being attempted right now).
    """

    def __init__(
        self, redis_url: str, queue_name: str, timeout_seconds: float = SCRAPE_REDIS_TIMEOUT_SECONDS
    ) -> None:
        self._redis: Redis = sync_client(
            redis_url, connect_timeout=timeout_seconds, socket_timeout=timeout_seconds
        )
        self._queue_name = queue_name

    def close(self) -> None:
        self._redis.close()

    def describe(self) -> Iterable[Metric]:
        return []  # no Redis round trip when registered

    def collect(self) -> Iterable[Metric]:
        now = time.time()
        try:
            depths = read_depths(self._redis, self._queue_name, now)
        except (RedisError, OSError):
            return []
        depth = GaugeMetricFamily(
            f"{NAMESPACE}_queue_depth",
            "Items waiting, read from Redis at scrape time, by queue.",
            labels=["queue"],
        )
        for queue in QUEUES:
            depth.add_metric([queue], getattr(depths, queue))
        age = GaugeMetricFamily(
            f"{NAMESPACE}_oldest_pending_seconds",
            "Age of the oldest accepted notification not yet handed over or failed (0 when none).",
            value=depths.oldest_pending_seconds(now) or 0.0,
        )
        companies = GaugeMetricFamily(
            f"{NAMESPACE}_companies_to_reauthorize",
            "Companies whose refresh token Concur refused: their ESS events fail until `company connect`.",
            value=depths.companies_to_reauthorize,
        )
        return [depth, age, companies]


QUEUES = (
    "pending", "inbox", "in_progress", "fetch_retries", "failed_notifications", "jobs_queued", "jobs_failed",
    "dead_letters", "sink_retries",
)  # fmt: skip


# --- exposition -------------------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(*extra: Collector) -> bytes:
    """The text format for a scrape: this process's metrics (or, in multiprocess mode, every process's),
    then those of ``extra`` collectors."""
    if multiprocess_dir():
        from prometheus_client import multiprocess  # noqa: PLC0415 - only in multiprocess mode

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        output = generate_latest(registry)
    else:
        output = generate_latest(REGISTRY)
    if extra:
        own = CollectorRegistry(auto_describe=False)
        for collector in extra:
            own.register(collector)
        output += generate_latest(own)
    return output
