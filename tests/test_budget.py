"""The deployment's request budget per Concur host, shared through a real Redis by several "workers"
(budgets on their own connections), and honoured by the Concur client and the pipeline."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from concur_postback.budget import STOCK_SECONDS, SharedBudget
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import Kind, OAuthToken
from concur_postback.errors import FetchDeferred, RetryableFetch
from tests.conftest import TOKEN, Simulator


def test_workers_sharing_a_budget_get_evenly_spaced_slots_between_them(redis_url: str) -> None:
    async def main() -> list[float]:
        clients = [AsyncRedis.from_url(redis_url) for _ in range(3)]
        try:
            budgets = [SharedBudget(client, requests_per_second=20) for client in clients]
            return list(await asyncio.gather(*(budgets[n % 3].reserve("h.example") for n in range(30))))
        finally:
            for client in clients:
                await client.aclose()

    waits = sorted(asyncio.run(main()))
    gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
    assert waits[0] < 0.01  # an idle host: the first request goes at once
    # 20/s across all three: slots 50 ms apart, never two at once. A wait is counted from when Redis
    # ran that call's script, so concurrent calls a few ms apart shift it by that much.
    assert min(gaps) >= 0.040
    assert 29 * 0.05 - 0.05 <= waits[-1] <= 29 * 0.05 + 0.05


class CountingRedis(AsyncRedis):
    """A real client that counts its script round trips, and can run something once a reply is in
    (as if it came while the reply was on its way)."""

    round_trips = 0
    on_reply: Callable[[], Awaitable[None]] | None = None

    async def evalsha(self, *args: Any, **kwargs: Any) -> Any:
        self.round_trips += 1
        reply = await super().evalsha(*args, **kwargs)
        if (then := self.on_reply) is not None:
            self.on_reply = None
            await then()
        return reply


async def counting(url: str) -> CountingRedis:
    """With the budget's script loaded, so that each reservation is one EVALSHA."""
    client = CountingRedis.from_url(url)
    assert isinstance(client, CountingRedis)
    await SharedBudget(client, 1).reserve("warm-up.example")
    client.round_trips = 0
    return client


def test_a_busy_worker_reserves_its_next_slots_with_one_round_trip_and_keeps_them_apart(
    redis_url: str,
) -> None:
    async def main() -> tuple[list[float], int, float]:
        client, other = await counting(redis_url), AsyncRedis.from_url(redis_url)
        try:
            budget = SharedBudget(client, requests_per_second=200)
            departures = [(await budget.reserve("h.example")) + time.monotonic() for _ in range(10)]
            round_trips = client.round_trips
            # another worker's first slot comes after every slot this one reserved, used or not
            after = (await SharedBudget(other, 200).reserve("h.example")) + time.monotonic()
            return departures, round_trips, after
        finally:
            for closing in (client, other):
                await closing.aclose()

    departures, round_trips, after = asyncio.run(main())
    # the 1st and 2nd ask Redis; the 2nd takes a spare slot for the 3rd; the 4th three, the 8th seven
    assert round_trips <= 5  # 4, unless the machine stalls for most of STOCK_SECONDS in between
    gaps = [later - earlier for earlier, later in itertools.pairwise([*departures, after])]
    # 5 ms apart, from the stock or not: never two at once (a reply's way back can shift one a little)
    assert min(gaps) >= 0.004


def test_spare_slots_are_dropped_once_they_are_too_old(redis_url: str) -> None:
    async def main() -> tuple[int, int]:
        client = await counting(redis_url)
        try:
            budget = SharedBudget(client, requests_per_second=200)
            for _ in range(4):
                await budget.reserve("h.example")
            in_stock = client.round_trips  # 3: the 4th kept three spare slots (unless the loop stalled)
            await asyncio.sleep(STOCK_SECONDS + 0.05)  # the last of them was 15 ms ahead: too old now
            await budget.reserve("h.example")
            return in_stock, client.round_trips - in_stock
        finally:
            await client.aclose()

    in_stock, stale = asyncio.run(main())
    assert in_stock in (3, 4) and stale == 1


@pytest.mark.parametrize("when", ["after the reply", "while the reply is on its way"])
def test_after_this_workers_429_no_slot_reserved_before_it_is_used(redis_url: str, when: str) -> None:
    async def main() -> FetchDeferred:
        client = await counting(redis_url)
        try:
            budget = SharedBudget(client, requests_per_second=200)
            for _ in range(3):
                await budget.reserve("h.example")  # the 2nd and 3rd ask for spare slots
            if when == "after the reply":
                await budget.reserve("h.example")  # keeps three spare slots
                await budget.pause("h.example", 30)
            else:
                client.on_reply = lambda: budget.pause("h.example", 30)
            with pytest.raises(FetchDeferred) as paused:
                await budget.reserve("h.example")
            with pytest.raises(FetchDeferred):
                await budget.reserve("h.example")  # nothing kept from before the pause
            return paused.value
        finally:
            await client.aclose()

    paused = asyncio.run(main())
    assert paused.retry_after is not None and 25 < paused.retry_after <= 30


def test_requests_waiting_on_a_reservation_that_fails_fail_with_it() -> None:
    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    async def main() -> list[BaseException | float]:
        client = CountingRedis.from_url(f"redis://127.0.0.1:{port}")
        assert isinstance(client, CountingRedis)
        try:
            budget = SharedBudget(client, requests_per_second=200)
            outcomes = await asyncio.gather(
                *(budget.reserve("h.example") for _ in range(10)), return_exceptions=True
            )
            assert client.round_trips == 1  # not one after another, each waiting for the last to fail
            return outcomes
        finally:
            await client.aclose()

    outcomes = asyncio.run(main())
    assert all(isinstance(outcome, RedisError) for outcome in outcomes)


def test_a_slot_too_far_away_is_not_reserved_but_deferred(redis_url: str) -> None:
    async def main() -> tuple[list[float], FetchDeferred]:
        client = AsyncRedis.from_url(redis_url)
        try:
            budget = SharedBudget(client, requests_per_second=2, max_wait=1)
            waits = [await budget.reserve("h.example") for _ in range(3)]  # at 0, 0.5 and 1 s
            with pytest.raises(FetchDeferred) as raised:
                await budget.reserve("h.example")
            assert await budget.reserve("other.example") == 0  # per host
            return waits, raised.value
        finally:
            await client.aclose()

    waits, deferred = asyncio.run(main())
    assert waits[0] == 0 and waits[2] <= 1
    assert deferred.retry_after is not None and 1 < deferred.retry_after <= 1.6


def test_a_429_pauses_every_worker_for_that_host(
    simulator: Simulator, make_settings: Any, redis_url: str
) -> None:
    settings = make_settings(concur_base_url=simulator.url, concur_allowed_hosts=[])
    simulator.fault(match="/fop", status=429, times=1, retry_after="30")

    async def main() -> tuple[BaseException, BaseException]:
        first, second = AsyncRedis.from_url(redis_url), AsyncRedis.from_url(redis_url)
        one = ConcurClient(settings, budget=SharedBudget(first, 100))
        other = ConcurClient(settings, budget=SharedBudget(second, 100))  # another worker process
        try:
            with pytest.raises(RetryableFetch) as throttled:
                await one.fetch(Kind.FOP, OAuthToken(TOKEN))
            with pytest.raises(FetchDeferred) as paused:
                await other.fetch(Kind.PROFILE, OAuthToken(TOKEN))
            return throttled.value, paused.value
        finally:
            for closing in (one, other):
                await closing.aclose()
            for client in (first, second):
                await client.aclose()

    throttled, paused = asyncio.run(main())
    assert isinstance(throttled, RetryableFetch) and throttled.status == 429
    assert isinstance(paused, FetchDeferred) and 25 < (paused.retry_after or 0) <= 30
    assert len(simulator.requests()) == 1  # the paused request was never sent
