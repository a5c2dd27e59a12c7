"""Security-suite fixtures: a socket that must never be reached, raw HTTP/1.1 over a socket, what is stored.

`ConnectionTrap` stands in for any host a token (or an XML parser) must not reach: a listening socket
on the loopback interface that accepts, counts and drops every connection. ``connections()`` is exact
without sleeping: it connects a probe of its own and waits until that probe has been accepted; the
accept queue is FIFO, so every connection made before the call has been counted by then.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import orjson
import pytest
from redis import Redis

from concur_postback.inbox import INBOX_KEY, PENDING_KEY

Address = tuple[str, int]


class ConnectionTrap:
    """Listens on 127.0.0.1 (and on ::1 at the same port when it can); counts accepted connections."""

    def __init__(self) -> None:
        self._sockets = [socket.create_server(("127.0.0.1", 0), backlog=128)]
        self.port: int = self._sockets[0].getsockname()[1]
        with contextlib.suppress(OSError):  # no IPv6 loopback here, or the port is taken on ::1
            self._sockets.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        self._peers: list[Address] = []
        self._probes: set[Address] = set()
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._accept, args=(s,), daemon=True) for s in self._sockets]
        for thread in self._threads:
            thread.start()

    @property
    def ipv6(self) -> bool:
        return len(self._sockets) == 2

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:  # closed
                return
            conn.close()  # whoever connected gets nothing: fail fast rather than hang on a read
            with self._changed:
                self._peers.append(peer[:2])
                self._changed.notify_all()

    def connections(self) -> int:
        """How many connections reached the trap so far (its own probes not counted)."""
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))[: len(self._sockets)]:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.connect((host, self.port))
                self._await_accepted(probe.getsockname()[:2])
        with self._changed:
            return sum(peer not in self._probes for peer in self._peers)

    def _await_accepted(self, probe: Address) -> None:
        with self._changed:
            self._probes.add(probe)
            assert self._changed.wait_for(lambda: probe in self._peers, timeout=10), "probe not accepted"

    def close(self) -> None:
        for listener in self._sockets:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def make_trap() -> Iterator[Callable[[], ConnectionTrap]]:
    traps: list[ConnectionTrap] = []

    def make() -> ConnectionTrap:
        traps.append(ConnectionTrap())
        return traps[-1]

    yield make
    for trap in traps:
        trap.close()


@pytest.fixture
def trap(make_trap: Callable[[], ConnectionTrap]) -> ConnectionTrap:
    return make_trap()


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes  # exactly the bytes the server sent for this response

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name.lower()), None)

    def json_error(self) -> str:
        """The ``error`` code of the project's JSON error body."""
        assert self.header("content-type") == "application/json", self.raw
        return str(orjson.loads(self.body)["error"])


@dataclass
class RawConnection:
    """One HTTP/1.1 connection over a plain socket: send any bytes, read responses one at a time."""

    sock: socket.socket
    buffer: bytes = b""
    eof: bool = field(default=False)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def response(self) -> RawResponse:
        """The next complete response: framed by Content-Length, chunked, or (h11's own 400, which
        says `Connection: close`) by the end of the connection."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise AssertionError(f"connection closed before a response: {self.buffer!r}")
        head, _, _ = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = [(k.strip().lower(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
        start = len(head) + 4
        length = next((int(v) for k, v in headers if k == "content-length"), None)
        if length is not None:
            while len(self.buffer) < start + length and self._fill():
                pass
            end, body = start + length, self.buffer[start : start + length]
        elif ("transfer-encoding", "chunked") in headers:
            end, body = self._chunked(start)
        else:
            while self._fill():
                pass
            end, body = len(self.buffer), self.buffer[start:]
        if len(self.buffer) < end:
            raise AssertionError("connection closed inside a response body")
        raw, self.buffer = self.buffer[:end], self.buffer[end:]
        return RawResponse(int(status_line.split(" ")[1]), headers, body, raw)

    def _chunked(self, at: int) -> tuple[int, bytes]:
        body = b""
        while True:
            while b"\r\n" not in self.buffer[at:]:
                if not self._fill():
                    raise AssertionError("connection closed inside a chunked body")
            line_end = self.buffer.index(b"\r\n", at)
            size = int(self.buffer[at:line_end].split(b";")[0], 16)
            at = line_end + 2
            while len(self.buffer) < at + size + 2:
                if not self._fill():
                    raise AssertionError("connection closed inside a chunk")
            body += self.buffer[at : at + size]
            at += size + 2
            if size == 0:
                return at, body

    def rest(self) -> list[RawResponse]:
        """Every further response until the server closes the connection."""
        while self._fill():
            pass
        responses = []
        while self.buffer:
            responses.append(self.response())
        return responses

    def closed_after(self, probe: bytes) -> list[RawResponse]:
        """Send ``probe`` (a request ending with `Connection: close`) if the server still listens, and
        return every response that follows: any response beyond the probe's own was smuggled."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send(probe)
        return self.rest()


@pytest.fixture
def raw_connect() -> Iterator[Callable[[str], RawConnection]]:
    """Open raw connections to a server URL; they are closed after the test."""
    opened: list[socket.socket] = []

    def connect(url: str) -> RawConnection:
        parts = urlsplit(url)
        sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10)
        opened.append(sock)
        return RawConnection(sock)

    yield connect
    for sock in opened:
        sock.close()


def stored_ids(redis: Redis) -> list[str]:
    """Ids of the notifications the web tier stored (inbox and pending must agree)."""
    inbox = sorted(raw.decode() for raw in redis.lrange(INBOX_KEY, 0, -1))
    pending = sorted(raw.decode() for raw in redis.zrange(PENDING_KEY, 0, -1))
    assert inbox == pending
    return inbox
