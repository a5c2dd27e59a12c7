"""The card-number rule's false positives on digits that are no card numbers, and what reading costs.

    python bench/redaction.py [--samples 100000]

False positives: the share of random digit strings the rule masks, by how they are written: bare
runs of 13-19 digits (Luhn passes one in ten by chance), the same split by single spaces or dashes,
13-digit IATA ticket numbers, and longer numbers printed in fours, where every 16-digit span of
four groups is a candidate card number (which is how a card beside other digits is caught). Reading: CPU
per document for the simulator's trip, profile and FOP, and per string for the rule alone.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from pathlib import Path

from concur_postback.concur.fop import parse_fop
from concur_postback.concur.profiles import parse_profile
from concur_postback.concur.redaction import scrub_card_numbers
from concur_postback.concur.trips import parse_trip

DATA = Path(__file__).resolve().parents[1] / "concur_postback" / "simulator" / "data"


def bare(rng: random.Random) -> str:
    return "".join(rng.choices("0123456789", k=rng.randint(13, 19)))


def grouped(rng: random.Random) -> str:
    digits = bare(rng)
    return digits[0] + "".join(rng.choice(["", "", " ", "-"]) + d for d in digits[1:])


def ticket(rng: random.Random) -> str:
    return "".join(rng.choices("0123456789", k=13))


def in_fours(groups: int) -> Callable[[random.Random], str]:
    """Digits printed in fours, as cards are, but longer: account and reference numbers (IBAN-like)."""
    return lambda rng: " ".join("".join(rng.choices("0123456789", k=4)) for _ in range(groups))


def masked_share(make: Callable[[random.Random], str], samples: int, seed: int = 7) -> float:
    rng = random.Random(seed)
    hits = sum(scrub_card_numbers(f"ref {text}.") != f"ref {text}." for text in map(make, [rng] * samples))
    return hits / samples


def cpu_us(function: Callable[[], object], seconds: float = 1.0) -> float:
    runs, started = 0, time.process_time()
    while time.process_time() - started < seconds:
        function()
        runs += 1
    return (time.process_time() - started) / runs * 1e6


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--samples", type=int, default=100_000)
    args = parser.parse_args()

    print("| digits that are no card numbers | masked |\n|---|---|")
    for label, make in (
        ("bare runs of 13-19 random digits", bare),
        ("the same, split by single spaces or dashes", grouped),
        ("13-digit ticket numbers", ticket),
        ("five groups of four (20 digits)", in_fours(5)),
        ("six groups of four (24 digits)", in_fours(6)),
    ):
        print(f"| {label} | {masked_share(make, args.samples):.1%} |")

    trip = (DATA / "trip.xml").read_bytes().replace(b"{{TRIP_ID}}", b"T1").replace(b"{{LOGIN_ID}}", b"a@b.c")
    profile = (DATA / "profile_v2.xml").read_bytes().replace(b"{{LOGIN_ID}}", b"a@b.c")
    fop = (DATA / "fop.xml").read_bytes().replace(b"{{LOGIN_ID}}", b"a@b.c")
    remark = "guarantee 4111 1111 1111 1111, ticket 0167423874521, call +44 20 7946 0958"
    print("\n| reading | CPU |\n|---|---|")
    print(f"| trip ({len(trip):,} bytes) | {cpu_us(lambda: parse_trip(trip)):.0f} us |")
    print(f"| profile v2 ({len(profile):,} bytes) | {cpu_us(lambda: parse_profile(profile)):.0f} us |")
    print(f"| form of payment ({len(fop):,} bytes) | {cpu_us(lambda: parse_fop(fop)):.0f} us |")
    rule = cpu_us(lambda: scrub_card_numbers(remark))
    print(f"| the rule on a {len(remark)}-character remark | {rule:.1f} us |")
    print(f"| the rule on a word | {cpu_us(lambda: scrub_card_numbers('Seattle-Tacoma')):.2f} us |")


if __name__ == "__main__":
    main()
