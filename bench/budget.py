"""The shared Concur budget: several workers together keep to CONCUR_MAX_RPS, as measured at Concur.

    python bench/budget.py [--workers 4] [--budget 67] [--notifications 2400]

Runs bench/e2e.py with `--budget`: a deployment whose simulated Concur answers 429 above the budget (a
token bucket holding a tenth of a second's worth, `simulate --max-rps`) and N workers sharing
CONCUR_MAX_RPS through Redis; posts distinct itinerary notifications as fast as they are taken and
reads the simulator's own request log: the request rate it saw once the run was under way (the first
and last 5 % of requests left out), and how many requests it refused with 429 (self-inflicted: nothing
else sends to it). The default budget is Concur's documented limit, 4,000 requests a minute.
"""

from __future__ import annotations

import argparse

import e2e
from e2e import E2EFigures

TOLERANCE = 0.10
CONCUR_LIMIT_RPS = 67.0  # 4,000 requests a minute


def met(f: E2EFigures) -> bool:
    return abs(f.concur.rate / f.budget - 1) <= TOLERANCE and f.concur.refused == 0


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget", type=float, default=CONCUR_LIMIT_RPS, help="CONCUR_MAX_RPS, requests/s")
    parser.add_argument("--notifications", type=int, default=2400)
    parser.add_argument("--latency-ms", type=int, default=100)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> E2EFigures:
    """e2e.py's run with its defaults, and these options (all of them e2e.py's too)."""
    return e2e.run(argparse.Namespace(**{**vars(e2e.options([])), **vars(args)}))


def describe(f: E2EFigures) -> str:
    return f"workers sharing CONCUR_MAX_RPS={f.budget:g}, Concur at {f.latency_ms} ms"


def table(runs: list[E2EFigures]) -> str:
    """A row per run."""
    lines = [
        "| workers | delivered | requests seen by Concur | rate at Concur (steady part) | answered 429 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for f in runs:
        off = (f.concur.rate / f.budget - 1) * 100
        lines.append(
            f"| {f.workers} | {f.delivered} of {f.notifications} | {f.concur.requests:,}"
            f" | {f.concur.rate:.1f} /s ({off:+.1f} %) | {f.concur.refused} |"
        )
    return "\n".join(lines)


def main() -> None:
    figures = run(options())
    print(f"budget: {figures.workers} {describe(figures)}\n")
    print(table([figures]))
    print(f"\ntarget: the budget within +/-{TOLERANCE:.0%}, no 429")


if __name__ == "__main__":
    main()
