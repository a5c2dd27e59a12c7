"""The shared Concur budget: several workers together keep to CONCUR_MAX_RPS, as measured at Concur.

    python bench/budget.py [--workers 4] [--budget 60] [--notifications 2400]

Starts a deployment (bench/deployment.py) whose simulated Concur answers 429 above the budget (a token
bucket holding a tenth of a second's worth, `simulate --max-rps`) and N workers sharing CONCUR_MAX_RPS
through Redis, posts distinct itinerary notifications as fast as they are taken, and reads the
simulator's own request log: the request rate it saw once the run was under way (the first and last
5 % of requests left out), and how many requests it refused with 429 (self-inflicted: nothing else
sends to it).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import httpx
from deployment import deployment, follow
from e2e import fire, postbacks

TOLERANCE = 0.10


@dataclass(frozen=True)
class BudgetFigures:
    workers: int
    budget: float
    latency_ms: int
    notifications: int
    delivered: int
    requests: int
    rate: float  # requests per second at Concur, steady part
    refused: int  # answered 429

    @property
    def met(self) -> bool:
        return abs(self.rate / self.budget - 1) <= TOLERANCE and self.refused == 0


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget", type=float, default=60, help="CONCUR_MAX_RPS, requests/s")
    parser.add_argument("--notifications", type=int, default=2400)
    parser.add_argument("--latency-ms", type=int, default=100)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> BudgetFigures:
    simulator_args = ("--latency-ms", str(args.latency_ms), "--max-rps", str(args.budget))
    with deployment(
        workers=args.workers, simulator_args=simulator_args, CONCUR_MAX_RPS=str(args.budget)
    ) as running:
        planned = postbacks(running.simulator_url, args.notifications)
        asyncio.run(fire(running.postback_url, planned, 32, 0))
        seen = follow(running.events, args.notifications, 600)
        requests = httpx.get(f"{running.simulator_url}/_simulator/requests", timeout=30).json()
    times = sorted(request["at"] for request in requests)
    trim = len(times) // 20
    steady = times[trim : len(times) - trim]
    return BudgetFigures(
        workers=args.workers,
        budget=args.budget,
        latency_ms=args.latency_ms,
        notifications=args.notifications,
        delivered=len({event["notification_id"] for _, event in seen}),
        requests=len(requests),
        rate=(len(steady) - 1) / (steady[-1] - steady[0]),
        refused=sum(1 for request in requests if request["status"] == 429),
    )


def describe(f: BudgetFigures) -> str:
    return f"{f.workers} workers sharing CONCUR_MAX_RPS={f.budget:g}, Concur at {f.latency_ms} ms"


def table(f: BudgetFigures) -> str:
    off = (f.rate / f.budget - 1) * 100
    return "\n".join(
        [
            "| figure | value |",
            "|---|---:|",
            f"| delivered | {f.delivered} of {f.notifications} |",
            f"| requests seen by Concur | {f.requests:,} |",
            f"| request rate at Concur (steady part) | {f.rate:.1f} /s ({off:+.1f} %) |",
            f"| answered 429 (above the budget) | {f.refused} |",
        ]
    )


def main() -> None:
    figures = run(options())
    print(f"budget: {describe(figures)}\n")
    print(table(figures))
    print(f"\ntarget: the budget within +/-{TOLERANCE:.0%}, no 429")


if __name__ == "__main__":
    main()
