"""`concur-postback worker`: an RQ worker running sessions, with the starter beside it in a thread.

SimpleWorker (no fork per job): a job is a session that keeps the process's connections to Concur,
Redis and the sinks (jobs.py), and forking would cost CPU on every job for nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from wsgiref.simple_server import WSGIServer

import prometheus_client
import structlog
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from concur_postback.config import Settings
from concur_postback.connections import connect
from concur_postback.errors import ConfigurationError
from concur_postback.workers.jobs import context, install, process_notifications, uninstall
from concur_postback.workers.starter import Starter

log = structlog.get_logger("concur_postback.worker")


MAINTENANCE_LOCK_SECONDS = 60
RESTART_PAUSE_SECONDS = 1.0  # before a new RQ worker replaces one whose loop ended on an error
BURST_LINGER_SECONDS = 1.0


class JobQueue(Queue):
    """RQ's queue, with a registry clean-up lock that lapses after a minute instead of RQ's 899 s, and
    jobs stranded between dequeue and start put back instead of failed.

    One worker at a time cleans the registries (re-queues abandoned jobs) under that lock; a worker
    killed while it held the lock would otherwise stop every abandoned job from returning for 15 min.
    """

    start_grace_seconds = 30  # how long a dequeued job may take to start before it counts as stranded

    def acquire_maintenance_lock(self) -> bool:
        return bool(self.connection.set(self.registry_cleaning_key, 1, nx=True, ex=MAINTENANCE_LOCK_SECONDS))

    @property
    def intermediate_queue(self) -> IntermediateQueue:
        return DequeuedJobs(self.key, self.connection, self.start_grace_seconds)


class DequeuedJobs(IntermediateQueue):
    """RQ's list of jobs a worker has dequeued (BLMOVE) but not yet started.

    A job stays stranded here when its worker stops in between: a SIGTERM to an idle worker raises in
    that gap, and a Redis restart can swallow BLMOVE's reply. RQ fails such a job after a minute, so
    `status` would show a failed job for a week although nothing failed. Here it goes back to the head
    of the queue once it has sat here unstarted for the grace period; running it twice is harmless,
    as a session takes only what is waiting.
    """

    def __init__(self, queue_key: str, connection: Redis, grace_seconds: int) -> None:
        super().__init__(queue_key, connection)
        self.grace_seconds = grace_seconds

    def cleanup(self, worker: Any, queue: Queue) -> None:
        entries = queue.started_job_registry.get_job_and_execution_ids(cleanup=False)
        started = {job_id for job_id, _ in entries}
        for job_id in self.get_job_ids():
            if job_id in started or self.set_first_seen(job_id):
                continue  # started since, or seen for the first time now
            first_seen = self.get_first_seen(job_id)
            if first_seen is not None and time.time() - first_seen.timestamp() < self.grace_seconds:
                continue
            job = queue.fetch_job(job_id)
            with self.connection.pipeline() as pipe:
                if job is not None:  # first: RQ starts the transaction itself (MULTI)
                    queue.enqueue_job(job, pipeline=pipe, at_front=True)
                pipe.lrem(self.key, 1, job_id)
                pipe.delete(self.get_first_seen_key(job_id))
                pipe.execute()
            log.warning("worker.stranded_job_requeued", job_id=job_id, found=job is not None)


def job_queue(redis: Redis, settings: Settings) -> Queue:
    queue = JobQueue(settings.queue_name, connection=redis, serializer=JSONSerializer)
    queue.start_grace_seconds = settings.worker_heartbeat_ttl_seconds
    return queue


def make_starter(redis: Redis, settings: Settings) -> Starter:
    return Starter(redis, job_queue(redis, settings), settings, process_notifications)


def serve_metrics(port: int) -> WSGIServer:
    """This process's metrics on ``port`` (all interfaces), from a daemon thread; each worker process
    needs its own port. A port in use stops the worker at start with a clear message."""
    try:
        server, _ = prometheus_client.start_http_server(port)
    except OSError as exc:
        raise ConfigurationError(f"WORKER_METRICS_PORT {port}: cannot listen ({exc.strerror})") from None
    log.info("worker.metrics_serving", port=port)
    return server


class HeartbeatWorker(SimpleWorker):
    """A SimpleWorker whose running job says it is alive every few seconds, from a thread.

    SimpleWorker marks a job alive once, for its whole timeout + 60 s, so a session abandoned by a
    killed worker would sit in the started registry for minutes. Beating every ``heartbeat_ttl / 4``
    seconds lets the registry entry lapse ``heartbeat_ttl`` seconds after a crash; the next registry
    clean-up (every ``maintenance_interval``, by any worker) then re-queues it. Its notifications do
    not wait for that: their leases lapse and any session takes them.
    """

    def __init__(self, *args: Any, heartbeat_ttl: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_ttl = heartbeat_ttl
        self.stopping = False  # asked to stop (SIGTERM, SIGINT): RQ's loop ending is then no error

    def request_stop(self, signum: Any, frame: Any) -> None:
        self.stopping = True
        context().stopping.set()  # the running session takes no more and ends once it is done
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.heartbeat_ttl

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        done = threading.Event()
        beat = threading.Thread(target=self._beat, args=(job, execution, done), name="heartbeat", daemon=True)
        beat.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            done.set()
            beat.join()
        self.set_state(WorkerStatus.IDLE)

    def _beat(self, job: Job, execution: Execution, done: threading.Event) -> None:
        interval = self.heartbeat_ttl / 4
        while not done.wait(interval):
            try:
                self.maintain_heartbeats(job, execution)
                interval = self.heartbeat_ttl / 4
            except RedisError as exc:  # Redis restarting: beat again soon, before the entry lapses
                log.warning("worker.heartbeat_failed", job_id=job.id, error=str(exc))
                interval = 1


def _burst(starter: Starter, worker: HeartbeatWorker, settings: Settings) -> None:
    """Work until nothing is waiting and no retry (of a fetch or a delivery) is due within a second."""
    deliveries = context().processor.deliveries
    loop = context().loop
    while True:
        next_work = starter.next_work()
        if next_work <= time.time():
            starter.enqueue(until_idle=True)
            worker.work(burst=True, logging_level=settings.log_level)
            continue
        if loop.run(deliveries.retry_all_due()):
            continue
        wait = min(next_work, loop.run(deliveries.next_due())) - time.time()
        if wait > BURST_LINGER_SECONDS:
            return
        time.sleep(max(0.0, wait))  # until the next retry is due: the schedule, not synchronisation


def run_worker(settings: Settings, burst: bool = False) -> None:
    """Work until stopped (or, with ``burst``, until nothing is left)."""
    install(settings)  # the key, the sinks and Redis are refused before the metrics port is taken
    metrics_server = None
    try:
        if settings.worker_metrics_port:
            metrics_server = serve_metrics(settings.worker_metrics_port)
        _run(settings, burst)
    finally:
        uninstall()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()


def _worker(redis: Redis, queue: Queue, settings: Settings) -> HeartbeatWorker:
    # An abandoned job (its worker killed) is re-queued at the first registry clean-up after its
    # heartbeat lapses: every WORKER_MAINTENANCE_SECONDS instead of RQ's 10 min. An idle worker runs
    # clean-ups between blocking dequeues of worker_ttl - 15 s, hence the TTL.
    return HeartbeatWorker(
        [queue],
        connection=redis,
        serializer=JSONSerializer,
        maintenance_interval=settings.worker_maintenance_seconds,
        worker_ttl=settings.worker_maintenance_seconds + 15,
        job_monitoring_interval=5,
        heartbeat_ttl=settings.worker_heartbeat_ttl_seconds,
    )


def _run(settings: Settings, burst: bool) -> None:
    redis = connect(settings)
    queue = job_queue(redis, settings)
    starter = make_starter(redis, settings)
    stop = threading.Event()
    thread = threading.Thread(target=starter.run, args=(stop,), name="starter", daemon=True)
    try:
        if burst:
            _burst(starter, _worker(redis, queue, settings), settings)
            return
        thread.start()
        while True:
            worker: HeartbeatWorker | None = None
            try:
                worker = _worker(redis, queue, settings)
                worker.work(logging_level=settings.log_level)
            except RedisError as exc:  # RQ's start (register_birth) or tear-down could not reach Redis
                log.warning("worker.redis_error", error=type(exc).__name__)
            if worker is not None and worker.stopping:
                return
            # RQ quits its loop on an error it does not handle, such as a Redis failover while it
            # records a finished job. The process must go on working: a new RQ worker takes over.
            log.warning("worker.restarted", reason="RQ's work loop ended on an error")
            stop.wait(RESTART_PAUSE_SECONDS)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=5)
