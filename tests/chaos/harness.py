"""Parts of the chaos run: a sender that behaves like Concur, a timeline, the RQ facts the run checks,
and a scan for leaked secrets (the proxy that takes a sink down is tests/netfaults.py)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from redis import Redis
from rq import Worker
from rq.executions import Execution
from rq.registry import StartedJobRegistry

from tests.processes import Process

QUEUE = "concur-postback"


class Timeline:
    """What happened when, in seconds from the start, printed at the end of the run."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.entries: list[tuple[float, str]] = []

    def now(self) -> float:
        return time.monotonic() - self.start

    def mark(self, text: str, at: float | None = None) -> float:
        at = self.now() if at is None else at
        self.entries.append((at, text))
        return at

    def render(self) -> str:
        return "\n".join(f"  {at:7.1f} s  {text}" for at, text in sorted(self.entries))


@dataclass(frozen=True)
class Shot:
    """One postback (or ESS event) as Concur sends it; ``key`` names the change it reports (copies
    share it)."""

    key: str
    params: dict[str, str]
    body: bytes
    path: str = "/postback"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/xml"})


@dataclass
class Sent:
    """What the sender saw: every answer, the keys acknowledged with a 200, and the notification ids
    those answers named, each with when it was first acknowledged (time.monotonic())."""

    answers: Counter[str] = field(default_factory=Counter)
    acknowledged: set[str] = field(default_factory=set)
    ids: dict[str, float] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    seconds: float = 0.0
    unavailable_at: list[float] = field(default_factory=list)  # when a 503 (or no answer) came


async def send(url: str, shots: list[Shot], rate: float, give_up_after: float = 90) -> Sent:
    """POST every shot to its path under ``url`` at ``rate`` per second, retrying 5xx and connection
    errors the way Concur retries an unacknowledged postback or ESS event, until a 200 (any other
    answer is recorded as refused)."""
    sent = Sent()
    began = time.monotonic()

    async def one(client: httpx.AsyncClient, shot: Shot) -> None:
        deadline = time.monotonic() + give_up_after
        while True:
            try:
                response = await client.post(
                    url + shot.path, params=shot.params, content=shot.body, headers=shot.headers
                )
                status = response.status_code
                answer = f"200 {response.json()['status']}" if status == 200 else str(status)
            except httpx.HTTPError as exc:
                status, answer = 0, type(exc).__name__
            sent.answers[answer] += 1
            if status in (0, 503):
                sent.unavailable_at.append(time.monotonic())
            if status == 200:
                sent.acknowledged.add(shot.key)
                sent.ids.setdefault(response.json()["id"], time.monotonic())
                return
            if (status and status < 500) or time.monotonic() > deadline:
                sent.refused.append(f"{shot.key}: {answer}")
                return
            await asyncio.sleep(0.25)  # back off before the redelivery, as Concur would

    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        tasks = []
        for n, shot in enumerate(shots):
            if (wait := began + n / rate - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(client, shot)))
        await asyncio.gather(*tasks)
    sent.seconds = time.monotonic() - began
    return sent


def send_in_background(url: str, shots: list[Shot], rate: float) -> tuple[threading.Thread, list[Sent]]:
    result: list[Sent] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(send(url, shots, rate))))
    thread.start()
    return thread, result


# --- RQ facts -----------------------------------------------------------------------------------


def started_entries(redis: Redis, queue_name: str, pid: int) -> list[str]:
    """The started-registry entries (``job:execution``) of the worker process ``pid``, read without
    RQ's clean-up (which would itself recover abandoned jobs and spoil the measurement)."""
    names = [worker.name for worker in Worker.all(connection=redis) if worker.pid == pid]
    registry = StartedJobRegistry(queue_name, connection=redis)
    entries = []
    for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
        with contextlib.suppress(ValueError):  # the execution just ended
            if Execution.fetch(execution_id, job_id, redis).worker_name in names:
                entries.append(f"{job_id}:{execution_id}")
    return entries


def still_started(redis: Redis, queue_name: str, entry: str) -> bool:
    return redis.zscore(StartedJobRegistry(queue_name, connection=redis).key, entry) is not None


# --- leaks ----------------------------------------------------------------------------------------


def redis_contents(redis: Redis) -> str:
    """Every key and value in the database, as text, whatever its type."""
    out = []
    for key in redis.scan_iter(count=1000):
        kind = redis.type(key).decode()
        value: object
        if kind == "string":
            value = redis.get(key)
        elif kind == "hash":
            value = redis.hgetall(key)
        elif kind == "list":
            value = redis.lrange(key, 0, -1)
        elif kind == "set":
            value = redis.smembers(key)
        elif kind == "zset":
            value = redis.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = redis.xrange(key)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


def files_contents(directory: Path) -> str:
    return "\n".join(path.read_bytes().decode("latin-1") for path in directory.rglob("*") if path.is_file())


def leaks(where: str, text: str, secrets: Iterable[str]) -> list[str]:
    return [f"{where}: {secret[:6]}…" for secret in secrets if secret in text]


# --- a deployment and its sink ----------------------------------------------------------------


class Cluster:
    """The processes of one deployment, started and broken on request."""

    def __init__(self, env: dict[str, str], web_port: int) -> None:
        self.env = env
        self.web_port = web_port
        self.retired: list[Process] = []
        self.web = self._serve()
        self.workers = [self._worker(env) for _ in range(2)]

    def _serve(self) -> Process:
        web = Process(["serve", "--host", "127.0.0.1", "--port", str(self.web_port)], self.env)
        web.wait_for("Uvicorn running on", prefix=True)
        return web

    def _worker(self, env: dict[str, str]) -> Process:
        worker = Process(["worker"], env)
        worker.wait_for("*** Listening on", prefix=True)
        return worker

    def restart_web(self) -> None:
        """SIGTERM: uvicorn stops accepting, finishes what it has, the committer flushes; then anew."""
        self.web.stop()
        self.retired.append(self.web)
        self.web = self._serve()

    def kill_worker_mid_job(self, index: int, redis: Redis) -> tuple[list[str], float]:
        """SIGKILL worker ``index`` while it runs a job and start a replacement; return the abandoned
        entries and when the kill happened."""
        worker = self.workers[index]
        deadline = time.monotonic() + 30
        while not (entries := started_entries(redis, QUEUE, worker.popen.pid)):
            assert time.monotonic() < deadline, "the worker never ran a job"
            time.sleep(0.01)  # polling RQ's registry: no event to await from another process
        worker.kill()
        killed_at = time.monotonic()
        self.retired.append(worker)
        self.workers[index] = self._worker(self.env)
        return entries, killed_at

    def roll(self, env: dict[str, str]) -> None:
        """A rolling deploy: each worker in turn is replaced by one with ``env``, the new one started
        before the old one gets SIGTERM (it finishes its job), as a Deployment with maxSurge 1 does."""
        self.env = env
        for index, old in enumerate(self.workers):
            self.workers[index] = self._worker(env)
            old.stop()
            self.retired.append(old)

    def all(self) -> list[Process]:
        return [*self.retired, self.web, *self.workers]

    def stop(self) -> None:
        """SIGTERM to every running process; one that already exited keeps its exit code, and the
        rest of its output is read too (so its log shows why it stopped)."""
        for process in (self.web, *self.workers):
            process.stop()


Rows = Callable[[], list[dict[str, Any]]]


def notification_id(row: dict[str, Any]) -> str:
    return str(orjson.loads(row["event"])["notification_id"])
