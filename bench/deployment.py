"""A whole deployment as real processes, for the benchmarks: an embedded Redis (AOF on) unless REDIS_URL is
set, the Concur simulator, `serve` and N `worker`s writing to a file sink; and what the benchmarks read
off it (the sink as it fills, CPU, RSS)."""

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


def follow(path: Path, count: int, timeout: float) -> list[tuple[float, dict[str, object]]]:
    """Read the sink file as it grows until ``count`` events are in it; each stamped when it appeared."""
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
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far, by tier."""
        return {
            "worker tier": sum(cpu_seconds(w.pid) for w in self.workers),
            "simulator": cpu_seconds(self.simulator.pid),
            "web tier": cpu_seconds(self.web.pid),
        }


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
        )
        running.workers = [spawn("worker") for _ in range(workers)]
        try:
            wait_listening(web_port)
            yield running
        finally:
            everything = [*running.workers, web, simulator]
            for process in everything:
                process.terminate()
            for process in everything:
                process.wait(60)
            if embedded is not None:
                embedded.stop()
            log.close()
