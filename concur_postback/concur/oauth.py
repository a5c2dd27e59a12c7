"""Company tokens from Concur's OAuth2 service: the grants ESS integrations need.

ESS events carry no token; the v4 APIs take a company JWT. A company administrator's *request token*
(from App Center's connect redirect) is exchanged once for tokens with the password grant
(``credtype=authtoken``); after that the refresh grant gives a new access token (valid 1 h) and,
often, a new refresh token (valid 6 months). Concur's rule is to keep the latest refresh token and
geolocation every answer returns, which is what ``Grant`` carries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import OAuthToken
from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError, PermanentFetch, ReauthorizationNeeded, RetryableFetch

TOKEN_PATH = "/oauth2/v0/token"  # noqa: S105 - a path, not a password
ACCESS_SECONDS = 3600  # when the answer does not say
REFRESH_SECONDS = 182 * 24 * 3600  # six months, when the answer does not say


@dataclass(frozen=True)
class Grant:
    access_token: OAuthToken
    refresh_token: OAuthToken | None  # None: keep the one that was used
    expires_at: float
    refresh_expires_at: float | None
    geolocation: str | None  # e.g. https://us.api.concursolutions.com: where this company's calls go


def credentials(settings: Settings) -> dict[str, str]:
    if settings.concur_client_id is None or settings.concur_client_secret is None:
        raise ConfigurationError("CONCUR_CLIENT_ID and CONCUR_CLIENT_SECRET are needed for company tokens")
    return {
        "client_id": settings.concur_client_id,
        "client_secret": settings.concur_client_secret.get_secret_value(),
    }


async def connect_company(
    client: ConcurClient, settings: Settings, company_id: str, request_token: OAuthToken
) -> Grant:
    """The password grant: a company's request token for its first tokens."""
    form = {
        **credentials(settings),
        "grant_type": "password",
        "username": company_id,
        "password": request_token.value,
        "credtype": "authtoken",
    }
    return await _grant(client, settings.concur_token_url, form, (request_token,))


async def refresh_company(
    client: ConcurClient, settings: Settings, refresh_token: OAuthToken, geolocation: str | None
) -> Grant:
    """The refresh grant, at the company's geolocation when it is known."""
    url = geolocation.rstrip("/") + TOKEN_PATH if geolocation else settings.concur_token_url
    form = {**credentials(settings), "grant_type": "refresh_token", "refresh_token": refresh_token.value}
    return await _grant(client, url, form, (refresh_token,))


async def app_token(client: ConcurClient, settings: Settings, geolocation: str | None) -> OAuthToken:
    """An application token (the client credentials grant), for the ESS subscription calls: valid an
    hour, never stored."""
    url = geolocation.rstrip("/") + TOKEN_PATH if geolocation else settings.concur_token_url
    grant = await _grant(client, url, {**credentials(settings), "grant_type": "client_credentials"}, ())
    return grant.access_token


async def _grant(
    client: ConcurClient, url: str, form: dict[str, str], secrets: tuple[OAuthToken, ...]
) -> Grant:
    status, body = await client.post_form(url, form, kind="token")
    answer = _json(body)
    if 200 <= status < 300:
        return _parse_grant(answer, time.time())
    error = str(answer.get("error") or f"HTTP {status}")
    said = str(answer.get("error_description") or "")
    for secret in secrets:
        said = secret.hidden_in(said)
    detail = f"{error}{f': {said}' if said else ''} (HTTP {status})"
    if error == "invalid_grant":
        raise ReauthorizationNeeded(f"Concur refused the grant: {detail}", status)
    if status == 429 or status >= 500 or status == 408:
        raise RetryableFetch(f"token service: {detail}", status)
    raise PermanentFetch(f"token service: {detail}", status)


def _json(body: bytes) -> dict[str, Any]:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _parse_grant(answer: dict[str, Any], now: float) -> Grant:
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise RetryableFetch("token service answered without an access_token")
    refresh = answer.get("refresh_token")
    geolocation = answer.get("geolocation")
    return Grant(
        access_token=OAuthToken(access),
        refresh_token=OAuthToken(refresh) if isinstance(refresh, str) and refresh else None,
        expires_at=now + _seconds(answer.get("expires_in"), ACCESS_SECONDS),
        refresh_expires_at=_epoch(answer.get("refresh_expires_in"), now + REFRESH_SECONDS),
        geolocation=geolocation if isinstance(geolocation, str) and geolocation else None,
    )


def _seconds(value: object, default: float) -> float:
    """Concur sends ``expires_in`` as a string ("3600") or a number."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default


def _epoch(value: object, default: float) -> float:
    """``refresh_expires_in`` is an epoch time, not a duration (Concur's docs say so)."""
    moment = _seconds(value, default)
    return moment if moment > 1_000_000_000 else default
