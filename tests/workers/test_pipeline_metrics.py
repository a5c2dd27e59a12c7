"""Worker metrics after real burst runs (simulator over HTTP, real Redis, real RQ), read in-process.

The default registry is process-global, so every check compares a value before and after the run.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from rq import Queue
from rq.registry import FailedJobRegistry

from concur_postback import metrics
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import Kind, OAuthToken
from concur_postback.config import Settings
from concur_postback.depths import RQ_FAILED_PREFIX, RQ_INTERMEDIATE_SUFFIX, RQ_QUEUE_PREFIX
from concur_postback.embedded import free_port
from concur_postback.errors import ConfigurationError, RetryableFetch, SinkError
from concur_postback.events import Event, build_event
from concur_postback.sinks import sink_id
from concur_postback.tokens import vault_from_settings
from concur_postback.workers.deliveries import Deliveries
from concur_postback.workers.ledger import Ledger
from concur_postback.workers.worker import run_worker, serve_metrics
from tests.conftest import TOKEN, Pipeline, Simulator, profiles, store
from tests.workers.conftest import lease


class Snapshot:
    """Sample values now; ``delta`` gives how much one has grown since (absent counts as 0)."""

    def __init__(self) -> None:
        self._before = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in REGISTRY.collect()
            for sample in family.samples
        }

    def delta(self, name: str, **labels: str) -> float:
        now = REGISTRY.get_sample_value(name, labels) or 0.0
        return now - self._before.get((name, frozenset(labels.items())), 0.0)


def depths(settings: Settings) -> dict[str, float]:
    collector = metrics.QueueDepthCollector(settings.redis_url or "", settings.queue_name)
    try:
        family, *_ = collector.collect()
    finally:
        collector.close()
    return {sample.labels["queue"]: sample.value for sample in family.samples}


def test_fetch_notification_and_delivery_metrics_after_a_503(
    pipeline: Pipeline, simulator: Simulator
) -> None:
    simulator.fault(match="/fop", status=503, times=1)
    pipeline.post(type="FOP", oauth_token_key=TOKEN)
    pipeline.post(simulator.notification("TRIPM01"), type="Itinerary", oauth_token_key=TOKEN)
    url = f"file://{pipeline.events_file}"
    sink = f"{url} [{sink_id(url)}]"
    before = Snapshot()
    pipeline.work()

    assert len(pipeline.events()) == 2
    fetches = "concur_postback_fetches_total"
    assert before.delta(fetches, kind="fop", outcome="http_503") == 1
    assert before.delta(fetches, kind="fop", outcome="ok") == 1
    assert before.delta(fetches, kind="itinerary", outcome="ok") == 1
    assert before.delta(fetches, kind="profile", outcome="ok") == 0
    assert before.delta("concur_postback_fetch_seconds_count", kind="fop") == 2
    assert before.delta("concur_postback_fetch_seconds_count", kind="itinerary") == 1
    assert before.delta("concur_postback_fetch_seconds_sum", kind="fop") > 0
    notifications = "concur_postback_notifications_total"
    assert before.delta(notifications, kind="fop", outcome="retry_scheduled") == 1
    assert before.delta(notifications, kind="fop", outcome="delivered") == 1
    assert before.delta(notifications, kind="itinerary", outcome="delivered") == 1
    assert before.delta(notifications, kind="fop", outcome="failed") == 0
    assert before.delta("concur_postback_deliveries_total", sink=sink, outcome="delivered") == 2
    assert before.delta("concur_postback_deliveries_total", sink=sink, outcome="retry_scheduled") == 0
    assert before.delta("concur_postback_deliveries_total", sink=sink, outcome="dead_letter") == 0
    assert depths(pipeline.settings) == dict.fromkeys(metrics.QUEUES, 0)


def test_a_failed_notification_is_counted_and_in_the_gauges(pipeline: Pipeline, simulator: Simulator) -> None:
    simulator.fault(match="/fop", status=404, times=1)
    pipeline.post(type="FOP", oauth_token_key=TOKEN)
    before = Snapshot()
    pipeline.work()
    assert before.delta("concur_postback_fetches_total", kind="fop", outcome="http_404") == 1
    assert before.delta("concur_postback_notifications_total", kind="fop", outcome="failed") == 1
    assert before.delta("concur_postback_notifications_total", kind="fop", outcome="delivered") == 0
    assert depths(pipeline.settings) == {**dict.fromkeys(metrics.QUEUES, 0), "failed_notifications": 1}


def test_timeouts_are_counted(pipeline: Pipeline, simulator: Simulator) -> None:
    simulator.fault(match="/profile", status=0, times=1, delay_ms=1500)  # status 0: only the delay
    pipeline.post(type="Profile", oauth_token_key=TOKEN)
    before = Snapshot()
    run_worker(pipeline.settings.model_copy(update={"concur_read_timeout_seconds": 0.3}), burst=True)
    assert len(pipeline.events()) == 1
    assert before.delta("concur_postback_fetches_total", kind="profile", outcome="timeout") == 1
    assert before.delta("concur_postback_fetches_total", kind="profile", outcome="ok") == 1
    assert before.delta("concur_postback_fetch_seconds_count", kind="profile") == 2


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("connection refused"),
        httpx.DecodingError("truncated gzip"),
        aiohttp.ServerDisconnectedError(),
    ],
)
def test_connection_errors_are_counted_and_worth_another_attempt(
    settings: Settings, error: Exception
) -> None:
    """Whatever the transport says short of an HTTP answer, even what httpx-aiohttp passes through
    from aiohttp unmapped, is retried, never taken for a bug that fails the notification."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise error

    async def main() -> None:
        transport = httpx.MockTransport(refuse)
        client = ConcurClient(settings, transport, observe=metrics.record_fetch)
        try:
            with pytest.raises(RetryableFetch, match="connection error"):
                await client.fetch(Kind.FOP, OAuthToken(TOKEN))
        finally:
            await client.aclose()

    before = Snapshot()
    asyncio.run(main())
    assert before.delta("concur_postback_fetches_total", kind="fop", outcome="connection_error") == 1
    assert before.delta("concur_postback_fetch_seconds_count", kind="fop") == 1


@dataclass
class FlakySink:
    label: str
    failures: list[SinkError] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"test://{self.label}"

    async def deliver(self, event: Event, payload: bytes) -> None:
        if self.failures:
            raise self.failures.pop(0)

    async def aclose(self) -> None:
        return None


def test_sink_retries_and_dead_letters_are_counted(
    make_settings: Callable[..., Settings], redis_url: str, redis: Redis
) -> None:
    settings = make_settings(sink_backoff_seconds=0, sink_backoff_max_seconds=0)
    flaky = FlakySink("flaky", [SinkError("HTTP 503"), SinkError("HTTP 503")])
    broken = FlakySink("broken", [SinkError("HTTP 400", permanent=True)])
    fine = FlakySink("fine")
    [record] = store(redis, settings, profiles(1))
    event = build_event(record, None)
    before = Snapshot()

    async def main() -> None:
        client = AsyncRedis.from_url(redis_url)
        try:
            lease(redis, record.id)
            await Ledger(client, settings).claim("owner", [record.id], time.time())
            handler = Deliveries(
                settings,
                client,
                {sink_id(s.name): s for s in (flaky, broken, fine)},
                vault_from_settings(settings),
            )
            await handler.register()
            await handler.deliver("owner", record, event, event.to_json())
            assert depths(settings)["sink_retries"] == 1  # flaky, scheduled again
            await handler.retry_all_due()
        finally:
            await client.aclose()

    asyncio.run(main())
    total = "concur_postback_deliveries_total"

    def label(sink: FlakySink) -> str:
        return f"{sink.name} [{sink_id(sink.name)}]"

    assert before.delta(total, sink=label(flaky), outcome="retry_scheduled") == 2
    assert before.delta(total, sink=label(flaky), outcome="delivered") == 1
    assert before.delta(total, sink=label(broken), outcome="dead_letter") == 1
    assert before.delta(total, sink=label(broken), outcome="delivered") == 0
    assert before.delta(total, sink=label(fine), outcome="delivered") == 1
    assert depths(settings)["dead_letters"] == 1
    assert depths(settings)["sink_retries"] == 0


def test_worker_serves_its_metrics_on_its_own_port() -> None:
    port = free_port()
    server = serve_metrics(port)
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 200
    assert "# TYPE concur_postback_fetches_total counter" in response.text


def test_worker_metrics_port_in_use_stops_the_worker_at_start(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(worker_metrics_port=port)
        store(redis, settings, profiles(1))
        with pytest.raises(ConfigurationError, match=f"WORKER_METRICS_PORT {port}"):
            run_worker(settings, burst=True)
    assert redis.llen("cp:inbox") == 1  # nothing was touched


def test_burst_worker_with_a_metrics_port_releases_it(make_settings: Callable[..., Settings]) -> None:
    port = free_port()
    run_worker(make_settings(worker_metrics_port=port), burst=True)
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("0.0.0.0", port))


def test_worker_metrics_port_zero_is_refused(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValidationError):
        make_settings(worker_metrics_port=0)


def test_the_depths_read_rqs_own_keys(redis: Redis) -> None:
    queue = Queue("some-queue", connection=redis)
    assert queue.key == RQ_QUEUE_PREFIX + "some-queue"
    assert FailedJobRegistry(queue=queue).key == RQ_FAILED_PREFIX + "some-queue"
    assert queue.intermediate_queue_key == queue.key + RQ_INTERMEDIATE_SUFFIX
