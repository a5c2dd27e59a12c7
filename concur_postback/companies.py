"""Company tokens in Redis: who is connected, their sealed tokens, and one refresh at a time.

A company's hash (`cp:company:<uuid>`) holds its refresh and access tokens sealed with the token key
(bound to the company), when the access token expires, the geolocation its calls go to, and its
state: `connected`, or `reauthorize` once Concur refused its refresh token (`invalid_grant`).

An access token lives an hour. The first fetch that finds it within REFRESH_MARGIN_SECONDS of its
end refreshes it; concurrent fetches in this process wait for that one (an asyncio lock per
company), and other processes wait on a lease in Redis (`cp:company-lock:<uuid>`) and then take the
token it wrote. So however many fetches find the token stale at once, Concur sees one refresh. What
the answer returns (the access token, the refresh token and geolocation when present) always
replaces what was stored: Concur may rotate the refresh token at any refresh.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import OAuthToken
from concur_postback.concur.oauth import Grant, refresh_company
from concur_postback.config import Settings
from concur_postback.connections import text
from concur_postback.errors import ConfigurationError, ReauthorizationNeeded, RetryableFetch
from concur_postback.keys import COMPANIES_KEY, COMPANY_LOCK_PREFIX, COMPANY_PREFIX, REAUTHORIZE_KEY
from concur_postback.tokens import TokenVault

CONNECTED, REAUTHORIZE = "connected", "reauthorize"
REFRESH_MARGIN_SECONDS = 300  # refresh this long before the access token ends
LOCK_SECONDS = 30  # the refresh lease: longer than one token request may take
WAIT_STEP_SECONDS = 0.05

# KEYS[1]: the lease; ARGV[1]: its owner. Deletes the lease only if it is still ours.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

Refresh = Callable[[OAuthToken, str | None], Awaitable[Grant]]


@dataclass(frozen=True)
class Company:
    """What `company list` and `status` show: never a token."""

    company_id: str
    state: str
    geolocation: str | None
    access_expires_at: float | None
    refresh_expires_at: float | None
    updated_at: float | None
    reason: str | None


def company_id(value: str) -> str:
    """A Concur company id (a UUID), in its canonical form; ConfigurationError otherwise."""
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ConfigurationError(f"company id {value[:64]!r} is not a UUID") from None


def reauthorization_reason(company: str) -> str:
    """How a notification failed for want of a company's tokens (refused, or the company was never
    connected): `company connect` requeues these."""
    return f"company {company} needs re-authorisation (company connect)"


Fields = dict[Any, Any]  # field -> str or number, as hset takes them
Stored = dict[Any, Any]  # HGETALL's reply: bytes to bytes


def _fields(vault: TokenVault, company: str, grant: Grant, previous_refresh: str | None = None) -> Fields:
    bound = "company:" + company
    refresh = previous_refresh
    if grant.refresh_token is not None:
        refresh = vault.seal(grant.refresh_token.value.encode(), bound)
    fields: Fields = {
        "access": vault.seal(grant.access_token.value.encode(), bound),
        "access_expires": grant.expires_at,
        "state": CONNECTED,
        "reason": "",
        "updated": time.time(),
    }
    if refresh:
        fields["refresh"] = refresh
    if grant.refresh_expires_at is not None:
        fields["refresh_expires"] = grant.refresh_expires_at
    if grant.geolocation:
        fields["geolocation"] = grant.geolocation
    return fields


def save_grant(redis: Redis, vault: TokenVault, company: str, grant: Grant) -> None:
    """Store what a grant returned (`company connect`)."""
    if grant.refresh_token is None:
        raise ReauthorizationNeeded("Concur's answer holds no refresh token")
    with redis.pipeline() as pipe:
        pipe.hset(COMPANY_PREFIX + company, mapping=_fields(vault, company, grant))
        pipe.sadd(COMPANIES_KEY, company)
        pipe.srem(REAUTHORIZE_KEY, company)
        pipe.execute()


def add_refresh_token(
    redis: Redis, vault: TokenVault, company: str, refresh: OAuthToken, geolocation: str | None
) -> None:
    """Store a refresh token obtained elsewhere (`company add`): the first fetch refreshes it."""
    fields: Fields = {
        "refresh": vault.seal(refresh.value.encode(), "company:" + company),
        "access": "",
        "access_expires": 0,
        "state": CONNECTED,
        "reason": "",
        "updated": time.time(),
    }
    if geolocation:
        fields["geolocation"] = geolocation.rstrip("/")
    with redis.pipeline() as pipe:
        pipe.delete(COMPANY_PREFIX + company)
        pipe.hset(COMPANY_PREFIX + company, mapping=fields)
        pipe.sadd(COMPANIES_KEY, company)
        pipe.srem(REAUTHORIZE_KEY, company)
        pipe.execute()


def remove_company(redis: Redis, company: str) -> bool:
    with redis.pipeline() as pipe:
        pipe.delete(COMPANY_PREFIX + company, COMPANY_LOCK_PREFIX + company)
        pipe.srem(COMPANIES_KEY, company)
        pipe.srem(REAUTHORIZE_KEY, company)
        removed = pipe.execute()[0]
    return bool(removed)


def list_companies(redis: Redis) -> list[Company]:
    ids = sorted(text(raw) for raw in redis.smembers(COMPANIES_KEY))
    with redis.pipeline(transaction=False) as pipe:
        for ident in ids:
            pipe.hmget(
                COMPANY_PREFIX + ident,
                "state",
                "geolocation",
                "access_expires",
                "refresh_expires",
                "updated",
                "reason",
            )
        rows = pipe.execute()
    return [_company(ident, row) for ident, row in zip(ids, rows, strict=True) if row[0] is not None]


_LISTED = ["state", "geolocation", "access_expires", "refresh_expires", "updated", "reason"]


def _company(ident: str, row: list[Any]) -> Company:
    state, geolocation, access, refresh, updated, reason = (text(v) if v is not None else None for v in row)
    return Company(
        company_id=ident,
        state=state or CONNECTED,
        geolocation=geolocation or None,
        access_expires_at=float(access) if access and float(access) > 0 else None,
        refresh_expires_at=float(refresh) if refresh else None,
        updated_at=float(updated) if updated else None,
        reason=reason or None,
    )


class CompanyTokens:
    """A worker's access to company tokens: a fresh access token per company, refreshed once."""

    def __init__(self, redis: AsyncRedis, vault: TokenVault, refresh: Refresh) -> None:
        self._redis = redis
        self._vault = vault
        self._refresh = refresh
        self._local: dict[str, asyncio.Lock] = {}
        self._release = redis.register_script(_RELEASE)

    async def access(self, company: str) -> tuple[OAuthToken, str | None]:
        """(an access token valid for a while yet, the company's geolocation)."""
        lock = self._local.setdefault(company, asyncio.Lock())
        async with lock:  # one refresh per process; the others find the token it stored
            deadline = time.monotonic() + LOCK_SECONDS + 5
            while True:
                stored = await self._redis.hgetall(COMPANY_PREFIX + company)
                fresh = self._fresh(company, stored)
                if fresh is not None:
                    return fresh
                owner = secrets.token_hex(8)
                lease = COMPANY_LOCK_PREFIX + company
                if await self._redis.set(lease, owner, nx=True, px=LOCK_SECONDS * 1000):
                    try:
                        return await self._renew(company, stored)
                    finally:
                        await self._release(keys=[lease], args=[owner])
                if time.monotonic() > deadline:
                    raise RetryableFetch(f"company {company}: another worker's token refresh did not finish")
                await asyncio.sleep(WAIT_STEP_SECONDS)  # another process refreshes: take its token

    async def forget_access(self, company: str) -> None:
        """Concur refused the access token before its time (revoked): the next use refreshes it."""
        await self._redis.hset(COMPANY_PREFIX + company, "access_expires", 0)

    def _fresh(self, company: str, stored: Stored) -> tuple[OAuthToken, str | None] | None:
        if not stored:
            raise ReauthorizationNeeded(reauthorization_reason(company))  # never connected: the same cure
        if text(stored.get(b"state", b"")) == REAUTHORIZE:
            raise ReauthorizationNeeded(reauthorization_reason(company))
        sealed = text(stored.get(b"access", b""))
        expires = float(stored.get(b"access_expires", b"0") or 0)
        if not sealed or expires - REFRESH_MARGIN_SECONDS <= time.time():
            return None
        token = OAuthToken(self._vault.open(sealed, "company:" + company).decode())
        return token, _geolocation(stored)

    async def _renew(self, company: str, stored: Stored) -> tuple[OAuthToken, str | None]:
        fresh = self._fresh(company, await self._redis.hgetall(COMPANY_PREFIX + company))
        if fresh is not None:  # refreshed by another process between our read and our lease
            return fresh
        sealed_refresh = text(stored.get(b"refresh", b""))
        refresh = OAuthToken(self._vault.open(sealed_refresh, "company:" + company).decode())
        try:
            grant = await self._refresh(refresh, _geolocation(stored))
        except ReauthorizationNeeded as exc:
            fields: Fields = {"state": REAUTHORIZE, "reason": str(exc), "updated": time.time()}
            async with self._redis.pipeline() as pipe:
                pipe.hset(COMPANY_PREFIX + company, mapping=fields)
                pipe.sadd(REAUTHORIZE_KEY, company)
                await pipe.execute()
            raise ReauthorizationNeeded(reauthorization_reason(company)) from None
        await self._redis.hset(
            COMPANY_PREFIX + company, mapping=_fields(self._vault, company, grant, sealed_refresh)
        )
        return grant.access_token, grant.geolocation or _geolocation(stored)


def _geolocation(stored: Stored) -> str | None:
    return text(stored.get(b"geolocation", b"")) or None


def company_tokens(
    redis: AsyncRedis, vault: TokenVault, client: ConcurClient, settings: Settings
) -> CompanyTokens:
    """The workers' CompanyTokens, refreshing through Concur's token service."""
    return CompanyTokens(
        redis, vault, lambda refresh, where: refresh_company(client, settings, refresh, where)
    )
