"""`concur-postback run`: web tier, worker(s) and, without REDIS_URL, an embedded Redis, in one command.

Children run in their own sessions so that a Ctrl-C at the terminal reaches only this supervisor,
which then stops them in order — web tier first (no new postbacks), workers next (each finishes its
job), Redis last (AOF flushed) — with exactly one SIGTERM each.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

import httpx
import structlog

from concur_postback.concur.oauth import TOKEN_PATH
from concur_postback.config import Settings
from concur_postback.connections import sync_client
from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.errors import ConfigurationError
from concur_postback.simulator.company import company_id
from concur_postback.sinks import Sink, build_sinks
from concur_postback.tokens import TokenVault, ensure_key_file

log = structlog.get_logger("concur_postback.run")
SIMULATOR_START_SECONDS = 30


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "concur_postback.cli", *args]
    return subprocess.Popen(command, env=env, start_new_session=True, stdin=subprocess.DEVNULL)  # noqa: S603


def _stop(processes: list[subprocess.Popen[bytes]], grace: float) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start_simulator(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The Concur simulator on a free local port; the service and workers are pointed at it."""
    sim_port = free_port()
    env["CONCUR_BASE_URL"] = f"http://127.0.0.1:{sim_port}"
    process = _spawn(["simulate", "--host", "127.0.0.1", "--port", str(sim_port)], env)
    log.info("run.simulator", url=env["CONCUR_BASE_URL"], pid=process.pid)
    return process


def _wire_ess(env: dict[str, str], data_dir: Path, simulator: subprocess.Popen[bytes]) -> None:
    """Point ESS at the simulator: trust its signing key, take company tokens from its token service,
    and connect its company, so that `simulate fire --ess` works at once."""
    base = env["CONCUR_BASE_URL"]
    deadline = time.monotonic() + SIMULATOR_START_SECONDS
    while True:  # the simulator is a child that takes a moment to listen
        try:
            key = httpx.get(f"{base}/_simulator/ess-public-key", timeout=2).raise_for_status().content
            break
        except httpx.HTTPError:
            if simulator.poll() is not None or time.monotonic() > deadline:
                raise ConfigurationError("the simulator did not start") from None
            time.sleep(0.1)
    path = data_dir / "simulator-ess-public-key.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key)
    env["ESS_PUBLIC_KEYS"] = str(path)
    env.setdefault("CONCUR_CLIENT_ID", "simulator-client")
    env.setdefault("CONCUR_CLIENT_SECRET", "simulator-secret")
    env["CONCUR_TOKEN_URL"] = base + TOKEN_PATH
    command = [sys.executable, "-m", "concur_postback.cli", "company", "connect", "--company-id",
               company_id(), "--request-token", "-"]  # fmt: skip
    subprocess.run(command, env=env, input=b"simulator-request-token\n", check=True, capture_output=True)  # noqa: S603
    log.info("run.simulator_company_connected", company_id=company_id())


def _refuse_early(settings: Settings, keys: list[str]) -> None:
    """Refuse here, before any port is bound or child started, what a child would refuse at its start:
    a malformed key, a sink that cannot be used (built once and closed again), a REDIS_URL that does not
    answer. The error then reaches the command line itself, not a child's log."""
    TokenVault(*keys)
    asyncio.run(_close(build_sinks(settings).values()))
    if settings.redis_url is not None:
        client = sync_client(settings.redis_url, connect_timeout=settings.redis_timeout_seconds)
        try:
            client.ping()
        finally:
            client.close()


async def _close(sinks: Iterable[Sink]) -> None:
    for sink in sinks:
        await sink.aclose()


def run_all(settings: Settings, host: str, port: int, workers: int, simulate: bool = False) -> int:
    """Run until SIGINT/SIGTERM or until a child dies; return the exit code.

    ``simulate``: also run the Concur simulator and point the service at it (CONCUR_BASE_URL).
    """
    data_dir: Path = settings.data_dir
    keys = settings.encryption_keys or [ensure_key_file(data_dir)]
    _refuse_early(settings, keys)
    env = {**os.environ}
    if not settings.encryption_keys:
        env["TOKEN_ENCRYPTION_KEY"] = keys[0]
    stopping = threading.Event()

    def on_signal(signum: int, _: FrameType | None) -> None:
        log.info("run.stopping", signal=signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    embedded: EmbeddedRedis | None = None
    if settings.redis_url is None:
        embedded = EmbeddedRedis(data_dir / "redis", password=True, own_session=True).start()
        env["REDIS_URL"] = embedded.url  # holds the password: only this user's processes read it
        log.info("run.embedded_redis", address=embedded.address, data_dir=str(data_dir / "redis"))
    simulator = _start_simulator(env) if simulate else None
    if simulator is not None:
        _wire_ess(env, data_dir, simulator)
    web = _spawn(["serve", "--host", host, "--port", str(port)], env)
    worker_processes = [_spawn(["worker"], env) for _ in range(workers)]
    children = [web, *worker_processes, *([simulator] if simulator else [])]
    if simulator is not None:
        here = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
        fire = f"concur-postback simulate fire --concur-url {env['CONCUR_BASE_URL']} --count 20 --rate 5"
        log.info("run.try_it", command=f"{fire} --to {here}/postback")
        log.info("run.try_it", command=f"{fire} --ess --to {here}/events")
    exit_code = 0
    try:
        while not stopping.wait(0.5):
            dead = [child for child in children if child.poll() is not None]
            if dead:
                log.error("run.child_exited", pid=dead[0].pid, returncode=dead[0].returncode)
                exit_code = 1
                break
    finally:
        _stop([web], grace=35)
        _stop(worker_processes, grace=settings.job_timeout_seconds + 5)
        if simulator is not None:
            _stop([simulator], grace=5)
        if embedded is not None:
            embedded.stop()
        log.info("run.stopped")
    return exit_code
