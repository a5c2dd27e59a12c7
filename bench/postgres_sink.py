"""Throughput of the PostgreSQL sink: events stored per second with many deliveries at once.

    python bench/postgres_sink.py [--url postgresql://postgres@127.0.0.1:5432/postgres] [--events 3000]
        [--concurrency 64] [--pool-sizes 1,2,4,8,16]

A worker delivers a batch of notifications concurrently; this delivers ``--events`` distinct events
with ``--concurrency`` of them in flight to a fresh table, as the worker would, once per pool size
(``pool_size=1`` is the sink as it was before it had a pool: every insert waits for the one before),
and prints the rate and the latency of one delivery. The tables are dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time

import psycopg

from concur_postback.events import Event
from concur_postback.sinks.postgres import PostgresSink


def event(n: int) -> Event:
    return Event(
        id=f"evt_{n:032x}",
        kind="profile",
        event_type="UPDATE",
        received_at="2026-12-01T00:00:00+00:00",
        fetched_at="2026-12-01T00:00:01+00:00",
        notification_id=f"n{n}",
        request_id=None,
        subject=f"token:{n:032x}",
        login_id=f"traveller{n}@example.com",
        userid_type=None,
        userid_value=None,
        trip_id=None,
        object_uri=None,
        event_time=None,
        data={"general": {"first_name": "Ada", "n": n}, "extra": {}},
        error=None,
    )


async def deliver_all(sink: PostgresSink, events: list[Event], concurrency: int) -> list[float]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(item: Event) -> None:
        async with gate:
            began = time.perf_counter()
            await sink.deliver(item, item.to_json())
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(one(item) for item in events))
    await sink.aclose()
    return latencies


def measure(url: str, pool_size: int, events: list[Event], concurrency: int) -> str:
    table = f"bench_{secrets.token_hex(4)}"
    sink = PostgresSink.from_url(f"{url}{'&' if '?' in url else '?'}table={table}&pool_size={pool_size}")
    try:
        began = time.perf_counter()
        latencies = asyncio.run(deliver_all(sink, events, concurrency))
        seconds = time.perf_counter() - began
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(table)))
    cuts = statistics.quantiles(latencies, n=100)
    p50, p99 = cuts[49] * 1000, cuts[98] * 1000
    rate = len(events) / seconds
    return f"| {pool_size} | {len(events)} | {concurrency} | {rate:,.0f} | {p50:.1f} / {p99:.1f} ms |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--pool-sizes", default="1,2,4,8,16")
    args = parser.parse_args()
    events = [event(n) for n in range(args.events)]
    print("| pool_size | events | in flight | stored/s | one delivery p50 / p99 |")
    print("|---|---|---|---|---|")
    for size in (int(item) for item in args.pool_sizes.split(",")):
        print(measure(args.url, size, events, args.concurrency), flush=True)


if __name__ == "__main__":
    main()
