"""The simulator's OAuth2 token service: company tokens as Concur issues them, on a clock you can move.

`POST /oauth2/v0/token` takes the password grant (`credtype=authtoken`: a company id and any
non-empty request token) and the refresh grant. Every answer holds a new access token, valid one hour
by the simulator's clock, and a new refresh token: the one used is spent, as when Concur rotates
it, so a client that keeps an old one is refused `invalid_grant`. `POST /_simulator/clock`
(`{"advance_seconds": 3600}`) moves the clock; `POST /_simulator/revoke` (`{"company": id}`)
refuses a company's refresh tokens, as when an administrator disconnects the app. Bearer tokens the
service issued are checked on every API call: an expired one is answered 401.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

ACCESS_SECONDS = 3600
ACCESS_PREFIX, REFRESH_PREFIX = "sim-at-", "sim-rt-"
APP = "app"  # whose token the client credentials grant gives


@dataclass
class TokenService:
    offset: float = 0.0  # seconds the clock was moved forward
    access: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (company, expires)
    refresh: dict[str, str] = field(default_factory=dict)  # live refresh token -> company
    revoked: set[str] = field(default_factory=set)
    grants: list[tuple[str, str]] = field(default_factory=list)  # (grant type, company), in order
    geolocation: str = ""  # returned with every grant: the simulator's own URL

    def now(self) -> float:
        return time.time() + self.offset

    def issue(self, company: str, with_refresh: bool = True) -> dict[str, object]:
        access = ACCESS_PREFIX + secrets.token_urlsafe(24)
        refresh = REFRESH_PREFIX + secrets.token_urlsafe(24)
        self.access[access] = (company, self.now() + ACCESS_SECONDS)
        if not with_refresh:  # the client credentials grant: an application token, an hour, no more
            return {"expires_in": str(ACCESS_SECONDS), "token_type": "Bearer", "access_token": access,
                    "geolocation": self.geolocation}  # fmt: skip
        self.refresh[refresh] = company
        return {
            "expires_in": str(ACCESS_SECONDS),
            "scope": "travel.itinerary.read user.read",
            "token_type": "Bearer",
            "access_token": access,
            "refresh_token": refresh,
            "refresh_expires_in": int(self.now() + 182 * 24 * 3600),
            "geolocation": self.geolocation,
            "id_token": "",
        }

    def grant(self, form: dict[str, str]) -> tuple[int, dict[str, object]]:
        if not form.get("client_id") or not form.get("client_secret"):
            return 401, _error("invalid_client", "client_id and client_secret are required", 2)
        kind = form.get("grant_type", "")
        if kind == "password":
            company = form.get("username", "")
            if form.get("credtype") != "authtoken" or not form.get("password") or not _uuid(company):
                return 400, _error("invalid_grant", "Incorrect Credentials. Please Retry", 5)
            self.revoked.discard(company)
        elif kind == "refresh_token":
            company = self.refresh.pop(form.get("refresh_token", ""), "")
            if not company or company in self.revoked:
                return 400, _error("invalid_grant", "bad or expired refresh token", 108)
        elif kind == "client_credentials":
            self.grants.append((kind, APP))
            return 200, self.issue(APP, with_refresh=False)
        else:
            return 400, _error("invalid_request", "`grant_type` was not supplied", 65)
        self.grants.append((kind, company))
        return 200, self.issue(company)

    def is_app_token(self, token: str) -> bool:
        company, expires = self.access.get(token, ("", 0.0))
        return company == APP and expires > self.now()

    def expired(self, token: str) -> bool:
        """Whether a Bearer token is one this service issued that is no longer valid."""
        if not token.startswith(ACCESS_PREFIX):
            return False
        company, expires = self.access.get(token, ("", 0.0))
        return not company or expires <= self.now() or company in self.revoked


def _error(error: str, description: str, code: int) -> dict[str, object]:
    return {"error": error, "error_description": description, "code": code}


def _uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _service(request: Request) -> TokenService:
    service: TokenService = request.app.state.tokens
    return service


async def token(request: Request) -> Response:
    service = _service(request)
    if not service.geolocation:
        service.geolocation = f"{request.url.scheme}://{request.url.netloc}"
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    status, answer = service.grant(form)
    return JSONResponse(answer, status)


async def clock(request: Request) -> Response:
    payload = await request.json()
    _service(request).offset += float(payload.get("advance_seconds", 0))
    return JSONResponse({"offset_seconds": _service(request).offset})


async def revoke(request: Request) -> Response:
    company = str((await request.json()).get("company", ""))
    _service(request).revoked.add(company)
    return JSONResponse({"revoked": company})


async def grants(request: Request) -> Response:
    return JSONResponse(
        [{"grant_type": kind, "company": company} for kind, company in _service(request).grants]
    )
