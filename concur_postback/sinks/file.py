"""`file:///abs/path.jsonl` — appends one JSON event per line.

Each event is one `write()` on a file opened with O_APPEND, under an exclusive `flock`, so several
worker processes can share the file without interleaving; the line is in the kernel before
`deliver` returns (add `?fsync=1` to also wait for the disk). A retry after a crash between the
write and the worker recording the delivery can repeat a line: consumers de-duplicate on `id`.

The blocking calls run in the sink's own thread, never on the worker's event loop: a stalled disk
then holds up this sink's deliveries (each times out, `SINK_TIMEOUT_SECONDS`, and is retried), not
the worker, its heartbeats or its other sinks. Handing a line to a thread and back costs far more
than writing it, so the lines that come while the thread writes wait for it and go together, in one
`write()` under one lock (still whole lines, in the order they came): one hand-over for many lines
when events come fast. At most `MAX_WAITING` lines wait for that thread; past that a delivery fails
at once instead of queueing for as long as the disk stalls. A file rotated away (logrotate's
`create`: renamed, a new one made) is noticed before each write and reopened.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
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
        self._waiting = 0  # lines handed to the thread and not yet written (or failed)
        self._queued: list[tuple[bytes, asyncio.Future[None]]] = []  # ... of which not yet taken up
        self._writing = False  # whether the thread is taking up lines (and will take new ones too)
        self._lock = threading.Lock()  # guards the three, changed by the loops and the thread

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
        written = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._waiting >= MAX_WAITING:
                raise SinkError(f"file sink: {MAX_WAITING} lines already wait for the disk")
            self._waiting += 1
            self._queued.append((payload + b"\n", written))
            start, self._writing = not self._writing, True
        if start:
            self._thread.submit(self._write_queued)
        await written

    def _write_queued(self) -> None:
        """In the sink's thread: write what is queued, and what is queued meanwhile, until none is."""
        while True:
            with self._lock:
                batch, self._queued = self._queued, []
                if not batch:
                    self._writing = False
                    return
            error: Exception | None = None
            try:
                self._append(b"".join(line for line, _ in batch))
            except Exception as exc:  # each line's delivery fails with it, and is retried
                error = exc
            with self._lock:
                self._waiting -= len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, written in batch:
                by_loop.setdefault(written.get_loop(), []).append(written)
            for loop, futures in by_loop.items():
                with contextlib.suppress(RuntimeError):  # its loop closed: nobody awaits them
                    loop.call_soon_threadsafe(_settle, futures, error)

    def _append(self, lines: bytes) -> None:
        """Whole lines, under the lock other processes take too."""
        fd = self._current_fd()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            written = 0
            while written < len(lines):  # a regular file takes it all at once; a pipe may not
                written += os.write(fd, lines[written:])
            if self.fsync:
                os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

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


def _settle(futures: list[asyncio.Future[None]], error: Exception | None) -> None:
    """On the loop that awaits them: the lines are written, or failed with ``error`` (a delivery
    that timed out meanwhile is cancelled already)."""
    for written in futures:
        if written.done():
            continue
        if error is None:
            written.set_result(None)
        else:
            written.set_exception(copy.copy(error))  # one each: a raise adds to its traceback
