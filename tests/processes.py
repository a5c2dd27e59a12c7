"""Real child processes of the console script, whose JSON log lines a test can await."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from typing import ClassVar

import orjson

CLI = [sys.executable, "-m", "concur_postback.cli"]


class Process:
    """A child process whose JSON log lines can be awaited one event at a time."""

    started: ClassVar[list[Process]] = []  # no_leftover_processes kills what a failed test left

    def __init__(self, args: list[str], env: dict[str, str], open_files: int | None = None) -> None:
        """``open_files``: start it under `ulimit -n` of that many (soft and hard), as many hosts do."""
        command = [*CLI, *args]
        if open_files is not None:
            command = ["bash", "-c", f'ulimit -n {open_files} && exec "$@"', "bash", *command]
        self.popen = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        Process.started.append(self)
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._drained = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            self._queue.put(raw.decode(errors="replace"))
        self._queue.put(None)

    def wait_for(self, event: str, timeout: float = 30, prefix: bool = False) -> dict[str, object]:
        while True:
            line = self._queue.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"process exited before {event!r}:\n{''.join(self.lines)}")
            self.lines.append(line)
            if line.startswith("{"):
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise AssertionError(f"a log line is not one JSON object: {line!r}") from None
                text = str(entry.get("event"))
                if text == event or (prefix and text.startswith(event)):
                    return entry

    def stop(self, timeout: float = 60, *, ctrl_c: bool = False) -> int:
        """SIGTERM to the process; with ``ctrl_c``, SIGINT to its whole process group, as a terminal's
        Ctrl-C sends it to every process of the foreground group."""
        if ctrl_c:
            os.killpg(self.popen.pid, signal.SIGINT)
        else:
            self.popen.send_signal(signal.SIGTERM)
        code = self.popen.wait(timeout)
        self._drain()
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would; keeps what it wrote before dying."""
        self.popen.kill()
        self.popen.wait()
        self._drain()

    def _drain(self) -> None:
        """Read the rest of the output, once: a second stop() finds it read already."""
        if self._drained:
            return
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        self._drained = True

    @property
    def output(self) -> str:
        return "".join(self.lines)


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "TOKEN_ENCRYPTION_KEY", "POSTBACK_SECRET")
    }
    env.update(extra)
    return env


def cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def kill_leftovers() -> None:
    """Kill whatever a failed test left running (the whole group: `run` has children)."""
    while Process.started:
        process = Process.started.pop()
        if process.popen.poll() is None:
            os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait()
