"""ESS subscriptions: which topics this application may read and where their events are sent.

`GET /events/v4/topics`, `PUT /events/v4/subscriptions/webhook`, `GET /events/v4/subscriptions`,
`DELETE /events/v4/subscriptions/{id}`, with an application token (the client credentials grant), at
one data centre per call: Concur needs a subscription per data centre (US, EMEA) a company lives in.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import OAuthToken
from concur_postback.errors import ConfigurationError, PermanentFetch, RetryableFetch

BASE_PATH = "/events/v4"
_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}\Z")


@dataclass(frozen=True)
class WebhookSubscription:
    id: str
    topic: str
    endpoint: str
    filter: str = ".*"

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "topic": self.topic,
                "filter": self.filter,
                "webHookConfig": {"endpoint": self.endpoint},
            }
        )


def webhook_subscription(
    topic: str, endpoint: str, filter_: str = ".*", ident: str | None = None
) -> WebhookSubscription:
    """A subscription checked before it is sent: an http(s) endpoint, a filter that compiles, an id
    Concur accepts (by default one derived from the topic and endpoint, so subscribing again replaces
    the subscription instead of adding one)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"--endpoint {endpoint[:100]!r}: not an http(s) URL (ESS posts over https)")
    try:
        re.compile(filter_)
    except re.error as exc:
        raise ConfigurationError(f"--filter {filter_!r}: not a regular expression ({exc})") from None
    topic = topic.strip()
    if not topic:
        raise ConfigurationError("--topic is empty")
    chosen = ident or "concur-postback-" + hashlib.sha256(f"{topic}\x1f{endpoint}".encode()).hexdigest()[:16]
    if not _ID_RE.match(chosen):
        raise ConfigurationError(f"--id {chosen!r}: letters, digits, '.', '_' and '-' only, at most 128")
    return WebhookSubscription(chosen, topic, endpoint, filter_)


async def topics(client: ConcurClient, base: str, token: OAuthToken) -> list[str]:
    answer = await _call(client, "GET", f"{base}{BASE_PATH}/topics", token)
    return [str(topic) for topic in answer] if isinstance(answer, list) else []


async def subscribe(
    client: ConcurClient, base: str, token: OAuthToken, subscription: WebhookSubscription
) -> str:
    answer = await _call(
        client, "PUT", f"{base}{BASE_PATH}/subscriptions/webhook", token, subscription.body()
    )
    return _message(answer, f"subscription {subscription.id!r} saved")


async def subscriptions(client: ConcurClient, base: str, token: OAuthToken) -> list[dict[str, Any]]:
    answer = await _call(client, "GET", f"{base}{BASE_PATH}/subscriptions", token)
    return [item for item in answer if isinstance(item, dict)] if isinstance(answer, list) else []


async def unsubscribe(client: ConcurClient, base: str, token: OAuthToken, ident: str) -> str:
    url = f"{base}{BASE_PATH}/subscriptions/{quote(ident, safe='')}"
    return _message(await _call(client, "DELETE", url, token), f"subscription {ident!r} deleted")


async def _call(
    client: ConcurClient, method: str, url: str, token: OAuthToken, body: bytes | None = None
) -> Any:
    response = await client.send(method, url, token, body=body, scheme="Bearer")
    try:
        answer = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        answer = None
    status = response.status_code
    if 200 <= status < 300:
        return answer
    said = _message(answer, "")
    detail = f"HTTP {status}{f': {said}' if said else ''}"
    if status == 429 or status >= 500:
        raise RetryableFetch(f"ESS subscriptions: {detail}", status)
    raise PermanentFetch(f"ESS subscriptions: {detail}", status)


def _message(answer: Any, default: str) -> str:
    if isinstance(answer, dict):
        for key in ("message", "error_description", "error"):
            if isinstance(answer.get(key), str):
                return str(answer[key])
    return default
