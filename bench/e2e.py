"""End-to-end benchmark: postback to sink, through real processes, with Concur simulated at 100 ms.

    python bench/e2e.py [--notifications 3000] [--workers 2] [--latency-ms 100] [--rate 0] [--budget 0]
        [--ess]

Starts a deployment (bench/deployment.py: an embedded Redis with AOF on unless REDIS_URL is set, the
simulator, `serve` and N `worker` processes writing to a file sink) and waits until it is idle; posts
N distinct itinerary notifications (32 at a time, as fast as they are taken or `--rate` per second),
following the sink file. Prints throughput (first postback to last event), the latency from the
acknowledgement (the event's received_at) to the line appearing in the file (stamped within 2 ms) as
a distribution, and the cost from the idle deployment to the last event (idle polling included,
start-up not): CPU per notification by tier, Redis commands per notification, Concur requests; and
the worker tier's peak RSS. `--budget` sets CONCUR_MAX_RPS and has the simulator answer 429 above it
(bench/budget.py); without it the limits are lifted, to measure the deployment rather than a budget.
`--ess` posts ESS events instead (signed by the simulator, every topic in turn, every tenth one
redelivered), fetched with the simulator's company token.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import aiohttp
import distribution
import httpx
from deployment import Deployment, Usage, deployment, follow, peak_rss_mib
from distribution import Distribution, ms

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
class ConcurLoad:
    """The requests Concur (the simulator) saw during a run, from its own request log."""

    requests: int
    rate: float  # requests per second, the steady part (the first and last 5 % left out)
    refused: int  # answered 429

    @classmethod
    def read(cls, simulator_url: str, since: float) -> ConcurLoad:
        seen = httpx.get(f"{simulator_url}/_simulator/requests", timeout=30).json()
        during = [request for request in seen if request["at"] >= since]
        times = sorted(request["at"] for request in during)
        trim = len(times) // 20
        steady = times[trim : len(times) - trim]
        rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
        return cls(len(during), rate, sum(1 for request in during if request["status"] == 429))


@dataclass(frozen=True)
class E2EFigures:
    notifications: int
    workers: int
    latency_ms: int
    rate: float  # postbacks per second, 0: as fast as possible
    budget: float  # CONCUR_MAX_RPS, 0: none
    delivered: int  # distinct notifications that reached the sink
    lines: int  # lines in the sink (a redelivery would add one)
    seconds: float  # first postback to last event
    ingest_rate: float
    latencies: Distribution  # ack -> sink, ms
    worker_rss_mib: float
    usage: Usage  # from the idle deployment to the last event
    concur: ConcurLoad

    @property
    def pace(self) -> str:
        return f"at {self.rate:g}/s" if self.rate else "as fast as possible"

    @property
    def throughput(self) -> float:
        return self.delivered / self.seconds

    def per_notification(self, amount: float) -> float:
        return amount / self.notifications

    @property
    def cpu_ms(self) -> dict[str, float]:
        """CPU per notification by tier, in ms."""
        return {tier: self.per_notification(seconds) * 1000 for tier, seconds in self.usage.cpu.items()}

    @property
    def commands(self) -> float:
        """Redis commands per notification."""
        return self.per_notification(self.usage.commands)


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--notifications", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency-ms", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=32, help="postbacks in flight")
    parser.add_argument("--rate", type=float, default=0, help="postbacks per second (0: as fast as possible)")
    parser.add_argument("--budget", type=float, default=0, help="CONCUR_MAX_RPS, also at Concur (0: none)")
    parser.add_argument("--ess", action="store_true", help="ESS events instead of itinerary postbacks")
    return parser.parse_args(argv)


def plan(running: Deployment, args: argparse.Namespace) -> tuple[list[Request], str, int]:
    """What to post, where, and how many distinct events the sink will get."""
    if args.ess:
        planned = ess_events(running.simulator_url, args.notifications)
        url = running.postback_url.removesuffix("/postback") + "/events"
        return planned, url, len({body for _, body, _ in planned})  # redeliveries are one event
    return postbacks(running.simulator_url, args.notifications), running.postback_url, args.notifications


def run(args: argparse.Namespace) -> E2EFigures:
    simulator_args: tuple[str, ...] = ("--latency-ms", str(args.latency_ms))
    if args.budget:
        simulator_args += ("--max-rps", str(args.budget))
        limits = {"CONCUR_MAX_RPS": str(args.budget)}
    else:
        limits = {"CONCUR_MAX_RPS": "100000", "CONCUR_MAX_IN_FLIGHT": "256"}  # measure us, not a budget
    with deployment(workers=args.workers, simulator_args=simulator_args, ess=args.ess, **limits) as running:
        planned, url, expected = plan(running, args)
        # Follow the sink while posting: each line is timestamped when it appears.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            before = running.usage()
            following = pool.submit(follow, running.events, expected, 600)
            started = time.time()
            asyncio.run(fire(url, planned, args.concurrency, args.rate))
            acked = time.time()
            seen = following.result()
            usage = running.usage() - before
        rss = peak_rss_mib([w.pid for w in running.workers])
        concur = ConcurLoad.read(running.simulator_url, started)

    return E2EFigures(
        notifications=args.notifications,
        workers=args.workers,
        latency_ms=args.latency_ms,
        rate=args.rate,
        budget=args.budget,
        delivered=len({e["notification_id"] for _, e in seen}),
        lines=len(seen),
        seconds=(seen[-1][0] if seen else time.time()) - started,
        ingest_rate=args.notifications / (acked - started),
        latencies=Distribution.of(
            (t - datetime.fromisoformat(str(e["received_at"])).timestamp()) * 1000 for t, e in seen
        ),
        worker_rss_mib=rss,
        usage=usage,
        concur=concur,
    )


def describe(f: E2EFigures, ess: bool = False) -> str:
    what = "ESS events (every topic, every tenth redelivered)" if ess else "itinerary notifications"
    workers = f"{f.workers} worker process(es)"
    budget = f", CONCUR_MAX_RPS={f.budget:g}" if f.budget else ""
    return f"{f.notifications} {what} posted {f.pace}, {workers}, Concur latency {f.latency_ms} ms{budget}"


def top_commands(f: E2EFigures, count: int = 5) -> str:
    ranked = sorted(f.usage.by_command.items(), key=lambda item: -item[1])[:count]
    return ", ".join(f"{name} {f.per_notification(calls):.2f}" for name, calls in ranked)


def table(columns: dict[str, E2EFigures]) -> str:
    """One Markdown table, a column per run."""

    def row(label: str, cell: Callable[[E2EFigures], str]) -> str:
        return f"| {label} | " + " | ".join(cell(f) for f in columns.values()) + " |"

    def cpu(tier: str) -> Callable[[E2EFigures], str]:
        return lambda f: f"{f.cpu_ms[tier]:.2f} ms"

    tiers = next(iter(columns.values())).cpu_ms
    return "\n".join(
        [
            "| figure | " + " | ".join(columns) + " |",
            "|---|" + "---:|" * len(columns),
            row("delivered (distinct)", lambda f: f"{f.delivered} of {f.notifications} ({f.lines} lines)"),
            row("ingest rate", lambda f: f"{f.ingest_rate:,.0f} /s"),
            row("end-to-end throughput", lambda f: f"{f.throughput:,.0f} /s"),
            row(
                "latency ack -> sink p50 / p99 / max",
                lambda f: f"{ms(f.latencies.p50)} / {ms(f.latencies.p99)} / {ms(f.latencies.at(100))} ms",
            ),
            *(row(f"{tier} CPU per notification", cpu(tier)) for tier in tiers),
            row("Redis commands per notification", lambda f: f"{f.commands:.1f}"),
            row("Redis commands per notification, most frequent", top_commands),
            row(
                "Concur requests per notification, steady rate, 429s",
                lambda f: (
                    f"{f.per_notification(f.concur.requests):.2f}, {f.concur.rate:,.1f} /s,"
                    f" {f.concur.refused}"
                ),
            ),
            row("worker tier peak RSS", lambda f: f"{f.worker_rss_mib:,.0f} MiB"),
        ]
    )


def main() -> None:
    args = options()
    figures = run(args)
    print(f"e2e: {describe(figures, args.ess)}, {os.cpu_count()} CPUs\n")
    print(table({"value": figures}))
    print("\n" + distribution.table({"latency ack -> sink": figures.latencies}))
    print("\ntarget: >= 300 notifications/s end to end at 100 ms Concur latency, worker tier <= 1 GiB RSS")


if __name__ == "__main__":
    main()
