"""Slow clients cannot starve the service: `serve` started under `ulimit -n 1024`, attacked over raw
sockets by 1,500 connections that dribble their request head (or body), while Concur keeps posting.

Deadlines are shortened to 3 s so the attack outlasts them several times within a few seconds."""

from __future__ import annotations

import asyncio
import resource
import statistics
import time
from collections.abc import Iterator

import pytest

from concur_postback.embedded import free_port
from concur_postback.tokens import generate_key
from tests.conftest import TOKEN
from tests.processes import Process, clean_env

ATTACKERS = 1500
DEADLINE_SECONDS = 3.0
ATTACK_SECONDS = 12.0  # the attackers would go on this long: past every deadline
Closed = tuple[float | None, bytes]  # when the server closed a slow connection (None: never), its answer
OPEN_FILES = 1024  # the common soft limit of container runtimes and systemd units, hard here too


@pytest.fixture
def serve(redis_url: str) -> Iterator[tuple[int, Process]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < ATTACKERS + 512:
        pytest.skip(f"this test needs {ATTACKERS + 512} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the attacker's side: this process
    port = free_port()
    env = clean_env(
        REDIS_URL=redis_url,
        TOKEN_ENCRYPTION_KEY=generate_key(),
        HEAD_TIMEOUT_SECONDS=str(DEADLINE_SECONDS),
        MAX_BODY_SECONDS=str(DEADLINE_SECONDS),
        LOG_LEVEL="INFO",
    )
    process = Process(["serve", "--host", "127.0.0.1", "--port", str(port)], env, open_files=OPEN_FILES)
    warned = process.wait_for("service.open_files_low")
    process.wait_for("Uvicorn running on", prefix=True)
    assert warned["open_files"] == OPEN_FILES
    yield port, process
    process.stop()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def dribble(port: int, slow_body: bool, began: float) -> Closed:
    """One slow client: a request line (or a whole head) at once, then a byte of header (or body)
    every second. (When the server closed it, seconds after ``began``; what it answered.)"""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return time.monotonic() - began, b"refused"
    head = b"POST /postback?type=Profile HTTP/1.1\r\nHost: x\r\n"
    writer.write(head + b"Content-Length: 100\r\n\r\n" if slow_body else head)
    answer = b""
    try:
        while time.monotonic() - began < ATTACK_SECONDS:
            writer.write(b"x" if slow_body else b"X-Slow: 1\r\n")
            await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(200), 1.0)
            except TimeoutError:
                continue
            if not chunk:
                return time.monotonic() - began, answer
            answer += chunk
    except (ConnectionError, OSError):
        return time.monotonic() - began, answer
    finally:
        writer.close()
    return None, answer


async def postback(port: int) -> tuple[int, float, int]:
    """A legitimate Profile postback on a connection of its own, retried after a 503 as Concur
    retries: (final status, seconds, attempts)."""
    started, attempt = time.monotonic(), 0
    while attempt < 5:
        attempt += 1
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        query = f"type=Profile&oauth_token_key={TOKEN}"
        writer.write(f"POST /postback?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        status = int(status_line.split()[1])
        if status != 503:
            break
        await asyncio.sleep(1)  # Retry-After: 1
    return status, time.monotonic() - started, attempt


async def attack(port: int, slow_body: bool) -> tuple[list[Closed], list[tuple[int, float, int]]]:
    began = time.monotonic()
    attackers = [asyncio.create_task(dribble(port, slow_body, began)) for _ in range(ATTACKERS)]
    legitimate = []
    while time.monotonic() - began < DEADLINE_SECONDS * 2:  # through the attack's worst part and beyond
        legitimate.append(await postback(port))
        await asyncio.sleep(0.1)
    return await asyncio.gather(*attackers), legitimate


@pytest.mark.parametrize("slow_body", [False, True], ids=["slow head", "slow body"])
def test_slow_clients_are_closed_by_the_deadlines_and_postbacks_keep_being_answered(
    slow_body: bool, serve: tuple[int, Process], capsys: pytest.CaptureFixture[str]
) -> None:
    port, process = serve
    closed, legitimate = asyncio.run(attack(port, slow_body))
    statuses = {status for status, _, _ in legitimate}
    latencies = sorted(seconds for _, seconds, _ in legitimate)
    retried = sum(attempts > 1 for _, _, attempts in legitimate)
    with capsys.disabled():
        print(
            f"\n  {'slow body' if slow_body else 'slow head'}: {len(legitimate)} postbacks during the attack,"
            f" p50 {statistics.median(latencies) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms,"
            f" {retried} retried after a 503; slow connections closed after at most"
            f" {max(t for t, _ in closed if t is not None):.1f} s"
        )
    assert statuses == {200}  # every one stored, during the attack
    assert retried <= len(legitimate) // 10  # a 503 only for one caught in the flood's first instants
    assert all(at is not None for at, _ in closed)  # the server closed every slow connection ...
    assert max(at for at, _ in closed if at is not None) < ATTACK_SECONDS - 2  # ... long before they gave up
    timed_out = [answer for _, answer in closed if answer.startswith(b"HTTP/1.1 408")]
    assert len(timed_out) > ATTACKERS / 2  # most were told why
    assert process.popen.poll() is None
