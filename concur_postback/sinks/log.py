"""`log:` — each event as one structured log line (`sink.event`). The default sink."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import structlog

from concur_postback.events import Event

log = structlog.get_logger("concur_postback.sinks.log")


@dataclass
class LogSink:
    name: str = "log"

    @classmethod
    def from_url(cls, url: str) -> LogSink:
        return cls()

    async def deliver(self, event: Event, payload: bytes) -> None:
        log.info("sink.event", event_id=event.id, request_id=event.request_id, payload=orjson.loads(payload))

    async def aclose(self) -> None:
        return None
