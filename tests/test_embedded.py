"""The embedded Redis of `run`: nobody else on the machine may talk to it."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError

from concur_postback.embedded import EmbeddedRedis


def test_a_protected_server_refuses_clients_without_its_password(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", password=True).start()
    try:
        stranger = Redis(port=server.port)
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            stranger.set("job", "run this")
        stranger.close()
        owner = Redis.from_url(server.url)
        owner.set("k", "v")
        assert server.password is not None and len(server.password) >= 32
        cmdline = Path(f"/proc/{server._process.pid}/cmdline").read_bytes() if server._process else b""
        assert server.password.encode() not in cmdline  # `ps` shows every user the command line
        for private in (tmp_path / "redis" / "password", tmp_path / "redis" / "redis.conf"):
            assert private.stat().st_mode & 0o077 == 0
        assert (tmp_path / "redis").stat().st_mode & 0o077 == 0
        server.stop()
        server.start()  # the same password after a restart: the AOF's data is still readable
        assert Redis.from_url(server.url).get("k") == b"v"
        owner.close()
    finally:
        server.stop()
