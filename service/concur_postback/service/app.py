"""The Starlette application: routes, probes and the Redis connection's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from concur_postback import logs, metrics
from concur_postback.config import Settings
from concur_postback.connections import async_client
from concur_postback.errors import ConfigurationError
from concur_postback.inbox import INGEST_SCRIPT
from concur_postback.service.access import AccessLogMiddleware, annotate
from concur_postback.service.committer import Committer
from concur_postback.service.ess import PATH as ESS_PATH
from concur_postback.service.ess import EssEndpoint, key_ring
from concur_postback.service.postback import PostbackEndpoint, send_not_found
from concur_postback.tokens import TokenVault, vault_from_settings

log = structlog.get_logger("concur_postback.service")
READY_TIMEOUT_SECONDS = 0.2


ADMIN_PATHS = frozenset(("/healthz", "/readyz", "/metrics"))


class PostbackFastPath:
    """Hand `POST /postback[/...]` and `POST /events[/...]` straight to their endpoints; everything
    else (probes, 404, 405, lifespan) to the Starlette app. Each endpoint checks the secret path
    segment itself.

    With an admin listener (ADMIN_PORT), each listener answers its own paths only: the public one the
    postback, the admin one the probes and metrics (queue depths are nobody else's business); anything
    else is a plain 404 there.
    """

    def __init__(
        self, postback: ASGIApp, ess: ASGIApp, app: Starlette, with_secret: bool, admin_port: int | None
    ) -> None:
        self._postback = postback
        self._ess = ess
        self._app = app
        self._with_secret = with_secret
        self._admin_port = admin_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._admin_port is not None:
            on_admin = (scope.get("server") or ("", None))[1] == self._admin_port
            if on_admin != (scope["path"] in ADMIN_PATHS):
                await send_not_found(send)
                return
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            if self._matches(path, "/postback"):
                await self._postback(scope, receive, send)
                return
            if self._matches(path, ESS_PATH):
                await self._ess(scope, receive, send)
                return
        await self._app(scope, receive, send)

    def _matches(self, path: str, route: str) -> bool:
        if self._with_secret:
            return path.startswith(route + "/")
        return path == route


def create_app(settings: Settings, vault: TokenVault | None = None) -> ASGIApp:
    if settings.redis_url is None:
        raise ConfigurationError("REDIS_URL is not set (use `concur-postback run` for an embedded Redis)")
    vault = vault or vault_from_settings(settings)
    # The committer bounds each whole batch (and /readyz each ping) with its own timeout.
    redis = async_client(settings.redis_url, connect_timeout=settings.redis_timeout_seconds)
    committer = Committer(redis, settings)
    endpoint = PostbackEndpoint(settings, vault, committer)
    ess = EssEndpoint(settings, vault, committer, key_ring(settings))

    queue_depths = metrics.QueueDepthCollector(settings.redis_url, settings.queue_name)

    def metrics_endpoint(request: Request) -> Response:
        # A plain function: Starlette runs it in its thread pool, so the Redis reads of a scrape (sync
        # client, short timeout) never block the event loop that acknowledges postbacks.
        annotate(request.scope, "http.request", "debug")  # one scrape every few seconds: not at info
        return Response(metrics.exposition(queue_depths), media_type=metrics.CONTENT_TYPE)

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
            "service.started",
            postback_path="/postback/<secret>" if settings.postback_secret else "/postback",
            events_path=ESS_PATH + ("/<secret>" if settings.postback_secret else ""),
        )
        try:
            yield
        finally:
            await committer.stop()
            await redis.aclose()
            queue_depths.close()
            log.info("service.stopped")
            logs.flush()

    with_secret = settings.postback_secret is not None
    routes = [
        # POSTs never reach this route (PostbackFastPath takes them); it makes other methods a 405.
        Route("/postback/{secret}" if with_secret else "/postback", endpoint, methods=["POST"]),
        Route(ESS_PATH + ("/{secret}" if with_secret else ""), ess, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return AccessLogMiddleware(PostbackFastPath(endpoint, ess, app, with_secret, settings.admin_port))
