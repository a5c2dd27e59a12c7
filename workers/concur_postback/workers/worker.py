"""`concur-postback worker`: an RQ worker with the pump running beside it in a thread.

SimpleWorker (no fork per job): a job is a batch of notifications, and forking would cost ~60 ms of
CPU per job for nothing — the job code is ours and shares no state between jobs.
"""

from __future__ import annotations

import contextlib
import threading
from wsgiref.simple_server import WSGIServer

import prometheus_client
import structlog
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError
from concur_postback.workers.jobs import context, install, process_notifications, uninstall
from concur_postback.workers.pump import Pump

log = structlog.get_logger("concur_postback.worker")


def connect(settings: Settings) -> Redis:
    if settings.redis_url is None:
        raise ConfigurationError("REDIS_URL is not set (use `concur-postback run` for an embedded Redis)")
    return Redis.from_url(settings.redis_url, socket_connect_timeout=settings.redis_timeout_seconds)


def job_queue(redis: Redis, settings: Settings) -> Queue:
    return Queue(settings.queue_name, connection=redis, serializer=JSONSerializer)


def make_pump(redis: Redis, settings: Settings) -> Pump:
    return Pump(redis, job_queue(redis, settings), settings, process_notifications)


def serve_metrics(port: int) -> WSGIServer:
    """This process's metrics on ``port`` (all interfaces), from a daemon thread; each worker process
    needs its own port. A port in use stops the worker at start with a clear message."""
    try:
        server, _ = prometheus_client.start_http_server(port)
    except OSError as exc:
        raise ConfigurationError(f"WORKER_METRICS_PORT {port}: cannot listen ({exc.strerror})") from None
    log.info("worker.metrics_serving", port=port)
    return server


def run_worker(settings: Settings, burst: bool = False) -> None:
    """Work until stopped (or, with ``burst``, until nothing is left)."""
    metrics_server = serve_metrics(settings.worker_metrics_port) if settings.worker_metrics_port else None
    try:
        _run(settings, burst)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()


def _run(settings: Settings, burst: bool) -> None:
    install(settings)
    redis = connect(settings)
    queue = job_queue(redis, settings)
    pump = make_pump(redis, settings)
    # An abandoned job (its worker killed) is noticed when its heartbeat lapses, ~65-80 s after it
    # started, at the next registry clean-up: every WORKER_MAINTENANCE_SECONDS instead of 10 min.
    # An idle worker runs clean-ups between blocking dequeues of worker_ttl - 15 s, hence the TTL.
    worker = SimpleWorker(
        [queue],
        connection=redis,
        serializer=JSONSerializer,
        maintenance_interval=settings.worker_maintenance_seconds,
        worker_ttl=settings.worker_maintenance_seconds + 15,
        job_monitoring_interval=5,
    )
    stop = threading.Event()
    thread = threading.Thread(target=pump.run, args=(stop,), name="pump", daemon=True)
    try:
        if burst:
            pump.drain()
            worker.work(burst=True, logging_level=settings.log_level)
            ctx = context()
            ctx.runtime.run(ctx.processor.deliveries.retry_all_due())
            return
        thread.start()
        worker.work(logging_level=settings.log_level)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=5)
        uninstall()
        with contextlib.suppress(RedisError):
            pump.release_lease()
