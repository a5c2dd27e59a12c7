"""Subscribing a user or a company to Concur's notifications (`concur-postback subscribe|unsubscribe`).

Documented (v1 notification pages, see the corpus MANIFEST "Subscription endpoints"):

* user: `POST {base}/api/travelprofile/v1.0/subscribe?type=itinerary|fop|profile` with the user's token
  (the page's "Resource URI" section says `/api/user/v1.0/subscribe` instead: CONCUR_SUBSCRIBE_PATH or
  `--path` picks), unsubscribe at `…/unsubscribe?type=…`;
* company: `POST {base}/api/company/v1.0/subscribe?type=…` / `…/unsubscribe?type=…` with a company
  administrator's token.

The only documented success is "200 OK" (no body); failures come as `<Error><Message>…</Message>…`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import POSTBACK_KINDS, OAuthToken
from concur_postback.concur.reader import VERBATIM, read, text
from concur_postback.concur.xml import XmlNode, local_name, parse_document
from concur_postback.config import Settings
from concur_postback.errors import ConcurPostbackError, FetchError, InvalidDocument

COMPANY_SUBSCRIBE_PATH = "/api/company/v1.0/subscribe"
TYPES = tuple(kind.value for kind in POSTBACK_KINDS)


class SubscriptionFailed(ConcurPostbackError):
    """Concur refused, or could not be reached. The message is for people and never holds the token."""


@dataclass(frozen=True)
class SubscriptionResult:
    action: str  # "subscribe" or "unsubscribe"
    type: str
    scope: str  # "user" or "company"
    url: str
    status: int
    message: str | None  # what Concur said, if anything


def subscription_path(settings: Settings, action: str, company: bool, path: str | None = None) -> str:
    """The endpoint path: ``path`` (or the configured one) for subscribe, its `…/unsubscribe` twin."""
    base = path or (COMPANY_SUBSCRIBE_PATH if company else settings.concur_subscribe_path)
    base = "/" + base.strip("/")
    if action == "unsubscribe":
        head, sep, tail = base.rpartition("/subscribe")
        base = head + "/unsubscribe" + tail if sep else base.rstrip("/") + "/unsubscribe"
    return base


@dataclass(frozen=True, kw_only=True)
class _ResponseMessage:
    code: str | None = text("Code")
    message: str | None = text("Message")


def concur_message(body: bytes) -> str | None:
    """Concur's `<Error><Message>` (or `TravelProfileResponseMessage`) as one readable line."""
    try:
        root = parse_document(body, InvalidDocument)
    except InvalidDocument:
        return None
    messages: list[str] = []
    for element in root.iter(etree.Element):
        if local_name(element).lower() == "travelprofileresponsemessage":
            said = read(_ResponseMessage, XmlNode(element), VERBATIM)
            if text := " ".join(part for part in (said.code, said.message) if part):
                messages.append(text)
    if not messages:
        for element in root.iter():
            if isinstance(element.tag, str) and local_name(element) == "Message":
                text = " ".join("".join(map(str, element.itertext())).split())
                if text:
                    messages.append(text)
                break
    if not messages and len(root) == 0 and root.text and root.text.strip():
        messages.append(" ".join(root.text.split()))
    return "; ".join(messages)[:1000] or None


async def change_subscription(
    settings: Settings,
    token: OAuthToken,
    kind: str,
    action: str,
    *,
    company: bool = False,
    path: str | None = None,
    client: ConcurClient | None = None,
) -> SubscriptionResult:
    """POST the (un)subscribe call; raise SubscriptionFailed with Concur's message on any failure."""
    if kind not in TYPES:
        raise SubscriptionFailed(f"type must be one of {', '.join(TYPES)}")
    url = settings.concur_base_url + subscription_path(settings, action, company, path)
    scope = "company" if company else "user"
    own = client is None
    concur = client or ConcurClient(settings)
    try:
        response = await concur.post(url, token, {"type": kind})
    except FetchError as exc:
        raise SubscriptionFailed(_clean(f"{action} {kind} ({scope}) at {url} failed: {exc}", token)) from None
    finally:
        if own:
            await concur.aclose()
    message = concur_message(response.content)
    if not 200 <= response.status_code < 300:
        reason = message or response.reason_phrase or "no message"
        hint = (
            " (token expired, revoked or without the needed scope?)"
            if response.status_code in (401, 403)
            else ""
        )
        raise SubscriptionFailed(
            _clean(
                f"Concur refused to {action} {kind} ({scope}): HTTP {response.status_code}: {reason}{hint}",
                token,
            )
        )
    return SubscriptionResult(
        action, kind, scope, url, response.status_code, message and _clean(message, token)
    )


def _clean(text: str, token: OAuthToken) -> str:
    """Belt and braces: should anything echo the token back, show it masked."""
    return text.replace(token.value, token.masked) if token.value else text
