"""A latency distribution as the benchmarks report it: percentiles, the maximum and counts per bucket.

One helper for every benchmark, so that a p99 means the same thing in e2e.py, ingest.py and the
report: the nearest-rank percentile (a value that was measured, never an interpolation).
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
BUCKET_EDGES_MS = (100, 120, 150, 200, 300, 500, 1000, 2000)  # the freshness targets are edges


def percentile(ordered: list[float] | tuple[float, ...], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ``ordered`` (sorted, not empty)."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Distribution:
    values: tuple[float, ...]  # sorted

    @classmethod
    def of(cls, values: Iterable[float]) -> Distribution:
        return cls(tuple(sorted(values)))

    def __len__(self) -> int:
        return len(self.values)

    def at(self, p: float) -> float | None:
        return percentile(self.values, p) if self.values else None

    @property
    def p50(self) -> float | None:
        return self.at(50)

    @property
    def p99(self) -> float | None:
        return self.at(99)

    def buckets(self) -> list[tuple[str, int]]:
        """How many values fall in each bucket: ``< 100``, ``100-120``, ..., ``>= 2000``."""
        edges = [-math.inf, *BUCKET_EDGES_MS, math.inf]
        counts = []
        for low, high in itertools.pairwise(edges):
            label = f"< {high}" if low == -math.inf else f">= {low}" if high == math.inf else f"{low}-{high}"
            counts.append((label, bisect_left(self.values, high) - bisect_left(self.values, low)))
        return counts


def ms(value: float | None) -> str:
    """A latency in whole milliseconds, ``-`` when none was measured."""
    return "-" if value is None else f"{value:,.0f}"


def table(columns: dict[str, Distribution], unit: str = "ms") -> str:
    """One Markdown table, a column per distribution: count, percentiles, max, then the buckets."""
    names = list(columns)
    rows = [
        "| " + " | ".join(["", *names]) + " |",
        "|---|" + "---:|" * len(names),
        "| count | " + " | ".join(f"{len(d):,}" for d in columns.values()) + " |",
    ]
    for p in PERCENTILES:
        rows.append(f"| p{p:g} ({unit}) | " + " | ".join(ms(d.at(p)) for d in columns.values()) + " |")
    maxima = (d.values[-1] if d.values else None for d in columns.values())
    rows.append(f"| max ({unit}) | " + " | ".join(ms(m) for m in maxima) + " |")
    counted = [d.buckets() for d in columns.values()]
    for index, (label, _) in enumerate(counted[0]):
        cells = []
        for d, buckets in zip(columns.values(), counted, strict=True):
            count = buckets[index][1]
            cells.append(f"{count:,} ({count / len(d):.1%})" if len(d) else "-")
        rows.append(f"| {label} {unit} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
