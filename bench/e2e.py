"""End-to-end benchmark: postback to sink, through real processes, with Concur simulated at 100 ms.

    python bench/e2e.py [--notifications 3000] [--workers 2] [--latency-ms 100] [--ess]

Starts an embedded Redis (AOF on) unless REDIS_URL is set, the simulator, `serve` and N `worker`
processes writing to a file sink; posts N distinct itinerary notifications (32 at a time), then
follows the sink file. Prints throughput (first postback to last event), p50/p99 latency from the
acknowledgement (the event's received_at) to the line appearing in the file, and the worker tier's
peak RSS. `--ess` posts ESS events instead (signed by the simulator, every topic in turn, every tenth
one redelivered), fetched with the simulator's company token.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import statistics
import time
from dataclasses import dataclass
from datetime import datetime

import aiohttp
from deployment import deployment, follow, peak_rss_mib

from concur_postback.simulator.load import fetch_ess_events


def notification(base: str, trip: str) -> bytes:
    return (
        f"<Notification><ObjectType>ITINERARY</ObjectType><ObjectURI>{base}/api/travel/trip/v1.1/{trip}"
        f"</ObjectURI><EventDateTime>2026-11-22T10:00:00</EventDateTime><EventType>UPDATE</EventType>"
        f"<TripId>{trip}</TripId></Notification>"
    ).encode()


Request = tuple[dict[str, str], bytes, dict[str, str]]  # query, body, headers


def postbacks(simulator: str, count: int) -> list[Request]:
    xml = {"Content-Type": "application/xml"}
    return [
        (
            {"type": "Itinerary", "oauth_token_key": f"bench-token-{n:08d}"},
            notification(simulator, f"BENCH{n:08d}"),
            xml,
        )
        for n in range(count)
    ]


def ess_events(simulator: str, count: int) -> list[Request]:
    return [({}, event.body, event.headers) for event in fetch_ess_events(simulator, count)]


async def fire(url: str, planned: list[Request], concurrency: int, rate: float) -> None:
    """Post the requests with aiohttp (a Python client that keeps up with the service),
    as fast as possible or at ``rate`` per second (request n leaves at ``n / rate`` s)."""
    began = time.monotonic()
    async with aiohttp.ClientSession() as session:
        pending = iter(enumerate(planned))

        async def sender() -> None:
            for n, (params, body, headers) in pending:
                if rate > 0 and (wait := began + n / rate - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                async with session.post(url, params=params, data=body, headers=headers) as response:
                    response.raise_for_status()

        await asyncio.gather(*(sender() for _ in range(concurrency)))


@dataclass(frozen=True)
class E2EFigures:
    notifications: int
    workers: int
    latency_ms: int
    rate: float  # postbacks per second, 0: as fast as possible
    delivered: int  # distinct notifications that reached the sink
    lines: int  # lines in the sink (a redelivery would add one)
    ingest_rate: float
    throughput: float
    p50_ms: float | None
    p99_ms: float | None
    worker_rss_mib: float
    cpu_ms: dict[str, float]  # per notification, by tier

    @property
    def pace(self) -> str:
        return f"at {self.rate:g}/s" if self.rate else "as fast as possible"


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notifications", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32, help="postbacks in flight")
    parser.add_argument("--rate", type=float, default=0, help="postbacks per second (0: as fast as possible)")
    parser.add_argument("--ess", action="store_true", help="ESS events instead of itinerary postbacks")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> E2EFigures:
    simulator_args = ("--latency-ms", str(args.latency_ms))
    limits = {"CONCUR_MAX_RPS": "100000", "CONCUR_MAX_IN_FLIGHT": "256"}  # measure us, not a budget
    with deployment(workers=args.workers, simulator_args=simulator_args, ess=args.ess, **limits) as running:
        if args.ess:
            planned = ess_events(running.simulator_url, args.notifications)
            url = running.postback_url.removesuffix("/postback") + "/events"
            expected = len({body for _, body, _ in planned})  # redeliveries are one event
        else:
            planned, url = postbacks(running.simulator_url, args.notifications), running.postback_url
            expected = args.notifications
        # Follow the sink while posting: each line is timestamped when it appears.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            following = pool.submit(follow, running.events, expected, 600)
            started = time.time()
            asyncio.run(fire(url, planned, args.concurrency, args.rate))
            acked = time.time()
            seen = following.result()
        rss = peak_rss_mib([w.pid for w in running.workers])
        cpu = running.cpu()

    latencies = sorted(
        (t - datetime.fromisoformat(str(e["received_at"])).timestamp()) * 1000 for t, e in seen
    )
    finished = seen[-1][0] if seen else time.time()
    delivered = len({e["notification_id"] for _, e in seen})
    return E2EFigures(
        notifications=args.notifications,
        workers=args.workers,
        latency_ms=args.latency_ms,
        rate=args.rate,
        delivered=delivered,
        lines=len(seen),
        ingest_rate=args.notifications / (acked - started),
        throughput=delivered / (finished - started),
        p50_ms=statistics.median(latencies) if latencies else None,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] if latencies else None,
        worker_rss_mib=rss,
        cpu_ms={name: seconds / args.notifications * 1000 for name, seconds in cpu.items()},
    )


def describe(f: E2EFigures, ess: bool = False) -> str:
    what = "ESS events (every topic, every tenth redelivered)" if ess else "itinerary notifications"
    workers = f"{f.workers} worker process(es)"
    return f"{f.notifications} {what} posted {f.pace}, {workers}, Concur latency {f.latency_ms} ms"


def table(f: E2EFigures) -> str:
    lines = [
        "| figure | value |",
        "|---|---:|",
        f"| delivered (distinct) | {f.delivered} of {f.notifications} ({f.lines} lines) |",
        f"| ingest rate | {f.ingest_rate:,.0f} /s |",
        f"| end-to-end throughput | {f.throughput:,.0f} /s |",
    ]
    if f.p50_ms is not None and f.p99_ms is not None:
        lines.append(f"| latency ack -> sink p50 / p99 | {f.p50_ms:,.0f} / {f.p99_ms:,.0f} ms |")
    lines.append(f"| worker tier peak RSS | {f.worker_rss_mib:,.0f} MiB |")
    lines += [f"| {name} CPU per notification | {ms:.2f} ms |" for name, ms in f.cpu_ms.items()]
    return "\n".join(lines)


def main() -> None:
    args = options()
    figures = run(args)
    print(f"e2e: {describe(figures, args.ess)}, {os.cpu_count()} CPUs\n")
    print(table(figures))
    print("\ntarget: >= 300 notifications/s end to end at 100 ms Concur latency, worker tier <= 1 GiB RSS")


if __name__ == "__main__":
    main()
