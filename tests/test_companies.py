"""Company tokens (companies.py) against a real Redis and the simulator's token service over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from concur_postback.companies import (
    CONNECTED,
    REAUTHORIZE,
    CompanyTokens,
    add_refresh_token,
    company_id,
    company_tokens,
    list_companies,
    remove_company,
    save_grant,
)
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import OAuthToken
from concur_postback.concur.oauth import TOKEN_PATH, connect_company
from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError, ReauthorizationNeeded
from concur_postback.tokens import vault_from_settings
from tests.conftest import Simulator

COMPANY = "6e2a6001-0b51-4c18-af0a-a86c3fb7874f"
REQUEST_TOKEN = OAuthToken("request-token-Zq8vJ2mX9pL4")


@pytest.fixture
def company_settings(make_settings: Callable[..., Settings], simulator: Simulator) -> Settings:
    return make_settings(
        concur_base_url=simulator.url,
        concur_allowed_hosts=[],
        concur_client_id="client-1",
        concur_client_secret="client-secret-1",
        concur_token_url=simulator.url + TOKEN_PATH,
    )


def connect(settings: Settings, redis: Redis) -> None:
    async def grant() -> None:
        client = ConcurClient(settings)
        try:
            save_grant(
                redis,
                vault_from_settings(settings),
                COMPANY,
                await connect_company(client, settings, COMPANY, REQUEST_TOKEN),
            )
        finally:
            await client.aclose()

    asyncio.run(grant())


def grants(simulator: Simulator) -> list[str]:
    return [entry["grant_type"] for entry in simulator.client.get("/_simulator/grants").json()]


def advance(simulator: Simulator, seconds: int) -> None:
    simulator.client.post("/_simulator/clock", json={"advance_seconds": seconds}).raise_for_status()


def test_connecting_stores_the_tokens_sealed_and_lists_the_company_without_them(
    company_settings: Settings, simulator: Simulator, redis: Redis
) -> None:
    connect(company_settings, redis)
    (company,) = list_companies(redis)
    assert (company.company_id, company.state, company.geolocation) == (COMPANY, CONNECTED, simulator.url)
    assert company.access_expires_at is not None and company.refresh_expires_at is not None
    dumped = b"".join(redis.dump(key) or b"" for key in redis.keys("*"))
    assert (
        b"sim-at-" not in dumped and b"sim-rt-" not in dumped and REQUEST_TOKEN.value.encode() not in dumped
    )
    assert grants(simulator) == ["password"]


async def _access_all(tokens: list[CompanyTokens], each: int) -> set[str]:
    got = await asyncio.gather(*(worker.access(COMPANY) for worker in tokens for _ in range(each)))
    return {token.value for token, _ in got}


def test_twenty_fetches_finding_the_token_expired_cause_exactly_one_refresh(
    company_settings: Settings, simulator: Simulator, redis: Redis, redis_url: str
) -> None:
    connect(company_settings, redis)
    advance(simulator, 3600)  # the simulator's access token is now expired ...
    redis.hset(f"cp:company:{COMPANY}", "access_expires", 1)  # ... and ours says so

    async def scenario() -> set[str]:
        clients = [(AsyncRedis.from_url(redis_url), ConcurClient(company_settings)) for _ in range(2)]
        vault = vault_from_settings(company_settings)
        try:  # two "processes", ten concurrent fetches each
            tokens = [company_tokens(r, vault, c, company_settings) for r, c in clients]
            return await _access_all(tokens, 10)
        finally:
            for r, c in clients:
                await c.aclose()
                await r.aclose()

    fresh = asyncio.run(scenario())
    assert len(fresh) == 1  # every fetch got the one new token
    assert grants(simulator) == ["password", "refresh_token"]


def test_the_refresh_token_concur_rotated_is_the_one_used_next(
    company_settings: Settings, simulator: Simulator, redis: Redis, redis_url: str
) -> None:
    connect(company_settings, redis)

    async def refresh_twice() -> list[str]:
        client, aredis = ConcurClient(company_settings), AsyncRedis.from_url(redis_url)
        tokens = company_tokens(aredis, vault_from_settings(company_settings), client, company_settings)
        seen = []
        try:
            for _ in range(2):  # each refresh spends the refresh token it used (the simulator rotates)
                await aredis.hset(f"cp:company:{COMPANY}", "access_expires", 1)
                token, _ = await tokens.access(COMPANY)
                seen.append(token.value)
        finally:
            await client.aclose()
            await aredis.aclose()
        return seen

    first, second = asyncio.run(refresh_twice())
    assert first != second
    assert grants(simulator) == ["password", "refresh_token", "refresh_token"]  # no invalid_grant


def test_a_refused_refresh_marks_the_company_for_reauthorisation(
    company_settings: Settings, simulator: Simulator, redis: Redis, redis_url: str
) -> None:
    connect(company_settings, redis)
    simulator.client.post("/_simulator/revoke", json={"company": COMPANY}).raise_for_status()
    redis.hset(f"cp:company:{COMPANY}", "access_expires", 1)

    async def attempt() -> None:
        client, aredis = ConcurClient(company_settings), AsyncRedis.from_url(redis_url)
        tokens = company_tokens(aredis, vault_from_settings(company_settings), client, company_settings)
        try:
            for _ in range(2):  # the second is refused without asking Concur again
                with pytest.raises(ReauthorizationNeeded, match="needs re-authorisation"):
                    await tokens.access(COMPANY)
        finally:
            await client.aclose()
            await aredis.aclose()

    asyncio.run(attempt())
    (company,) = list_companies(redis)
    assert company.state == REAUTHORIZE and "invalid_grant" in (company.reason or "")
    assert grants(simulator) == ["password"]  # the refused refresh is not a grant
    connect(company_settings, redis)  # connected again: usable again
    assert list_companies(redis)[0].state == CONNECTED


def test_a_refresh_token_added_by_hand_is_refreshed_at_first_use_and_removal_forgets_it(
    company_settings: Settings, simulator: Simulator, redis: Redis, redis_url: str
) -> None:
    connect(company_settings, redis)
    stored = redis.hget(f"cp:company:{COMPANY}", "refresh") or b""
    refresh = OAuthToken(
        vault_from_settings(company_settings).open(stored.decode(), "company:" + COMPANY).decode()
    )
    assert remove_company(redis, COMPANY) and list_companies(redis) == []
    add_refresh_token(redis, vault_from_settings(company_settings), COMPANY, refresh, simulator.url)

    async def use() -> str:
        client, aredis = ConcurClient(company_settings), AsyncRedis.from_url(redis_url)
        tokens = company_tokens(aredis, vault_from_settings(company_settings), client, company_settings)
        try:
            token, where = await tokens.access(COMPANY)
            assert where == simulator.url
            return token.value
        finally:
            await client.aclose()
            await aredis.aclose()

    assert asyncio.run(use()).startswith("sim-at-")
    assert grants(simulator) == ["password", "refresh_token"]


def test_a_company_id_must_be_a_uuid() -> None:
    assert company_id(" 6E2A6001-0B51-4C18-AF0A-A86C3FB7874F ") == COMPANY
    with pytest.raises(ConfigurationError):
        company_id("not-a-company")
