"""Timing of the secret path check: does a wrong secret's answer take longer the more of it is right?

    python bench/secret_timing.py [--rounds 200000]

Calls the postback endpoint (the ASGI callable, no network, no Redis: a wrong secret is answered
before either is touched) with wrong secrets that share 0, half, or all but the last of the
secret's characters, or differ in length, interleaved so that drift affects all alike, and prints
the median and p10/p90 nanoseconds per call of each. `hmac.compare_digest` makes them equal up to
noise; tests/security/test_secret_path.py checks that it is what decides (tests assert no timings).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis
from starlette.types import Message, Scope

from concur_postback.config import load_settings
from concur_postback.service.committer import Committer
from concur_postback.service.postback import PostbackEndpoint
from concur_postback.tokens import generate_key, vault_from_settings

SECRET = "s3cr3t-Path-0123456789abcdefXYZ-" + "k" * 32


def candidates() -> dict[str, str]:
    half = len(SECRET) // 2
    return {
        "no common prefix": "X" + SECRET[1:],
        "half right": SECRET[:half] + "X" + SECRET[half + 1 :],
        "all but the last": SECRET[:-1] + "X",
        "one shorter": SECRET[:-1],
        "one longer": SECRET + "X",
        "empty": "",
    }


async def measure(rounds: int) -> dict[str, list[float]]:
    redis_url = "redis://127.0.0.1:1/0"  # never connected to: a wrong secret is answered before Redis
    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(
            redis_url=redis_url,
            token_encryption_key=generate_key(),
            data_dir=Path(data_dir),
            postback_secret=SECRET,
        )
        endpoint = PostbackEndpoint(
            settings, vault_from_settings(settings), Committer(Redis.from_url(redis_url), settings)
        )

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    def wrong_secret(wrong: str) -> Scope:
        path = f"/postback/{wrong}"
        return {"type": "http", "method": "POST", "path": path, "headers": [], "query_string": b""}

    scopes = {name: wrong_secret(wrong) for name, wrong in candidates().items()}
    samples: dict[str, list[float]] = {name: [] for name in scopes}
    for _ in range(rounds):
        for name, scope in scopes.items():
            started = time.perf_counter_ns()
            await endpoint(scope, receive, send)
            samples[name].append(time.perf_counter_ns() - started)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    args = parser.parse_args()
    samples = asyncio.run(measure(args.rounds))
    print(f"| wrong secret ({len(SECRET)} characters) | median ns | p10 ns | p90 ns |")
    print("|---|---:|---:|---:|")
    for name, values in samples.items():
        deciles = statistics.quantiles(values, n=10)
        print(f"| {name} | {statistics.median(values):,.0f} | {deciles[0]:,.0f} | {deciles[-1]:,.0f} |")


if __name__ == "__main__":
    main()
