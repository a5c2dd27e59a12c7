"""End-to-end benchmark: postback to sink, through real processes, with Concur simulated at 100 ms.

    python bench/e2e.py [--notifications 3000] [--workers 2] [--latency-ms 100]

Starts an embedded Redis (AOF on) unless REDIS_URL is set, the simulator, `serve` and N `worker`
processes writing to a file sink; posts N distinct itinerary notifications (32 at a time), then
follows the sink file. Prints throughput (first postback to last event), p50/p99 latency from the
acknowledgement (the event's received_at) to the line appearing in the file, and the worker tier's
peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import aiohttp
import orjson

from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.tokens import generate_key

CLI = [sys.executable, "-m", "concur_postback.cli"]


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def peak_rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
    return total / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def notification(base: str, trip: str) -> bytes:
    return (
        f"<Notification><ObjectType>ITINERARY</ObjectType><ObjectURI>{base}/api/travel/trip/v1.1/{trip}"
        f"</ObjectURI><EventDateTime>2026-11-22T10:00:00</EventDateTime><EventType>UPDATE</EventType>"
        f"<TripId>{trip}</TripId></Notification>"
    ).encode()


async def fire(url: str, simulator: str, count: int, concurrency: int, rate: float) -> None:
    """Post the notifications with aiohttp (a Python client that keeps up with the service),
    as fast as possible or at ``rate`` per second (notification n leaves at ``n / rate`` s)."""
    began = time.monotonic()
    async with aiohttp.ClientSession() as session:
        pending = iter(range(count))

        async def sender() -> None:
            for n in pending:
                if rate > 0 and (wait := began + n / rate - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                params = {"type": "Itinerary", "oauth_token_key": f"bench-token-{n:08d}"}
                body = notification(simulator, f"BENCH{n:08d}")
                async with session.post(url, params=params, data=body) as response:
                    response.raise_for_status()

        await asyncio.gather(*(sender() for _ in range(concurrency)))


def follow(path: Path, count: int, timeout: float) -> list[tuple[float, dict[str, object]]]:
    seen: list[tuple[float, dict[str, object]]] = []
    deadline = time.time() + timeout
    offset = 0
    buffer = b""
    while len(seen) < count and time.time() < deadline:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
        offset += len(chunk)
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        now = time.time()
        seen.extend((now, orjson.loads(line)) for line in lines if line)
        time.sleep(0.02)
    return seen


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
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> E2EFigures:
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        workdir = Path(tmp)
        events = workdir / "events.jsonl"
        events.touch()
        embedded = None if os.environ.get("REDIS_URL") else EmbeddedRedis(workdir / "redis").start()
        sim_port, web_port = free_port(), free_port()
        simulator = f"http://127.0.0.1:{sim_port}"
        env = dict(
            os.environ,
            TOKEN_ENCRYPTION_KEY=generate_key(),
            CONCUR_BASE_URL=simulator,
            SINKS=f"file://{events}",
            CONCUR_MAX_RPS="100000",
            CONCUR_MAX_IN_FLIGHT="256",
            LOG_LEVEL="WARNING",
        )
        if embedded is not None:
            env["REDIS_URL"] = embedded.url
        log = (workdir / "processes.log").open("wb")

        def spawn(*command: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen([*CLI, *command], env=env, stdout=log, stderr=subprocess.STDOUT)

        processes = [spawn("simulate", "--port", str(sim_port), "--latency-ms", str(args.latency_ms))]
        processes.append(spawn("serve", "--host", "127.0.0.1", "--port", str(web_port)))
        workers = [spawn("worker") for _ in range(args.workers)]
        try:
            wait_listening(sim_port)
            wait_listening(web_port)
            # Follow the sink while posting: each line is timestamped when it appears.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                following = pool.submit(follow, events, args.notifications, 600)
                started = time.time()
                url = f"http://127.0.0.1:{web_port}/postback"
                asyncio.run(fire(url, simulator, args.notifications, args.concurrency, args.rate))
                acked = time.time()
                seen = following.result()
            rss = peak_rss_mib([w.pid for w in workers])
            cpu = {
                "worker tier": sum(cpu_seconds(w.pid) for w in workers),
                "simulator": cpu_seconds(processes[0].pid),
                "web tier": cpu_seconds(processes[1].pid),
            }
        finally:
            for process in [*workers, *processes]:
                process.terminate()
            for process in [*workers, *processes]:
                process.wait(60)
            if embedded is not None:
                embedded.stop()
            log.close()

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


def describe(f: E2EFigures) -> str:
    return (
        f"{f.notifications} itinerary notifications posted {f.pace}, {f.workers} worker process(es),"
        f" Concur latency {f.latency_ms} ms"
    )


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
    figures = run(options())
    print(f"e2e: {describe(figures)}, {os.cpu_count()} CPUs\n")
    print(table(figures))
    print("\ntarget: >= 300 notifications/s end to end at 100 ms Concur latency, worker tier <= 1 GiB RSS")


if __name__ == "__main__":
    main()
