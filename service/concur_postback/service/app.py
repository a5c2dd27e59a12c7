"""The Starlette application: routes, probes and the Redis connection's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError
from concur_postback.inbox import INGEST_SCRIPT
from concur_postback.service.access import AccessLogMiddleware
from concur_postback.service.committer import Committer
from concur_postback.service.postback import PostbackEndpoint
from concur_postback.tokens import TokenVault, vault_from_settings

log = structlog.get_logger("concur_postback.service")
READY_TIMEOUT_SECONDS = 0.2


def create_app(settings: Settings, vault: TokenVault | None = None) -> Starlette:
    if settings.redis_url is None:
        raise ConfigurationError("REDIS_URL is not set (use `concur-postback run` for an embedded Redis)")
    vault = vault or vault_from_settings(settings)
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    committer = Committer(redis, settings.ingest_max_batch, settings.redis_timeout_seconds)
    endpoint = PostbackEndpoint(settings, vault, committer)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        try:
            await asyncio.wait_for(redis.ping(), READY_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            return JSONResponse({"status": "unavailable", "redis": type(exc).__name__}, 503)
        return JSONResponse({"status": "ready"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            await redis.script_load(INGEST_SCRIPT)
        except (RedisError, OSError) as exc:  # not fatal: /readyz reports it, postbacks get 503
            log.warning("redis.unavailable_at_start", error=type(exc).__name__)
        await committer.start()
        log.info(
            "service.started", postback_path="/postback/<secret>" if settings.postback_secret else "/postback"
        )
        try:
            yield
        finally:
            await committer.stop()
            await redis.aclose()
            log.info("service.stopped")

    path = "/postback/{secret}" if settings.postback_secret is not None else "/postback"
    routes = [
        Route(path, endpoint, methods=["POST"]),  # an ASGI callable: see postback.py
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(AccessLogMiddleware)], lifespan=lifespan)
