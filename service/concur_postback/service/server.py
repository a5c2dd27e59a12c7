"""Run the web tier under uvicorn (`concur-postback serve`)."""

from __future__ import annotations

import contextlib
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Any

import structlog
import uvicorn
from starlette.types import ASGIApp
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from concur_postback import logs
from concur_postback.config import load_settings
from concur_postback.errors import ConfigurationError
from concur_postback.service.app import create_app
from concur_postback.service.protocol import LOW_LIMIT, HttpProtocol, connection_limit, raise_open_files_limit

log = structlog.get_logger("concur_postback.service")


def app_from_environment() -> ASGIApp:
    """uvicorn factory: each uvicorn worker process reads the environment and sets up its own logging."""
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)


def _flush_then_die(signum: int, _: FrameType | None) -> None:
    logs.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


@dataclass(frozen=True)
class Tls:
    """`serve --ssl-*`: the server's certificate and key and, for mutual TLS, the CA client
    certificates must chain to (the CN is then checked by `protocol.HttpProtocol`)."""

    certfile: str
    keyfile: str | None = None
    ca_certs: str | None = None

    def options(self) -> dict[str, Any]:
        # CERT_OPTIONAL, not REQUIRED: the admin listener's probes come without a client certificate;
        # the protocol refuses connections without one on the public listener.
        reqs = ssl.CERT_OPTIONAL if self.ca_certs else ssl.CERT_NONE
        return {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile, "ssl_ca_certs": self.ca_certs,
                "ssl_cert_reqs": reqs}  # fmt: skip


def serve(
    host: str, port: int, workers: int, admin: tuple[str, int] | None = None, tls: Tls | None = None
) -> None:
    """Listen on ``host:port``, and on the ``admin`` (host, port) too when given: the app tells the two
    apart by the port a request came in on (see `app.PostbackFastPath`)."""
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler that was
    # installed before it started: this one, which writes out the buffered log lines first.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _flush_then_die)
    _report_open_files()
    config = uvicorn.Config(
        "concur_postback.service.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # ours is in access.py, without the query string
        # Never h11 (uvicorn's fallback): it answers a request with both Content-Length and
        # Transfer-Encoding and keeps the connection open, reading what follows the chunked body as the
        # next request (RFC 9112 6.1: close it). httptools refuses such requests with 400.
        http=HttpProtocol,  # httptools, with the client certificate check
        ws="none",  # no WebSocket routes: an upgrade request is an ordinary one
        **(tls.options() if tls else {}),
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        if workers == 1 and admin is None:
            server.run()  # what uvicorn.run does
        else:
            # Bound (and listening, so a connection waits in the backlog until a worker process takes
            # it) here, shared by every worker process; the admin socket beside the public one.
            sockets = [config.bind_socket(), *([_bind(*admin)] if admin else [])]
            for sock in sockets:
                sock.listen(config.backlog)
            if workers > 1:
                Multiprocess(config, sockets=sockets).run()
            else:
                server.run(sockets=sockets)
    if workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)


def _report_open_files() -> None:
    """Raise the open-file limit where allowed (worker processes inherit it) and say what it allows."""
    open_files = raise_open_files_limit()
    settings = load_settings()
    limit = connection_limit(open_files, settings.max_connections)
    if open_files < LOW_LIMIT:
        advice = f"raise the hard limit (ulimit -Hn) above {LOW_LIMIT} for more connections"
        log.warning("service.open_files_low", open_files=open_files, max_connections=limit, detail=advice)
    else:
        log.info("service.open_files", open_files=open_files, max_connections=limit)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"ADMIN_PORT {port} on {host}: cannot listen ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock
