"""The freshness plot bench/report.py writes: the ack -> sink latency of the paced runs, in one PNG.

Needs matplotlib, the optional `bench` extra (`pip install -e '.[bench]'`); without it the report
says the plot was skipped and why. Two panels: the CDF, where the p50 targets are read, and the
fraction slower than a latency on a log scale, where the p99 target and the tail are visible.
"""

from __future__ import annotations

from pathlib import Path

from distribution import Distribution

try:
    from matplotlib.figure import Figure  # type: ignore[import-not-found, unused-ignore]

    MISSING: str | None = None
except ImportError:
    MISSING = "matplotlib is not installed (pip install -e '.[bench]')"

TICKS_MS = (50, 100, 150, 200, 300, 500, 1000, 2000, 5000)
Target = tuple[str, str, float, float]  # run, label, latency (ms), the fraction at most that slow


def freshness(runs: dict[str, Distribution], targets: list[Target], path: Path) -> str:
    """Write the plot to ``path``; what the report says about it."""
    if MISSING is not None:
        return f"skipped: {MISSING}"
    plotted = {label: d for label, d in runs.items() if len(d)}
    if not plotted:
        return "skipped: no latencies measured"
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    cdf, tail = figure.subplots(1, 2)
    colors: dict[str, str] = {}
    for label, d in plotted.items():
        fractions = [(n + 1) / len(d) for n in range(len(d))]
        line = cdf.step(d.values, fractions, where="post", label=f"{label} (n={len(d):,})")[0]
        slower = [1 - f + 1 / len(d) for f in fractions]  # never 0: the slowest still shows on a log scale
        tail.step(d.values, slower, where="post", color=line.get_color())
        colors[label] = line.get_color()
    for run, label, ms, fraction in targets:
        marker = {"marker": "x", "color": colors.get(run, "black"), "markersize": 9, "mew": 2, "ls": ""}
        cdf.plot([ms], [fraction], label=f"target {run} {label}", **marker)
        tail.plot([ms], [1 - fraction], **marker)
    low = min(d.values[0] for d in plotted.values()) * 0.9
    high = max([*(d.values[-1] for d in plotted.values()), *(t[2] for t in targets)]) * 1.2
    ticks = [tick for tick in TICKS_MS if low <= tick <= high]
    for axes in (cdf, tail):
        axes.set_xscale("log")
        axes.set_xlim(low, high)
        axes.set_xticks(ticks, labels=[str(tick) for tick in ticks])
        axes.minorticks_off()
        axes.set_xlabel("ack -> sink latency (ms)")
        axes.grid(True, alpha=0.3)
    cdf.set_ylabel("fraction of notifications at most this slow")
    tail.set_yscale("log")
    tail.set_ylabel("fraction slower")
    cdf.legend(loc="lower right", fontsize=8)
    figure.suptitle("Freshness: paced runs, 2 workers, Concur at 100 ms (x: the targets)")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return f"written to {path}"
