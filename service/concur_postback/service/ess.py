"""`POST /events[/<secret>]`: an ESS v4 event, verified, stored durably, then acknowledged.

The answers follow what ESS does with them: 200 once Redis has the event (or already had it: ESS
delivers at least once, and a redelivery carries the same event id); 401 for a missing or bad
signature, which ESS retries for 72 h, so updating ESS_PUBLIC_KEYS loses nothing; 400 for a body that
is not an ESS event, which ESS does not retry; 503 + Retry-After when Redis cannot take it.

A plain ASGI callable on the fast path, like the postback endpoint, and sharing its helpers.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter
from starlette.types import Receive, Scope, Send

from concur_postback import metrics
from concur_postback.concur.ess import parse_ess_event
from concur_postback.concur.notification import Kind
from concur_postback.concur.signatures import HEADER, KeyRing
from concur_postback.config import Settings
from concur_postback.errors import BadSignature, InvalidEvent, PayloadTooLarge, StoreUnavailable
from concur_postback.inbox import build_ess_record, ingest_args
from concur_postback.service.access import REQUEST_ID_KEY, annotate
from concur_postback.service.committer import Committer
from concur_postback.service.postback import (
    ClientDisconnected,
    answer_counted,
    answer_unavailable,
    read_body,
    refuse_too_large,
    send_error,
    send_json,
)
from concur_postback.tokens import TokenVault

PATH = "/events"
log = structlog.get_logger("concur_postback.service")


@dataclass(frozen=True)
class EssEndpoint:
    settings: Settings
    vault: TokenVault
    committer: Committer
    keys: KeyRing | None  # None: signatures are not checked (ESS_VERIFY_SIGNATURE=false)
    counters: dict[str, Counter] = field(default_factory=metrics.ess_counters)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await answer_counted(
            scope, receive, send, prefix=PATH + "/", secrets=self.settings.postback_secrets,
            answer=self._answer, counters=self.counters,
        )  # fmt: skip

    async def _answer(self, scope: Scope, receive: Receive, send: Send) -> str | None:
        """Answer the event; return its outcome for the metrics, None if nobody was answered."""
        try:
            body = await read_body(scope, receive, self.settings.max_body_bytes)
            if self.keys is not None:
                self.keys.verify(body, _header(scope, HEADER))
            event = parse_ess_event(body)
        except ClientDisconnected:
            annotate(scope, "ess.disconnected")
            return None
        except PayloadTooLarge as exc:
            await refuse_too_large(scope, send, "ess", exc)
            return metrics.TOO_LARGE
        except BadSignature as exc:  # said without the body: it may be anyone's
            annotate(scope, "ess.unauthorized", "warning", reason=str(exc))
            await send_error(send, 401, "bad_signature", str(exc))
            return metrics.UNAUTHORIZED
        except InvalidEvent as exc:
            annotate(scope, "ess.rejected", reason=exc.code, detail=exc.detail)
            await send_error(send, 400, exc.code, exc.detail)
            return metrics.REJECTED

        now, request_id = time.time(), scope.get(REQUEST_ID_KEY)
        records = [build_ess_record(event, self.vault, request_id, now)]
        if self.settings.ess_fetch_fop and event.changes_a_profile:
            records.append(build_ess_record(event, self.vault, request_id, now, Kind.FOP))
        record = records[0]
        try:
            result, *_ = await asyncio.gather(*(self.committer.submit(ingest_args(r)) for r in records))
        except StoreUnavailable as exc:
            await answer_unavailable(
                scope, send, "ess", exc, settings=self.settings, what="event", topic=event.topic
            )
            return metrics.UNAVAILABLE

        annotate(
            scope,
            "ess.accepted" if result.accepted else "ess.duplicate",
            id=result.id,
            ess_event_id=event.id,
            correlation_id=event.correlation_id,
            topic=event.topic,
            event_type=event.event_type,
            subject=record.subject,
        )
        status = metrics.ACCEPTED if result.accepted else metrics.DUPLICATE
        await send_json(send, 200, {"status": status, "id": result.id})
        return status


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def key_ring(settings: Settings) -> KeyRing | None:
    """The keys events must be signed with; None, with a warning, when checking is turned off."""
    if not settings.ess_verify_signature:
        log.warning(
            "ess.signatures_not_verified",
            detail="ESS_VERIFY_SIGNATURE=false: anyone who can reach /events can inject events",
        )
        return None
    return KeyRing.load(settings.ess_public_keys)
