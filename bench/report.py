"""The performance report: freshness, cost, scale, the shared Concur budget, ingest and Redis memory, in
one run, against the targets.

    python bench/report.py [--quick] [--plot bench/freshness.png]

Prints Markdown to stdout: the machine it ran on, one line per headline figure with its target and
whether it was met, then the detailed tables: the ack -> sink distribution and the cost of the paced
runs (2 workers, Concur at 100 ms, 300/s and 30/s for 60 s each), the scale table (as fast as
possible with 1, 2 and 4 workers, without a Concur budget and with Concur's 67 requests/s), the
shared budget, ingest (postbacks and ESS events), Redis memory, and what the machine charges a
process per wake-up from idle (bench/wakeup.py), which the CPU figures at a quiet rate are mostly.
With matplotlib (the `bench` extra: `pip install -e '.[bench]'`) it writes the paced runs'
latencies to one PNG (`--plot`);
without, the report says it skipped the plot. README.md quotes the latest report. A full run takes
about 10 minutes; ``--quick`` (short rounds, fewer notifications) is for checking that the
benchmarks run, not for figures. Needs wrk on PATH for trustworthy ingest figures (`apt-get install
wrk`); see ingest.py. Progress, with each benchmark's duration, goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import ParamSpec, TypeVar

import budget
import distribution
import e2e
import ingest
import memory
import plot
import wakeup
from e2e import E2EFigures

from concur_postback.embedded import redis_server_binary

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
P = ParamSpec("P")
Row = tuple[str, str, str, str]  # figure, measured, target, verdict

INGEST_RATIO_TARGET = 0.30
INGEST_P99_TARGET_MS = 20.0
E2E_TARGET_PER_S = 300.0  # as fast as possible, 2 workers
WORKER_RSS_TARGET_MIB = 1024.0
FRESH_RATE, QUIET_RATE = 300.0, 30.0  # paced runs, postbacks per second, 60 s each
FRESH_P50_TARGET_MS, FRESH_P99_TARGET_MS, QUIET_P50_TARGET_MS = 150.0, 300.0, 120.0
FRESH_CPU_TARGET_MS, QUIET_CPU_TARGET_MS = 1.2, 2.5  # worker CPU per notification
SCALE_WORKERS = (1, 2, 4)


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )
    memory = next((line.split()[1] for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), "0")
    redis = subprocess.run([redis_server_binary(), "--version"], capture_output=True, text=True, check=False)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {int(memory) / 1024**2:.0f} GiB RAM; {platform.system()}"
        f" {platform.release()}; Python {platform.python_version()}; {redis.stdout.split(' sha')[0].strip()};"
        f" wrk {'yes' if shutil.which('wrk') else 'no'}; commit {commit.stdout.strip() or '?'};"
        f" {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def timed(label: str, measure: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``measure(*args)``, its duration on stderr: the full report is meant to stay under 12 min."""
    began = time.monotonic()
    print(f"  {label} ...", end="", file=sys.stderr, flush=True)
    result = measure(*args, **kwargs)
    print(f" {time.monotonic() - began:.0f} s", file=sys.stderr)
    return result


def at_most(value: float | None, target: float, f: E2EFigures) -> bool:
    """Met only if every notification arrived: a latency of the ones that did would flatter."""
    return value is not None and value <= target and f.delivered == f.notifications


def ms(value: float | None) -> str:
    return distribution.ms(value) + (" ms" if value is not None else "")


def scale_table(runs: list[E2EFigures]) -> str:
    """A row per run: what a deployment of that size delivers and what each tier spends on it."""
    lines = [
        "| workers | CONCUR_MAX_RPS | delivered /s | at Concur /s | 429s | CPU ms per notification: web"
        " | workers | Redis | simulator (not ours) | cores busy (ours) | Redis commands per notification |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in runs:
        cpu = f.cpu_ms
        ours = sum(seconds for tier, seconds in f.usage.cpu.items() if tier != "simulator")
        limit, used = (f"{f.budget:g}", f" ({f.concur.rate / f.budget:.0%})") if f.budget else ("none", "")
        lines.append(
            f"| {f.workers} | {limit} | {f.throughput:,.0f} | {f.concur.rate:,.1f}{used}"
            f" | {f.concur.refused} | {cpu['web tier']:.2f} | {cpu['worker tier']:.2f} | {cpu['Redis']:.2f}"
            f" | {cpu['simulator']:.2f} | {ours / f.seconds:.2f} | {f.commands:.1f} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Figures:
    fresh: E2EFigures  # paced at FRESH_RATE
    quiet: E2EFigures  # paced at QUIET_RATE
    scale: list[E2EFigures]  # as fast as possible, SCALE_WORKERS, no budget
    shared: list[E2EFigures]  # the same with Concur's budget
    postbacks: ingest.IngestFigures
    ess: ingest.IngestFigures
    kept: memory.MemoryFigures
    wakeup: wakeup.WakeupFigures  # what this machine charges per wake-up: read the CPU figures with it

    @property
    def paced(self) -> dict[str, E2EFigures]:
        return {f"{FRESH_RATE:g}/s": self.fresh, f"{QUIET_RATE:g}/s": self.quiet}


def measure(quick: bool) -> Figures:
    short = ["--duration", "2", "--rounds", "1"] if quick else []
    fresh_count, quiet_count = (300, 60) if quick else (18_000, 1_800)
    scale_count, budget_count = (300, 200) if quick else (3_000, 2_000)

    def e2e_run(*argv: str) -> E2EFigures:
        return e2e.run(e2e.options(list(argv)))

    def paced_run(rate: float, count: int) -> E2EFigures:
        return e2e_run("--rate", f"{rate:g}", "--notifications", str(count))

    def budget_run(workers: int) -> E2EFigures:
        return budget.run(budget.options(["--workers", str(workers), "--notifications", str(budget_count)]))

    def ingest_run(*argv: str) -> ingest.IngestFigures:
        return ingest.run(ingest.options([*short, *argv]))

    return Figures(
        fresh=timed(f"e2e at {FRESH_RATE:g}/s", paced_run, FRESH_RATE, fresh_count),
        quiet=timed(f"e2e at {QUIET_RATE:g}/s", paced_run, QUIET_RATE, quiet_count),
        scale=[
            timed(f"e2e, {n} worker(s)", e2e_run, "--workers", str(n), "--notifications", str(scale_count))
            for n in SCALE_WORKERS
        ],
        shared=[timed(f"budget, {n} worker(s)", budget_run, n) for n in SCALE_WORKERS],
        postbacks=timed("ingest, postbacks", ingest_run),
        ess=timed("ingest, ESS", ingest_run, "--kind", "ESS", *(["--ess-events", "2000"] if quick else [])),
        kept=timed("memory", memory.run, memory.options(["--notifications", "300"] if quick else [])),
        wakeup=timed("wake-up cost", wakeup.measure),
    )  # fmt: skip


def ingest_rows(name: str, f: ingest.IngestFigures) -> list[Row]:
    return [
        (f"ingest {name} req/s, serve / bare Starlette (32 connections)",
         f"{f.ours.rps:,.0f} / {f.bare.rps:,.0f} = {f.ratio:.2f}", f">= {INGEST_RATIO_TARGET:.2f}",
         verdict(f.ratio >= INGEST_RATIO_TARGET)),
        (f"ingest {name} ack latency p50 / p99", f"{f.ours.p50_ms:.1f} / {f.ours.p99_ms:.1f} ms",
         f"p99 <= {INGEST_P99_TARGET_MS:.0f} ms", verdict(f.ours.p99_ms <= INGEST_P99_TARGET_MS)),
    ]  # fmt: skip


def headline(f: Figures) -> list[Row]:
    fresh, quiet = f.fresh, f.quiet
    two = f.scale[SCALE_WORKERS.index(2)]
    rss = max(fresh.worker_rss_mib, quiet.worker_rss_mib, two.worker_rss_mib)
    cpu = (fresh.cpu_ms["worker tier"], quiet.cpu_ms["worker tier"])
    workers = " / ".join(map(str, SCALE_WORKERS))
    rates = f"{FRESH_RATE:g}/s / {QUIET_RATE:g}/s"
    return [
        (f"freshness at {FRESH_RATE:g}/s (2 workers, Concur at 100 ms): ack -> sink p50",
         ms(fresh.latencies.p50), f"<= {FRESH_P50_TARGET_MS:g} ms",
         verdict(at_most(fresh.latencies.p50, FRESH_P50_TARGET_MS, fresh))),
        (f"freshness at {FRESH_RATE:g}/s: ack -> sink p99", ms(fresh.latencies.p99),
         f"<= {FRESH_P99_TARGET_MS:g} ms", verdict(at_most(fresh.latencies.p99, FRESH_P99_TARGET_MS, fresh))),
        (f"freshness at {QUIET_RATE:g}/s (a quiet hour): ack -> sink p50", ms(quiet.latencies.p50),
         f"<= {QUIET_P50_TARGET_MS:g} ms", verdict(at_most(quiet.latencies.p50, QUIET_P50_TARGET_MS, quiet))),
        (f"worker CPU per notification at {FRESH_RATE:g}/s (idle polling in, start-up out)",
         f"{cpu[0]:.2f} ms", f"<= {FRESH_CPU_TARGET_MS:g} ms", verdict(cpu[0] <= FRESH_CPU_TARGET_MS)),
        (f"worker CPU per notification at {QUIET_RATE:g}/s", f"{cpu[1]:.2f} ms",
         f"<= {QUIET_CPU_TARGET_MS:g} ms", verdict(cpu[1] <= QUIET_CPU_TARGET_MS)),
        (f"Redis commands per notification at {rates}",
         f"{fresh.commands:.1f} / {quiet.commands:.1f}", "", ""),
        (f"Redis CPU per notification at {rates}",
         f"{fresh.cpu_ms['Redis']:.2f} / {quiet.cpu_ms['Redis']:.2f} ms", "", ""),
        *ingest_rows("postbacks", f.postbacks),
        *ingest_rows("ESS events", f.ess),
        (f"scale, as fast as possible with {workers} workers: delivered",
         " / ".join(f"{run.throughput:,.0f}" for run in f.scale) + " /s",
         f">= {E2E_TARGET_PER_S:.0f} /s with 2",
         verdict(two.throughput >= E2E_TARGET_PER_S and two.delivered == two.notifications)),
        (f"shared Concur budget of {budget.CONCUR_LIMIT_RPS:g}/s, {workers} workers: rate at Concur; 429s",
         " / ".join(f"{run.concur.rate:.1f}" for run in f.shared) + " /s; "
         + " / ".join(str(run.concur.refused) for run in f.shared),
         f"+/-{budget.TOLERANCE:.0%}; none", verdict(all(map(budget.met, f.shared)))),
        ("worker tier peak RSS (2 processes)", f"{rss:,.0f} MiB", f"<= {WORKER_RSS_TARGET_MIB:,.0f} MiB",
         verdict(rss <= WORKER_RSS_TARGET_MIB)),
        ("Redis data kept per notification after processing (dedup keys)",
         f"{f.kept.dataset_per_notification(f.kept.settled):,.0f} B", "", ""),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs: checks the benchmarks work")
    parser.add_argument("--plot", type=Path, default=ROOT / "bench" / "freshness.png", help="PNG to write")
    args = parser.parse_args()
    print(f"benchmarking ({'quick run, 3' if args.quick else 'full run, 10'} minutes) ...", file=sys.stderr)
    f = measure(args.quick)
    targets = [
        (f"{FRESH_RATE:g}/s", f"p50 <= {FRESH_P50_TARGET_MS:g} ms", FRESH_P50_TARGET_MS, 0.50),
        (f"{FRESH_RATE:g}/s", f"p99 <= {FRESH_P99_TARGET_MS:g} ms", FRESH_P99_TARGET_MS, 0.99),
        (f"{QUIET_RATE:g}/s", f"p50 <= {QUIET_P50_TARGET_MS:g} ms", QUIET_P50_TARGET_MS, 0.50),
    ]
    plotted = plot.freshness({label: run.latencies for label, run in f.paced.items()}, targets, args.plot)

    print("# concur-postback performance report\n")
    print(f"Machine: {machine()}\n\n{f.wakeup.line()} (bench/wakeup.py)\n")
    if args.quick:
        print("**Quick run: these figures only show that the benchmarks work.**\n")
    print("| figure | measured | target | |\n|---|---:|---|---|")
    for row in headline(f):
        print("| " + " | ".join(row) + " |")
    print("\n## Freshness: ack -> sink, paced\n")
    print("\n".join(f"- {label}: {e2e.describe(run)}" for label, run in f.paced.items()))
    print(f"\n{distribution.table({label: run.latencies for label, run in f.paced.items()})}")
    print(f"\nPlot: {plotted}\n\nCost, from the idle deployment to the last event:\n\n{e2e.table(f.paced)}")
    print("\n## Scale: itinerary notifications as fast as possible, Concur at 100 ms\n")
    print(scale_table([*f.scale, *f.shared]))
    print(f"\n## Shared budget: {budget.describe(f.shared[0])}\n\n{budget.table(f.shared)}")
    for name, figures in (("postbacks", f.postbacks), ("ESS events", f.ess)):
        print(f"\n## Ingest, {name}\n\n{figures.settings}\n\n{ingest.table(figures)}")
    print(f"\n## Redis memory: {memory.describe(f.kept)}\n\n{memory.table(f.kept)}")


if __name__ == "__main__":
    main()
