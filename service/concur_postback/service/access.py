"""ASGI middleware: a request id per request and one structlog access line per request, without secrets.

Replaces uvicorn's access log, which would print the query string and with it the OAuth token. The
path is logged without its query, and the secret path segment of `/postback/<secret>` is hidden.
A handler may name the line's event and add fields (see ``annotate``): a postback then yields one
line, `postback.accepted` with method, path, status and duration, instead of two — logging is a
large share of the ack path's CPU.
"""

from __future__ import annotations

import random
import re
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("concur_postback.access")
_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9._-]{8,64}$")
_LOG_KEY = "concur_postback.log"
REQUEST_ID_KEY = "concur_postback.request_id"


def annotate(scope: Scope, event: str, level: str = "info", **fields: object) -> None:
    """Name this request's access line and add fields to it."""
    scope[_LOG_KEY] = (level, event, fields)


def loggable_path(path: str) -> str:
    return "/postback/<secret>" if path.startswith("/postback/") else path[:256]


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = scope[REQUEST_ID_KEY] = _request_id(scope)
        started = time.perf_counter()
        status: int | None = None  # stays None when nobody was answered (the client went away)
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            status = status or 500  # what uvicorn answers when the app raised before responding
            raise
        finally:
            level, event, fields = scope.get(_LOG_KEY, ("info", "http.request", {}))
            getattr(log, level)(
                event,
                **fields,
                method=scope["method"],
                path=loggable_path(scope["path"]),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                client=scope["client"][0] if scope.get("client") else None,
                request_id=request_id,
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and _REQUEST_ID_RE.match(value):
            return str(value.decode())
    return f"{random.getrandbits(64):016x}"  # unique, not secret: cheaper than os.urandom per request
