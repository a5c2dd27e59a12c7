"""What processing leaves behind in Redis: bytes retained per notification, and a month of steady traffic.

    python bench/memory.py [--notifications 3000] [--rate 200]

Starts a deployment (bench/deployment.py: embedded Redis unless REDIS_URL is set, the simulator,
`serve`, one worker, a file sink), reads Redis's `used_memory` once everything is up, posts distinct
notifications (40 % itineraries, 30 % profiles, 30 % FOP, as Concur would: a profile or FOP postback
has no body), waits until each is in the sink and `status` shows nothing left, and reads Redis again —
right away, and once RQ's 60 s result TTL for finished jobs has passed. It prints the bytes retained
per notification, which keys hold them, and what that means for a month of steady traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp
from deployment import deployment, follow
from redis import Redis

from concur_postback.config import load_settings
from concur_postback.depths import read_depths

RESULT_TTL_SECONDS = 60  # starter.py: finished RQ jobs are kept this long
KINDS = ("itinerary",) * 4 + ("profile",) * 3 + ("fop",) * 3


def itinerary(base: str, n: int) -> bytes:
    trip = f"MEM{n:08d}"
    return (
        f"<Notification><ObjectType>ITINERARY</ObjectType><ObjectURI>{base}/api/travel/trip/v1.1/{trip}"
        f"</ObjectURI><EventDateTime>2026-11-22T10:00:00</EventDateTime><EventType>UPDATE</EventType>"
        f"<TripId>{trip}</TripId></Notification>"
    ).encode()


async def fire(url: str, simulator: str, count: int, rate: float) -> None:
    began = time.monotonic()
    async with aiohttp.ClientSession() as session:
        pending = iter(range(count))

        async def sender() -> None:
            for n in pending:
                if (wait := began + n / rate - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                kind = KINDS[n % len(KINDS)]
                params = {"type": kind, "oauth_token_key": f"memory-token-{n:08d}"}
                body = itinerary(simulator, n) if kind == "itinerary" else b""
                async with session.post(url, params=params, data=body) as response:
                    response.raise_for_status()

        await asyncio.gather(*(sender() for _ in range(16)))


@dataclass(frozen=True)
class Census:
    used_memory: int  # all of Redis: keys, its own buffers and caches, the allocator's overhead
    keys: Counter[str]  # how many keys, by family
    data: Counter[str]  # what they take (MEMORY USAGE), by family
    stats: dict[str, int]  # MEMORY STATS: where the rest of used_memory is

    @classmethod
    def read(cls, redis: Redis) -> Census:
        keys: Counter[str] = Counter()
        data: Counter[str] = Counter()
        for raw in redis.scan_iter(count=1000):
            key = raw.decode()
            family = family_of(key)
            keys[family] += 1
            data[family] += redis.memory_usage(key) or 0
        stats = {name: int(value) for name, value in redis.memory_stats().items() if name in STATS}
        return cls(int(redis.info("memory")["used_memory"]), keys, data, stats)


STATS = ("dataset.bytes", "clients.normal", "aof.buffer", "lua.caches")


def family_of(key: str) -> str:
    """`cp:seen:<digest>` -> `cp:seen:*`, `rq:job:<id>` -> `rq:job:*`; fixed keys stay themselves."""
    for prefix in (
        "cp:seen:",
        "cp:budget:",
        "cp:sink-live:",
        "rq:job:",
        "rq:results:",
        "rq:execution:",
        "rq:worker:",
    ):
        if key.startswith(prefix):
            return prefix + "*"
    return key


@dataclass(frozen=True)
class MemoryFigures:
    rate: float
    notifications: int
    itineraries: int
    before: Census
    right_after: Census
    settled: Census  # once RQ's finished jobs have expired

    def dataset_per_notification(self, census: Census) -> float:
        return (census.stats["dataset.bytes"] - self.before.stats["dataset.bytes"]) / self.notifications

    @property
    def per_itinerary(self) -> float:
        return (self.settled.stats["dataset.bytes"] - self.before.stats["dataset.bytes"]) / max(
            self.itineraries, 1
        )


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notifications", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=200, help="postbacks per second")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> MemoryFigures:
    with deployment(workers=1) as running:
        redis = Redis.from_url(running.redis_url)
        queue = load_settings().queue_name
        time.sleep(2)  # let the worker register and its first idle rounds settle
        before = Census.read(redis)
        asyncio.run(fire(running.postback_url, running.simulator_url, args.notifications, args.rate))
        seen = follow(running.events, args.notifications, 600)
        while read_depths(redis, queue, time.time()).pending:
            time.sleep(0.2)  # the sink has every event; the workers' last bookkeeping follows
        right_after = Census.read(redis)
        time.sleep(RESULT_TTL_SECONDS + 2)
        settled = Census.read(redis)
        redis.close()
    itineraries = sum(1 for _, event in seen if event["kind"] == "itinerary")
    return MemoryFigures(args.rate, len(seen), itineraries, before, right_after, settled)


def describe(f: MemoryFigures) -> str:
    return f"{f.notifications} notifications ({f.itineraries} itineraries), posted at {f.rate:g}/s, 1 worker"


def table(f: MemoryFigures) -> str:
    lines = ["| Redis after processing, per notification | dataset | keys (MEMORY USAGE) | used_memory |"]
    lines.append("|---|---:|---:|---:|")
    for label, census in (
        ("right away", f.right_after),
        (f"after RQ's {RESULT_TTL_SECONDS} s result TTL", f.settled),
    ):
        data = (sum(census.data.values()) - sum(f.before.data.values())) / f.notifications
        used = (census.used_memory - f.before.used_memory) / f.notifications
        lines.append(
            f"| {label} | {f.dataset_per_notification(census):,.0f} B | {data:,.0f} B | {used:,.0f} B |"
        )
    lines.append("\n| used_memory growth after the TTL, by MEMORY STATS | bytes |\n|---|---:|")
    lines += [
        f"| `{name}` | {f.settled.stats[name] - f.before.stats.get(name, 0):,} |"
        for name in STATS
        if name in f.settled.stats
    ]
    lines.append("\n| keys left, by family | count | bytes |\n|---|---:|---:|")
    lines += [
        f"| `{family}` | {number:,} | {f.settled.data[family] - f.before.data[family]:,} |"
        for family, number in (f.settled.keys - f.before.keys).most_common()
    ]
    dedup_days = load_settings().dedup_ttl_seconds / 86400
    lines.append(
        f"\nWhat stays is an itinerary change's dedup key for DEDUP_TTL_SECONDS ({dedup_days:g} days), "
        f"{f.per_itinerary:,.0f} B of dataset each, and nothing of a profile or FOP notification; the rest"
        " of used_memory's growth is the connections' buffers, which do not grow with traffic. So Redis"
        f" levels off after {dedup_days:g} days and stays there through a month:"
    )
    for rate in (1, 10, 67):
        plateau = f.per_itinerary * rate * dedup_days * 86400
        lines.append(f"- {rate} itinerary notification(s)/s: about {plateau / 2**20:,.0f} MiB of dedup keys")
    return "\n".join(lines)


def main() -> None:
    figures = run(options())
    print(f"memory: {describe(figures)}\n")
    print(table(figures))


if __name__ == "__main__":
    main()
