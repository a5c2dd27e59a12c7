"""The generated company: travellers and their trips, the same for the same seed on every machine."""

from __future__ import annotations

import hashlib
import random
import string
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_TRAVELLERS = 50
DEFAULT_SEED = 1


def company_id(seed: int = DEFAULT_SEED) -> str:
    """The generated company's Concur id (a UUID), the same for the same seed on every machine."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"concur-postback-simulator/{seed}"))


_CITIES = (
    "Baltimore",
    "New York",
    "Seattle",
    "Milan",
    "Rome",
    "Paris",
    "Berlin",
    "Tokyo",
    "Austin",
    "Lisbon",
)
_EPOCH = datetime(2026, 1, 1)


@dataclass(frozen=True)
class SimTraveller:
    login: str
    sync_id: str
    status: str
    modified: str  # ProfileLastModifiedUTC, `YYYY-MM-DDThh:mm:ss`


@dataclass(frozen=True)
class SimTrip:
    trip_id: str
    login: str
    name: str
    start: str
    end: str
    modified: str  # DateModifiedUtc


@dataclass(frozen=True)
class Company:
    travellers: list[SimTraveller]
    trips: list[SimTrip]


def generate_company(travellers: int = DEFAULT_TRAVELLERS, seed: int = DEFAULT_SEED) -> Company:
    """The same travellers and trips for the same arguments, on every machine."""
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    people: list[SimTraveller] = []
    trips: list[SimTrip] = []

    def moment() -> datetime:
        return _EPOCH + timedelta(seconds=rng.randrange(320 * 24 * 3600))

    for n in range(1, travellers + 1):
        login = f"traveller{n:04d}@example.com"
        status = "Inactive" if rng.random() < 0.1 else "Active"
        people.append(SimTraveller(login, f"SYNC{n:06d}", status, moment().isoformat()))
        for _ in range(rng.randrange(0, 4)):
            trip_id = "".join(rng.choices(string.ascii_letters + string.digits, k=24))
            origin, destination = rng.sample(_CITIES, 2)
            start = moment()
            end = start + timedelta(days=rng.randrange(1, 8), hours=rng.randrange(0, 9))
            modified = start - timedelta(days=rng.randrange(1, 30))
            trips.append(
                SimTrip(
                    trip_id,
                    login,
                    f"Trip from {origin} to {destination}",
                    start.isoformat(),
                    end.isoformat(),
                    max(modified, _EPOCH).isoformat(),
                )
            )
    people.sort(key=lambda t: t.login)
    trips.sort(key=lambda t: (t.modified, t.trip_id))
    return Company(people, trips)


def traveller_token(login: str, seed: int = DEFAULT_SEED) -> str:
    """A stable fake user token for a generated traveller (what `fire` sends as oauth_token_key)."""
    return "sim-" + hashlib.sha256(f"{seed}:{login}".encode()).hexdigest()[:32]
