"""The load generator: notifications about the generated company, posted to a postback URL the way
Concur posts them (`simulate fire`, the benchmarks, the end-to-end tests)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx

from concur_postback.concur.notification import Kind
from concur_postback.simulator.company import (
    DEFAULT_SEED,
    DEFAULT_TRAVELLERS,
    generate_company,
    traveller_token,
)
from concur_postback.simulator.documents import itinerary_notification

_TYPE_PARAMETER = {Kind.ITINERARY: "Itinerary", Kind.FOP: "FOP", Kind.PROFILE: "Profile"}


@dataclass
class FireResult:
    sent: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # "accepted", "duplicate", "HTTP 400", "error: …"
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        counts = ", ".join(f"{name} {count}" for name, count in sorted(self.statuses.items()))
        return f"fired {self.sent} in {self.seconds:.1f} s ({rate:.0f}/s): {counts or 'nothing'}"


@dataclass(frozen=True)
class PlannedPostback:
    """One notification as Concur would post it: query parameters, body and headers (an ESS event:
    no parameters, a JSON body and its Concur-Signature)."""

    params: dict[str, str]
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/xml"})


def fetch_ess_events(concur_url: str, count: int, seed: int = DEFAULT_SEED) -> list[PlannedPostback]:
    """``count`` ESS events the simulator at ``concur_url`` planned and signed with its own key."""
    url = f"{concur_url.rstrip('/')}/_simulator/ess/events"
    answer = httpx.get(url, params={"count": count, "seed": seed}, timeout=120)
    answer.raise_for_status()
    return [
        PlannedPostback({}, item["body"].encode(),
                        {"Content-Type": "application/json", "Concur-Signature": item["signature"]})
        for item in answer.json()
    ]  # fmt: skip


def plan_postbacks(
    count: int,
    *,
    kinds: tuple[Kind, ...],
    concur_url: str,
    travellers: int = DEFAULT_TRAVELLERS,
    seed: int = DEFAULT_SEED,
    company_token: str | None = None,
) -> list[PlannedPostback]:
    """``count`` notifications about the generated company (the simulator's trip URIs), reproducibly.

    User notifications carry the traveller's own (fake) token; with ``company_token`` they are company
    notifications naming the traveller with `userid_type=login&userid_value=…`."""
    company = generate_company(travellers, seed)
    rng = random.Random(seed + 1)  # noqa: S311 - test data
    start = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    out = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        body = b""
        if kind is Kind.ITINERARY and company.trips:
            chosen = rng.choice(company.trips)
            login = chosen.login
            event = rng.choices(("CREATE", "UPDATE", "CANCEL"), (2, 7, 1))[0]
            when = (start + timedelta(milliseconds=n)).isoformat(timespec="milliseconds")
            body = itinerary_notification(concur_url, chosen.trip_id, event, when)
        else:
            if kind is Kind.ITINERARY:  # no trips generated: fall back to a profile change
                kind = Kind.PROFILE
            login = rng.choice(company.travellers).login if company.travellers else "traveller@example.com"
        params = {
            "type": _TYPE_PARAMETER[kind],
            "oauth_token_key": company_token or traveller_token(login, seed),
        }
        if company_token:
            params |= {"userid_type": "login", "userid_value": login}
        out.append(PlannedPostback(params, body))
    return out


async def fire(
    to: str,
    planned: list[PlannedPostback],
    *,
    rate: float,
    concurrency: int = 64,
    on_sent: Callable[[], None] | None = None,
) -> FireResult:
    """POST ``planned`` to the postback URL ``to`` at ``rate`` per second (0: as fast as possible)."""
    result = FireResult()
    slots = asyncio.Semaphore(concurrency)
    began = time.monotonic()

    async def send(client: httpx.AsyncClient, postback: PlannedPostback) -> None:
        try:
            response = await client.post(
                to, params=postback.params, content=postback.body, headers=postback.headers
            )
            outcome = f"HTTP {response.status_code}"
            if response.status_code == 200:
                with contextlib.suppress(ValueError):
                    outcome = str(response.json().get("status", outcome))
            else:
                with contextlib.suppress(ValueError):
                    outcome += f" {response.json().get('error', '')}".rstrip()
        except httpx.HTTPError as exc:
            outcome = f"error: {type(exc).__name__}"
        finally:
            slots.release()
        result.statuses[outcome] += 1
        if on_sent is not None:
            on_sent()

    async with httpx.AsyncClient(timeout=30) as client:
        tasks = []
        for n, postback in enumerate(planned):
            if rate > 0 and (wait := began + n / rate - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            await slots.acquire()
            tasks.append(asyncio.create_task(send(client, postback)))
            result.sent += 1
        await asyncio.gather(*tasks)
    result.seconds = time.monotonic() - began
    return result
