"""Run the web tier under uvicorn (`concur-postback serve`)."""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from concur_postback import logs
from concur_postback.config import load_settings
from concur_postback.service.app import create_app


def app_from_environment() -> ASGIApp:
    """uvicorn factory: each uvicorn worker process reads the environment and sets up its own logging."""
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    return create_app(settings)


def _flush_then_die(signum: int, _: FrameType | None) -> None:
    logs.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def serve(host: str, port: int, workers: int) -> None:
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler that was
    # installed before it started: this one, which writes out the buffered log lines first.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _flush_then_die)
    uvicorn.run(
        "concur_postback.service.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # ours is in access.py, without the query string
        # Never h11 (uvicorn's fallback): it answers a request with both Content-Length and
        # Transfer-Encoding and keeps the connection open, reading what follows the chunked body as the
        # next request (RFC 9112 6.1: close it). httptools refuses such requests with 400.
        http="httptools",
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )
