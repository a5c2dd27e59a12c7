"""`file:///abs/path.jsonl` — appends one JSON event per line.

Each event is one `write()` on a file opened with O_APPEND, under an exclusive `flock`, so several
worker processes can share the file without interleaving; the line is in the kernel before
`deliver` returns (add `?fsync=1` to also wait for the disk). A retry after a crash between the
write and the worker recording the delivery can repeat a line: consumers de-duplicate on `id`.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from concur_postback.errors import ConfigurationError
from concur_postback.events import Event


@dataclass
class FileSink:
    path: Path
    fsync: bool = False
    _fd: int | None = None  # opened once per process; O_APPEND makes every write land at the end

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
        if self._fd is None:
            self._fd = self._open()
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            os.write(self._fd, payload + b"\n")
            if self.fsync:
                os.fsync(self._fd)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    async def aclose(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
