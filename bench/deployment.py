"""A whole deployment as real processes, for the benchmarks: an embedded Redis (AOF on) unless REDIS_URL is
set, the Concur simulator, `serve` and N `worker`s writing to a file sink; and what the benchmarks read
off it (the sink as it fills, CPU, RSS, Redis's own counters).

`deployment()` yields once every process has started and gone idle, so that a `usage()` taken then and
another when the last event arrived charge a run with what it cost (idle polling included), not with
start-up (imports, connections).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
from redis import Redis

from concur_postback.concur.oauth import TOKEN_PATH
from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.simulator.company import company_id
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


FOLLOW_POLL_SECONDS = 0.002  # a line is stamped at most this late; an empty read costs microseconds
IDLE_WINDOW_SECONDS = 0.25
IDLE_CORE_SHARE = 0.25  # all processes together, of one core: start-up keeps every core busy
START_UP_TIMEOUT_SECONDS = 60.0


def follow(path: Path, count: int, timeout: float) -> list[tuple[float, dict[str, object]]]:
    """Read the sink file as it grows until ``count`` events are in it; each stamped when it appeared
    (within ``FOLLOW_POLL_SECONDS``: the latencies measured are that exact)."""
    seen: list[tuple[float, dict[str, object]]] = []
    deadline = time.time() + timeout
    buffer = b""
    with path.open("rb", buffering=0) as handle:
        while len(seen) < count and time.time() < deadline:
            if not (chunk := handle.readall()):
                time.sleep(FOLLOW_POLL_SECONDS)
                continue
            now = time.time()
            *lines, buffer = (buffer + chunk).split(b"\n")
            seen.extend((now, orjson.loads(line)) for line in lines if line)
    return seen


def wait_idle(pids: list[int]) -> None:
    """Wait until start-up is over: two windows in a row in which the processes together used under
    ``IDLE_CORE_SHARE`` of a core. Idle polling stays under that; imports keep every core busy."""
    deadline = time.monotonic() + START_UP_TIMEOUT_SECONDS
    quiet = 0
    before = sum(map(cpu_seconds, pids))
    while quiet < 2:
        if time.monotonic() > deadline:
            print(f"still busy {START_UP_TIMEOUT_SECONDS:g} s after start; measuring anyway", file=sys.stderr)
            return
        time.sleep(IDLE_WINDOW_SECONDS)
        now = sum(map(cpu_seconds, pids))
        quiet = quiet + 1 if now - before < IDLE_CORE_SHARE * IDLE_WINDOW_SECONDS else 0
        before = now


@dataclass(frozen=True)
class Usage:
    """What the deployment had used at one moment; ``later - earlier`` is what a run cost."""

    cpu: dict[str, float]  # CPU seconds by tier: "web tier", "worker tier", "Redis", "simulator"
    commands: int  # Redis: commands processed (INFO total_commands_processed)
    by_command: dict[str, int]  # the same by command (INFO commandstats)

    def __sub__(self, earlier: Usage) -> Usage:
        return Usage(
            {tier: seconds - earlier.cpu[tier] for tier, seconds in self.cpu.items()},
            self.commands - earlier.commands - 1,  # the earlier snapshot's own INFO
            {
                name: calls - earlier.by_command.get(name, 0)
                for name, calls in self.by_command.items()
                if name != "info" and calls > earlier.by_command.get(name, 0)
            },
        )


def connect_simulated_company(env: dict[str, str], simulator_url: str, workdir: Path) -> None:
    key = workdir / "simulator-ess-key.pem"
    key.write_bytes(httpx.get(f"{simulator_url}/_simulator/ess-public-key", timeout=10).content)
    env.update(ESS_PUBLIC_KEYS=str(key), CONCUR_CLIENT_ID="bench", CONCUR_CLIENT_SECRET="bench",
               CONCUR_TOKEN_URL=simulator_url + TOKEN_PATH)  # fmt: skip
    command = [*CLI, "company", "connect", "--company-id", company_id(), "--request-token", "-"]
    subprocess.run(command, env=env, input=b"bench\n", check=True, capture_output=True)


@dataclass
class Deployment:
    redis_url: str
    simulator_url: str
    postback_url: str
    events: Path
    env: dict[str, str]
    simulator: subprocess.Popen[bytes]
    web: subprocess.Popen[bytes]
    redis: Redis
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def usage(self) -> Usage:
        """CPU so far by tier and Redis's counters, read with one INFO (Redis's CPU from INFO too, so
        that a Redis at REDIS_URL is measured as well, though with any other client's share)."""
        info = self.redis.info("all")
        return Usage(
            {
                "web tier": cpu_seconds(self.web.pid),
                "worker tier": sum(cpu_seconds(w.pid) for w in self.workers),
                "Redis": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
                "simulator": cpu_seconds(self.simulator.pid),
            },
            int(info["total_commands_processed"]),
            {
                key.removeprefix("cmdstat_"): int(value["calls"])
                for key, value in info.items()
                if key.startswith("cmdstat_")
            },
        )


@contextmanager
def deployment(
    *, workers: int, simulator_args: tuple[str, ...] = (), ess: bool = False, **settings: str
) -> Iterator[Deployment]:
    """Start it all; ``settings`` are environment variables for every process. With ``ess``, the
    deployment trusts the simulator's signing key and has its company connected (as `run
    --simulate` does)."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        events = workdir / "events.jsonl"
        events.touch()
        embedded = None if os.environ.get("REDIS_URL") else EmbeddedRedis(workdir / "redis").start()
        sim_port, web_port = free_port(), free_port()
        simulator_url = f"http://127.0.0.1:{sim_port}"
        env = dict(
            os.environ,
            TOKEN_ENCRYPTION_KEY=generate_key(),
            CONCUR_BASE_URL=simulator_url,
            SINKS=f"file://{events}",
            LOG_LEVEL="WARNING",
            **settings,
        )
        if embedded is not None:
            env["REDIS_URL"] = embedded.url
        log = (workdir / "processes.log").open("wb")

        def spawn(*command: str) -> subprocess.Popen[bytes]:
            return subprocess.Popen([*CLI, *command], env=env, stdout=log, stderr=subprocess.STDOUT)

        simulator = spawn("simulate", "--port", str(sim_port), *simulator_args)
        wait_listening(sim_port)
        if ess:
            connect_simulated_company(env, simulator_url, workdir)
        web = spawn("serve", "--host", "127.0.0.1", "--port", str(web_port))
        running = Deployment(
            env["REDIS_URL"],
            simulator_url,
            f"http://127.0.0.1:{web_port}/postback",
            events,
            env,
            simulator,
            web,
            Redis.from_url(env["REDIS_URL"]),
        )
        running.workers = [spawn("worker") for _ in range(workers)]
        try:
            wait_listening(web_port)
            wait_idle([web.pid, simulator.pid, *(w.pid for w in running.workers)])
            yield running
        finally:
            running.redis.close()
            everything = [*running.workers, web, simulator]
            for process in everything:
                process.terminate()
            for process in everything:
                process.wait(60)
            if embedded is not None:
                embedded.stop()
            log.close()
