"""`POST /postback[/<secret>]`: validate, store durably, then acknowledge.

200 only after Redis has stored the notification (or recognised a redelivery); 400 with a JSON
`{"error", "detail"}` for invalid input; 413 above the body limit; 503 + Retry-After when Redis cannot
take it, so Concur tries again instead of losing the change.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from concur_postback.concur.notification import parse_postback
from concur_postback.config import Settings
from concur_postback.errors import InvalidPostback, PayloadTooLarge, StoreUnavailable
from concur_postback.inbox import build_record, ingest_call
from concur_postback.service.committer import Committer
from concur_postback.tokens import TokenVault

log = structlog.get_logger("concur_postback.postback")


def json_response(
    payload: dict[str, object], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": code, "detail": detail}, status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; refuse early on Content-Length, and while streaming otherwise."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class PostbackEndpoint:
    settings: Settings
    vault: TokenVault
    committer: Committer

    async def handle(self, request: Request) -> Response:
        secret = self.settings.postback_secret
        if secret is not None and not hmac.compare_digest(
            request.path_params.get("secret", "").encode(), secret.get_secret_value().encode()
        ):
            return PlainTextResponse("Not Found", status_code=404)
        try:
            body = await read_body(request, self.settings.max_body_bytes)
            postback = parse_postback(request.scope["query_string"], body, self.settings.host_policy)
        except PayloadTooLarge as exc:
            log.info("postback.rejected", reason="body_too_large", limit=exc.limit)
            return error_response(413, "body_too_large", f"body larger than {exc.limit} bytes")
        except InvalidPostback as exc:
            log.info("postback.rejected", reason=exc.code, detail=exc.detail)
            return error_response(400, exc.code, exc.detail)

        request_id = structlog.contextvars.get_contextvars().get("request_id")
        record = build_record(postback, self.vault, request_id, time.time())
        try:
            result = await self.committer.submit(ingest_call(record, self.settings))
        except StoreUnavailable as exc:
            log.warning("postback.unavailable", reason=str(exc), kind=record.kind.value)
            retry_after = str(self.settings.retry_after_seconds)
            return error_response(
                503, "unavailable", "cannot store the notification now", {"Retry-After": retry_after}
            )

        event = "postback.accepted" if result.accepted else "postback.duplicate"
        log.info(
            event,
            id=result.id,
            kind=record.kind.value,
            subject=record.subject,
            trip_id=record.trip_id,
            event_type=record.event_type,
        )
        return json_response({"status": "accepted" if result.accepted else "duplicate", "id": result.id})
