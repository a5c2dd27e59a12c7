"""`POST /postback[/<secret>]`: validate, store durably, then acknowledge.

200 only after Redis has stored the notification (or recognised a redelivery); 400 with a JSON
`{"error", "detail"}` for invalid input; 413 above the body limit; 503 + Retry-After when Redis cannot
take it, so Concur tries again instead of losing the change.

This endpoint is a plain ASGI callable, reached without Starlette's middleware and routing (see
app.py): it is the hot path, and those layers were a measured ~15 % of the per-postback CPU.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import Counter
from starlette.types import Receive, Scope, Send

from concur_postback import metrics
from concur_postback.concur.hosts import HostPolicy
from concur_postback.concur.notification import Kind, parse_postback, parse_query
from concur_postback.config import Settings
from concur_postback.errors import InvalidPostback, PayloadTooLarge, StoreUnavailable
from concur_postback.inbox import build_record, ingest_args
from concur_postback.service.access import REQUEST_ID_KEY, annotate
from concur_postback.service.committer import Committer
from concur_postback.tokens import TokenVault

_JSON = (b"content-type", b"application/json")


class ClientDisconnected(Exception):
    """The client went away before sending the whole body: there is nobody to answer."""


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Read at most ``limit`` bytes; refuse early on Content-Length, and while streaming otherwise."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Send, status: int, payload: dict[str, str], *headers: tuple[bytes, bytes]) -> None:
    body = orjson.dumps(payload)
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [_JSON, length, *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, code: str, detail: str, *headers: tuple[bytes, bytes]) -> None:
    await send_json(send, status, {"error": code, "detail": detail}, *headers)


async def send_not_found(send: Send) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"9")]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": b"Not Found"})


async def answer_counted(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    prefix: str,
    secrets: tuple[bytes, ...],
    answer: Callable[[Scope, Receive, Send], Awaitable[Hashable | None]],
    counters: Mapping[Any, Counter],
) -> None:
    """What the ingest endpoints share: a plain 404 without the secret path segment (after
    ``prefix``), else the answer, counted by its outcome and timed (None: nobody was answered)."""
    started = time.perf_counter()
    if secrets and not secret_matches(scope["path"].removeprefix(prefix).encode(), secrets):
        await send_not_found(send)
        return
    outcome = await answer(scope, receive, send)
    if outcome is not None:
        counters[outcome].inc()
        metrics.ACK_SECONDS.observe(time.perf_counter() - started)


async def refuse_too_large(scope: Scope, send: Send, endpoint: str, exc: PayloadTooLarge) -> None:
    """413, logged as ``<endpoint>.rejected``: a body above MAX_BODY_BYTES."""
    annotate(scope, f"{endpoint}.rejected", reason="body_too_large", limit=exc.limit)
    await send_error(send, 413, "body_too_large", f"body larger than {exc.limit} bytes")


async def answer_unavailable(
    scope: Scope,
    send: Send,
    endpoint: str,
    exc: StoreUnavailable,
    *,
    settings: Settings,
    what: str,
    **fields: object,
) -> None:
    """503 + Retry-After, logged as ``<endpoint>.unavailable``: Redis could not take it, so Concur
    (postbacks and ESS alike) delivers it again."""
    annotate(scope, f"{endpoint}.unavailable", "warning", reason=str(exc), **fields)
    retry_after = (b"retry-after", str(settings.retry_after_seconds).encode())
    await send_error(send, 503, "unavailable", f"cannot store the {what} now", retry_after)


def kind_label(query_string: bytes) -> str:
    """The kind a rejected postback names, for metrics (the error path only: it parses the query again)."""
    try:
        return Kind(parse_query(query_string).get("type", "").lower()).value
    except (InvalidPostback, ValueError):
        return metrics.UNKNOWN_KIND


@dataclass(frozen=True)
class PostbackEndpoint:
    settings: Settings
    vault: TokenVault
    committer: Committer
    counters: dict[tuple[str, str], Counter] = field(default_factory=metrics.postback_counters)
    secrets: tuple[bytes, ...] = field(init=False)
    policy: HostPolicy = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "secrets", self.settings.postback_secrets)
        object.__setattr__(self, "policy", HostPolicy.from_settings(self.settings))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await answer_counted(
            scope, receive, send, prefix="/postback/", secrets=self.secrets, answer=self._answer,
            counters=self.counters,
        )  # fmt: skip

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, str] | None:
        """Answer the postback; return its (kind, outcome) for the metrics, None if nobody was answered."""
        try:
            body = await read_body(scope, receive, self.settings.max_body_bytes)
            postback = parse_postback(scope["query_string"], body, self.policy)
        except ClientDisconnected:
            annotate(scope, "postback.disconnected")
            return None
        except PayloadTooLarge as exc:
            await refuse_too_large(scope, send, "postback", exc)
            return kind_label(scope["query_string"]), metrics.TOO_LARGE
        except InvalidPostback as exc:
            annotate(scope, "postback.rejected", reason=exc.code, detail=exc.detail)
            await send_error(send, 400, exc.code, exc.detail)
            return kind_label(scope["query_string"]), metrics.REJECTED

        record = build_record(postback, self.vault, scope.get(REQUEST_ID_KEY), time.time())
        try:
            result = await self.committer.submit(ingest_args(record))
        except StoreUnavailable as exc:
            await answer_unavailable(
                scope,
                send,
                "postback",
                exc,
                settings=self.settings,
                what="notification",
                kind=record.kind.value,
            )
            return record.kind.value, metrics.UNAVAILABLE

        annotate(
            scope,
            "postback.accepted" if result.accepted else "postback.duplicate",
            id=result.id,
            kind=record.kind.value,
            subject=record.subject,
            trip_id=record.trip_id,
            event_type=record.event_type,
        )
        status = metrics.ACCEPTED if result.accepted else metrics.DUPLICATE
        await send_json(send, 200, {"status": status, "id": result.id})
        return record.kind.value, status


def secret_matches(given: bytes, secrets: tuple[bytes, ...]) -> bool:
    """Constant time whichever secret matches, and whether any does: every one is compared."""
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(given, secret)
    return matched
