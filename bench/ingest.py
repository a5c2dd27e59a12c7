"""Ingest benchmark: ack throughput and latency of `serve` against a bare Starlette app, same load.

    python bench/ingest.py [--duration 10] [--connections 32] [--kind itinerary]

Both servers run under one uvicorn worker on this machine, measured in alternating rounds (the median
of each is reported: these machines are noisy, so the ratio within one run is what counts). The
load comes from wrk when it is on
PATH (a Lua script gives every request a distinct token, so dedup never short-circuits), otherwise
from a small asyncio client in this file (noisier: it competes with the server for the CPU). Redis is
the server at REDIS_URL, or an embedded one with AOF on (appendfsync everysec), as `run` uses.
Prints req/s, p50/p99 latency and the ratio ours / bare, as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.tokens import generate_key

BODY = (
    Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "itinerary_notification.xml"
).read_bytes()
BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def postback(request):
    await request.body()
    return Response(b'{"status":"accepted"}', media_type="application/json")

app = Starlette(routes=[Route("/postback", postback, methods=["POST"])])
"""
WRK_SCRIPT = """
local counter = 0
local prefix = "0"
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("prefix", tostring(thread_count) .. "-" .. tostring(os.time()))
end
wrk.method = "POST"
wrk.body = [==[BODY]==]
wrk.headers["Content-Type"] = "application/xml"
function request()
  counter = counter + 1
  local path = "/postback?type=KIND&oauth_token_key=bench-" .. prefix .. "-" .. counter
  return wrk.format(nil, path)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.3f %.3f %d\\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass(frozen=True)
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def median_result(results: list[Result]) -> Result:
    """Median of each figure across rounds; errors are summed."""
    return Result(
        results[0].name,
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.errors for r in results),
    )


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("server did not start listening")


def run_wrk(
    url: str, kind: str, duration: int, connections: int, workdir: Path
) -> tuple[float, float, float, int]:
    script = workdir / "postback.lua"
    script.write_text(WRK_SCRIPT.replace("BODY", BODY.decode()).replace("KIND", kind))
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)", output)
    if match is None:
        raise RuntimeError(output)
    requests, micros, p50, p99, errors = match.groups()
    return int(requests) / (int(micros) / 1e6), float(p50), float(p99), int(errors)


async def _python_load(
    host: str, port: int, kind: str, duration: float, connections: int
) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration

    async def one_connection(index: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        n = 0
        while time.perf_counter() < deadline:
            n += 1
            path = f"/postback?type={kind}&oauth_token_key=bench-{index}-{n}-{time.time_ns()}"
            head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
            started = time.perf_counter()
            writer.write(head + BODY)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            errors += not status_line.startswith(b"HTTP/1.1 200")
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_connection(i) for i in range(connections)))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, quantiles[49] * 1000, quantiles[98] * 1000, errors


def measure(
    name: str, command: list[str], env: dict[str, str], args: argparse.Namespace, workdir: Path
) -> Result:
    port = free_port()
    log = (workdir / f"{name}.log").open("wb")
    process = subprocess.Popen([*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, process)
        url = f"http://127.0.0.1:{port}"
        if shutil.which("wrk") and not args.python_client:
            run_wrk(url, args.kind, 2, args.connections, workdir)  # warm-up
            rps, p50, p99, errors = run_wrk(url, args.kind, args.duration, args.connections, workdir)
        else:
            asyncio.run(_python_load("127.0.0.1", port, args.kind, 2, args.connections))
            rps, p50, p99, errors = asyncio.run(
                _python_load("127.0.0.1", port, args.kind, args.duration, args.connections)
            )
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    return Result(name, rps, p50, p99, errors)


@dataclass(frozen=True)
class IngestFigures:
    bare: Result
    ours: Result
    rounds: dict[str, list[Result]]
    settings: str  # how it was measured, one line

    @property
    def ratio(self) -> float:
        return self.ours.rps / self.bare.rps


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements of each server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--kind", default="Itinerary", choices=["Itinerary", "Profile", "FOP"])
    parser.add_argument("--python-client", action="store_true", help="use the asyncio client even with wrk")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> IngestFigures:
    python = sys.executable
    servers = {
        "bare starlette": [
            python,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        "concur-postback serve": [python, "-m", "concur_postback.cli", "serve", "--host", "127.0.0.1"],
    }
    rounds: dict[str, list[Result]] = {name: [] for name in servers}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        workdir = Path(tmp)
        (workdir / "bare_app.py").write_text(BARE_APP)
        embedded = None if os.environ.get("REDIS_URL") else EmbeddedRedis(workdir / "redis").start()
        env = dict(os.environ, PYTHONPATH=str(workdir), TOKEN_ENCRYPTION_KEY=generate_key(), LOG_LEVEL="INFO")
        if embedded is not None:
            env["REDIS_URL"] = embedded.url
        try:
            for _ in range(args.rounds):
                for name, command in servers.items():
                    rounds[name].append(measure(name, command, env, args, workdir))
        finally:
            if embedded is not None:
                embedded.stop()

    bare, ours = (median_result(results) for results in rounds.values())
    client = "wrk" if shutil.which("wrk") and not args.python_client else "asyncio client"
    redis = "REDIS_URL" if embedded is None else "embedded (AOF everysec)"
    settings = (
        f"{args.kind} postbacks, {args.connections} connections, {args.rounds} x {args.duration} s, {client},"
        f" one uvicorn worker each, redis {redis}"
    )
    return IngestFigures(bare, ours, rounds, settings)


def table(figures: IngestFigures) -> str:
    lines = [
        "| server | req/s (median) | p50 ms | p99 ms | errors | req/s per round |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for result in (figures.bare, figures.ours):
        each = ", ".join(f"{r.rps:,.0f}" for r in figures.rounds[result.name])
        lines.append(
            f"| {result.name} | {result.rps:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f}"
            f" | {result.errors} | {each} |"
        )
    return "\n".join(lines)


def main() -> None:
    figures = run(options())
    print(f"ingest: {figures.settings}, {os.cpu_count()} CPUs\n")
    print(table(figures))
    print(f"\nratio ours / bare: {figures.ratio:.2f} (target >= 0.30 with p99 <= 20 ms)")


if __name__ == "__main__":
    main()
