"""Ingest benchmark: ack throughput and latency of `serve` against a bare Starlette app, same load.

    python bench/ingest.py [--duration 10] [--connections 32] [--kind Itinerary|Profile|FOP|ESS]

Both servers run under one uvicorn worker on this machine, measured in alternating rounds (the median
of each is reported: these machines are noisy, so the ratio within one run is what counts). The
load comes from wrk when it is on
PATH (a Lua script gives every request a distinct token, so dedup never short-circuits), otherwise
from a small asyncio client in this file (noisier: it competes with the server for the CPU). Redis is
the server at REDIS_URL, or an embedded one with AOF on (appendfsync everysec), as `run` uses.
Prints req/s, p50/p99 latency and the ratio ours / bare, as a Markdown table.

`--kind ESS` posts ESS events to `/events` instead, each signed (RSA-2048, PSS, the size of Concur's
keys) so that `serve` verifies every one: `--ess-events` distinct events are signed before the run
and sent in turn (the bare app reads the same bodies); once they are used up, repeats are redeliveries
(duplicates), which cost the same verification and a dedup hit.
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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from distribution import percentile

from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.simulator.ess import EssSigner
from concur_postback.tokens import generate_key

ESS = "ESS"
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

app = Starlette(routes=[Route(path, postback, methods=["POST"]) for path in ("/postback", "/events")])
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

WRK_ESS_SCRIPT = """
local events = dofile("EVENTS_FILE")
local counter = 0
local offset = 0
local thread_count = 0
function setup(thread)
  thread_count = thread_count + 1
  thread:set("offset", thread_count)
end
function request()
  counter = counter + 1
  local event = events[((counter * 2 + offset) % #events) + 1]
  local headers = {["Content-Type"] = "application/json", ["Concur-Signature"] = event[2]}
  return wrk.format("POST", "/events", headers, event[1])
end
""" + WRK_SCRIPT[WRK_SCRIPT.index("function done") :]
ESS_EVENT = (
    '{"id": "bench-%d", "correlationId": "c-%d", "eventType": "ItineraryUpdated",'
    ' "topic": "public.concur.travel.itinerary", "timeStamp": "2026-11-30T10:00:00.000Z",'
    ' "facts": {"id": "trip-%d", "userId": "0723e5bb-1e24-4311-8388-748975ec56a3",'
    ' "companyId": "6e2a6001-0b51-4c18-af0a-a86c3fb7874f",'
    ' "hrefs": {"v4": "https://us.api.concursolutions.com/travel/v4/trips/trip-%d"}}}'
)


def _sign_range(private_pem: bytes, start: int, stop: int) -> list[tuple[bytes, str]]:
    key = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    signer = EssSigner(key)
    bodies = [(ESS_EVENT % ((n,) * 4)).encode() for n in range(start, stop)]
    return [(body, signer.sign(body)) for body in bodies]


def signed_events(signer: EssSigner, count: int) -> list[tuple[bytes, str]]:
    """``count`` distinct ESS events and their signatures, signed on every CPU (about 1 ms each)."""
    private = signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    step = max(1, count // (4 * (os.cpu_count() or 1)))
    with ProcessPoolExecutor() as pool:
        starts = range(0, count, step)
        stops = [min(n + step, count) for n in starts]
        chunks = pool.map(_sign_range, [private] * len(starts), starts, stops)
        return [event for chunk in chunks for event in chunk]


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
    if kind == ESS:
        script.write_text(WRK_ESS_SCRIPT.replace("EVENTS_FILE", str(workdir / "events.lua")))
    else:
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
    host: str, port: int, kind: str, duration: float, connections: int, events: list[tuple[bytes, str]]
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
            if kind == ESS:
                body, signature = events[(n * connections + index) % len(events)]
                path, extra = "/events", f"Concur-Signature: {signature}\r\n"
            else:
                body, extra = BODY, ""
                path = f"/postback?type={kind}&oauth_token_key=bench-{index}-{n}-{time.time_ns()}"
            head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
            started = time.perf_counter()
            writer.write(head.encode() + body)
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
    latencies.sort()
    p50, p99 = (percentile(latencies, p) * 1000 for p in (50, 99))
    return len(latencies) / elapsed, p50, p99, errors


def measure(
    name: str,
    command: list[str],
    env: dict[str, str],
    args: argparse.Namespace,
    workdir: Path,
    events: list[tuple[bytes, str]],
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
            asyncio.run(_python_load("127.0.0.1", port, args.kind, 2, args.connections, events))
            rps, p50, p99, errors = asyncio.run(
                _python_load("127.0.0.1", port, args.kind, args.duration, args.connections, events)
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
    parser.add_argument("--kind", default="Itinerary", choices=["Itinerary", "Profile", "FOP", ESS])
    parser.add_argument("--ess-events", type=int, default=40_000, help="distinct signed events (--kind ESS)")
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
        events: list[tuple[bytes, str]] = []
        if args.kind == ESS:
            signer = EssSigner.generate()
            events = signed_events(signer, args.ess_events)
            (workdir / "ess-keys.pem").write_bytes(signer.public_pem())
            env["ESS_PUBLIC_KEYS"] = str(workdir / "ess-keys.pem")
            entries = ",\n".join(f'{{[==[{body.decode()}]==], "{signature}"}}' for body, signature in events)
            (workdir / "events.lua").write_text("return {\n" + entries + "\n}\n")
        if embedded is not None:
            env["REDIS_URL"] = embedded.url
        try:
            for _ in range(args.rounds):
                for name, command in servers.items():
                    rounds[name].append(measure(name, command, env, args, workdir, events))
        finally:
            if embedded is not None:
                embedded.stop()

    bare, ours = (median_result(results) for results in rounds.values())
    client = "wrk" if shutil.which("wrk") and not args.python_client else "asyncio client"
    redis = "REDIS_URL" if embedded is None else "embedded (AOF everysec)"
    what = (
        f"ESS events ({args.ess_events:,} distinct, signed)" if args.kind == ESS else f"{args.kind} postbacks"
    )
    settings = (
        f"{what}, {args.connections} connections, {args.rounds} x {args.duration} s, {client},"
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
