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
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

import structlog

from concur_postback.config import Settings
from concur_postback.connections import sync_client
from concur_postback.embedded import EmbeddedRedis, free_port
from concur_postback.sinks import Sink, build_sinks
from concur_postback.tokens import TokenVault, ensure_key_file

log = structlog.get_logger("concur_postback.run")


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
        embedded = EmbeddedRedis(data_dir / "redis", password=True).start()
        env["REDIS_URL"] = embedded.url  # holds the password: only this user's processes read it
        log.info("run.embedded_redis", address=embedded.address, data_dir=str(data_dir / "redis"))
    simulator = _start_simulator(env) if simulate else None
    web = _spawn(["serve", "--host", host, "--port", str(port)], env)
    worker_processes = [_spawn(["worker"], env) for _ in range(workers)]
    children = [web, *worker_processes, *([simulator] if simulator else [])]
    if simulator is not None:
        postback = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/postback"  # noqa: S104
        log.info("run.try_it", command=f"concur-postback simulate fire --to {postback} --concur-url "
                 f"{env['CONCUR_BASE_URL']} --count 20 --rate 5")  # fmt: skip
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
