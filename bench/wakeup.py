"""What this machine charges a process for waking up: the CPU a wake-up from idle costs, by itself.

    python bench/wakeup.py

A worker that waits for Redis, Concur or its file sink's thread goes idle and is woken when the answer
comes; at a quiet rate every notification pays several such wake-ups. Some machines (virtual ones
with tick-based CPU accounting, such as the one README's report comes from) charge a wake-up far more
than the work it wakes for, and that shows in every "CPU per notification" figure. This prints, as
measured here, the CPU per wake-up of a thread from `time.sleep`, of an event loop (uvloop where
installed, as in the workers) from `asyncio.sleep`, and of a Redis PING sent from idle, against the
same PING sent back to back (no wake-up between); and what the work done after a wake-up costs: the
CPU of reading the simulator's trip into records back to back, against the same read right after an
idle pause (the wake-up itself not counted: a CPU gone cold runs the same code slower). Read the
figures of bench/e2e.py with them.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from concur_postback.concur.trips import parse_trip
from concur_postback.embedded import EmbeddedRedis
from concur_postback.simulator.documents import from_template
from concur_postback.workers.loop_thread import new_event_loop

PAUSE_SECONDS = 0.02  # idle between wake-ups: long enough for the CPU to go idle
ROUNDS = 150


@dataclass(frozen=True)
class WakeupFigures:
    thread_us: float  # time.sleep, per wake-up
    loop_us: float  # asyncio.sleep, per wake-up
    ping_idle_us: float  # a Redis PING from idle
    ping_busy_us: float  # a Redis PING back to back
    read_busy_us: float  # reading the simulator's trip, back to back
    read_idle_us: float  # ... right after an idle pause

    def line(self) -> str:
        return (
            f"CPU per wake-up from idle: thread {self.thread_us:.0f} µs, event loop {self.loop_us:.0f} µs;"
            f" a Redis round trip {self.ping_idle_us:.0f} µs from idle,"
            f" {self.ping_busy_us:.0f} µs back to back; reading a trip {self.read_idle_us:,.0f} µs right"
            f" after a wake-up, {self.read_busy_us:,.0f} µs back to back"
        )


def cpu_per_call(call: Callable[[], object], rounds: int = ROUNDS) -> float:
    began = time.process_time()
    for _ in range(rounds):
        call()
    return (time.process_time() - began) / rounds * 1e6


async def async_cpu_per_call(call: Callable[[], Awaitable[object]], rounds: int = ROUNDS) -> float:
    began = time.process_time()
    for _ in range(rounds):
        await call()
    return (time.process_time() - began) / rounds * 1e6


async def _loop_figures(redis_url: str) -> tuple[float, float, float]:
    redis = Redis.from_url(redis_url)
    try:
        await redis.ping()

        async def idle_ping() -> None:
            await asyncio.sleep(PAUSE_SECONDS)
            await redis.ping()

        sleeping = await async_cpu_per_call(lambda: asyncio.sleep(PAUSE_SECONDS))
        ping_idle = await async_cpu_per_call(idle_ping) - sleeping
        ping_busy = await async_cpu_per_call(redis.ping, ROUNDS * 20)
        return sleeping, ping_idle, ping_busy
    finally:
        await redis.aclose()


def read_cpu(pause: float, rounds: int = ROUNDS) -> float:
    """CPU of one read of the simulator's trip (as bench/e2e.py's workers read it), each after
    ``pause`` seconds idle; only the read is counted, on this thread's clock."""
    trip = from_template("trip", LOGIN_ID="bench@example.com", TRIP_ID="BENCH00000001").encode()
    spent = 0.0
    for _ in range(rounds):
        if pause:
            time.sleep(pause)
        began = time.thread_time()
        parse_trip(trip)
        spent += time.thread_time() - began
    return spent / rounds * 1e6


def measure() -> WakeupFigures:
    thread = cpu_per_call(lambda: time.sleep(PAUSE_SECONDS))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis").start()
        loop = new_event_loop()
        try:
            sleeping, ping_idle, ping_busy = loop.run_until_complete(_loop_figures(server.url))
        finally:
            loop.close()
            server.stop()
    read_cpu(0)  # imports and caches warmed
    return WakeupFigures(thread, sleeping, ping_idle, ping_busy, read_cpu(0), read_cpu(PAUSE_SECONDS))


def main() -> None:
    print(measure().line())


if __name__ == "__main__":
    main()
