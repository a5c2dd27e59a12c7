"""`file:///abs/path.jsonl` — appends one JSON event per line.

Each event is one `write()` on a file opened with O_APPEND, under an exclusive `flock`, so several
worker processes can share the file without interleaving; the line is in the kernel before
`deliver` returns (add `?fsync=1` to also wait for the disk). A retry after a crash between the
write and the worker recording the delivery can repeat a line: consumers de-duplicate on `id`.

The blocking calls run in the sink's own thread, never on the worker's event loop: a stalled disk
then holds up this sink's deliveries (each times out, `SINK_TIMEOUT_SECONDS`, and is retried), not
the worker, its heartbeats or its other sinks. At most `MAX_WAITING` lines wait for that thread; past
that a delivery fails at once instead of queueing for as long as the disk stalls. A file rotated
away (logrotate's `create`: renamed, a new one made) is noticed before each write and reopened.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from concur_postback.errors import ConfigurationError, SinkError
from concur_postback.events import Event

MAX_WAITING = 1000


class FileSink:
    def __init__(self, path: Path, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self._fd: int | None = None  # opened once per process (and again after a rotation)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-sink")
        self._waiting = 0
        self._lock = threading.Lock()  # guards _waiting, changed by the loop and the thread

    @property
    def name(self) -> str:
        return f"file://{self.path}"

    @classmethod
    def from_url(cls, url: str) -> FileSink:
        parts = urlsplit(url)
        path = Path(unquote(parts.path))
        if parts.netloc not in ("", "localhost") or not path.is_absolute():
            raise ConfigurationError(f"file sink needs an absolute path: file:///abs/path.jsonl, got {url!r}")
        if not path.parent.is_dir():
            raise ConfigurationError(f"file sink: directory {path.parent} does not exist")
        sink = cls(path, fsync=parse_qs(parts.query).get("fsync", ["0"])[0] in ("1", "true"))
        os.close(sink._open())  # fail at start-up if the file cannot be written
        return sink

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    async def deliver(self, event: Event, payload: bytes) -> None:
        with self._lock:
            if self._waiting >= MAX_WAITING:
                raise SinkError(f"file sink: {MAX_WAITING} lines already wait for the disk")
            self._waiting += 1
        await asyncio.get_running_loop().run_in_executor(self._thread, self._append, payload + b"\n")

    def _append(self, line: bytes) -> None:
        """In the sink's thread: one whole line, under the lock other processes take too."""
        try:
            fd = self._current_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                written = 0
                while written < len(line):  # a regular file takes it all at once; a pipe may not
                    written += os.write(fd, line[written:])
                if self.fsync:
                    os.fsync(fd)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            with self._lock:
                self._waiting -= 1

    def _current_fd(self) -> int:
        """The open file, reopened if the path now names another file (rotated) or none."""
        if self._fd is not None:
            try:
                moved = os.stat(self.path).st_ino != os.fstat(self._fd).st_ino
            except FileNotFoundError:
                moved = True
            if moved:
                os.close(self._fd)
                self._fd = None
        if self._fd is None:
            self._fd = self._open()
        return self._fd

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
