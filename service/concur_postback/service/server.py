"""Run the web tier under uvicorn (`concur-postback serve`)."""

from __future__ import annotations

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


def serve(host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "concur_postback.service.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # ours is in access.py, without the query string
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=30,
    )
