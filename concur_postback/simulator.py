"""A stand-in for Concur's travel APIs, for local work, tests and benchmarks (`concur-postback simulate`).

Serves a trip, a travel profile (v1 and v2) and a form of payment for any token, built from Concur's
documented examples (the trip id and login id filled in), with a configurable latency. Also:

* a seeded, reproducible company of generated travellers and their trips (``travellers``, ``seed``),
  listed by profile summaries (`GET /api/travelprofile/v2.0/summary?LastModifiedDate=…&Page=&ItemsPerPage=`,
  v1: `GET /api/travelprofile/v1.0/profile?LastModifiedDate=…`) and trip summaries
  (`GET /api/travel/trip/v1.1/?lastModifiedDate=…&userid_type=login&userid_value=ALL&includeMetadata=true
  &ItemsPerPage=&Page=`), paged as documented;
* the notification subscription calls (`POST /api/travelprofile/v1.0/subscribe?type=…`, the
  `/api/user/v1.0/…` and `/api/company/v1.0/…` forms, and `…/unsubscribe`), recorded and listed at
  `GET /_simulator/subscriptions`;
* `fire()`: posting notifications to a postback URL the way Concur does (`simulate fire`).

Faults are injected over HTTP, so a test can script Concur's bad days: `POST /_simulator/faults` with
`{"match": "<substring of path or token>", "status": 503, "times": 2, "retry_after": "1",
"delay_ms": 0}` (status 0: delay, then answer normally; `"seconds": 180` instead of `times`: every
matching request for that long); `GET /_simulator/requests` lists what was asked (tokens masked to
the last four).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import string
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from concur_postback.concur.redaction import mask

# Next to this module (importlib.resources does not read namespace packages such as this one).
_DATA = Path(__file__).resolve().parent / "simulator_data"
TEMPLATE_NAMES = ("trip", "profile_v1", "profile_v2", "fop")
TEMPLATES = {name: (_DATA / f"{name}.xml").read_text() for name in TEMPLATE_NAMES}
XML = "application/xml"
TRIP_NS = "http://www.concursolutions.com/api/travel/trip/2010/06"
SUBSCRIPTION_TYPES = ("itinerary", "fop", "profile")
DEFAULT_TRAVELLERS = 50
DEFAULT_SEED = 1
PROFILE_PAGE_MAX = 200


@dataclass
class Fault:
    match: str
    status: int = 503
    times: int = 1
    retry_after: str | None = None
    delay_ms: int = 0
    body: str = ""
    seconds: float = 0  # > 0: every matching request for this long from now, however many ("times" unused)
    until: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.seconds > 0:
            self.until = time.monotonic() + self.seconds

    def applies(self, path: str, token: str) -> bool:
        if self.match not in path and self.match != token:
            return False
        if self.seconds > 0:
            return time.monotonic() < self.until
        return self.times > 0


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    scheme: str
    token: str
    status: int = 0
    at: float = field(default_factory=time.time)


@dataclass
class RateLimit:
    """Concur's request limit as this stand-in enforces it (`--max-rps`): a token bucket refilled at
    ``rps`` per second holding a tenth of a second's worth, so a client that keeps to the rate (with
    the jitter of real scheduling) is never refused, and one that does not gets 429s."""

    rps: float
    tokens: float = 0.0
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(max(1.0, self.rps / 10), self.tokens + (now - self.updated) * self.rps)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


# --- the generated company -------------------------------------------------------------------------


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


# --- the server ------------------------------------------------------------------------------------


@dataclass
class SimulatorState:
    latency_ms: int = 0
    limit: RateLimit | None = None
    faults: list[Fault] = field(default_factory=list)
    requests: deque[Seen] = field(default_factory=lambda: deque(maxlen=10_000))
    subscriptions: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (scope, type, token) -> at

    def take_fault(self, path: str, token: str) -> Fault | None:
        for fault in self.faults:
            if fault.applies(path, token):
                fault.times -= 1
                return fault
        return None


def _error(message: str, status: int) -> Response:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    body = (
        f"<Error><Message>{escape(message)}</Message><Server-Time>{now}</Server-Time>"
        f"<Id>{str(uuid.uuid4()).upper()}</Id></Error>"
    )
    return Response(body, status, media_type=XML)


def _params(request: Request) -> dict[str, str]:
    """Query parameters by lower-case name (Concur's own examples mix `Page` and `page`)."""
    return {key.lower(): value for key, value in request.query_params.items()}


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    try:
        return max(1, int(params[name])) if name in params else default
    except ValueError:
        return default


def create_simulator(  # noqa: PLR0915 - one closure per route over shared state
    latency_ms: int = 0,
    on_request: Callable[[Seen], None] | None = None,
    travellers: int = DEFAULT_TRAVELLERS,
    seed: int = DEFAULT_SEED,
    max_rps: float = 0,
) -> Starlette:
    """``on_request`` is called with every API request as it arrives (tests await it); with
    ``max_rps``, requests above that rate are answered 429."""
    state = SimulatorState(latency_ms=latency_ms, limit=RateLimit(max_rps) if max_rps else None)
    company = generate_company(travellers, seed)

    async def admit(request: Request) -> tuple[Seen, str, Response | None]:
        """Record the request, check the token, apply faults and latency; a Response ends it early."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        seen = Seen(request.method, request.url.path, dict(request.query_params), scheme, mask(token))
        state.requests.append(seen)
        if on_request is not None:
            on_request(seen)
        if scheme not in ("OAuth", "Bearer") or not token:
            seen.status = 401
            return (
                seen,
                token,
                Response("<Error><Message>Unauthorized</Message></Error>", 401, media_type=XML),
            )
        if state.limit is not None and not state.limit.take():
            seen.status = 429
            return seen, token, Response(_error("Rate limit exceeded", 429).body, 429, {"Retry-After": "1"})
        fault = state.take_fault(request.url.path, token)
        delay = (fault.delay_ms if fault else 0) or state.latency_ms
        if delay:
            await asyncio.sleep(delay / 1000)
        if fault is not None and fault.status:  # status 0: only the delay, then the normal answer
            seen.status = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            body = fault.body or f"<Error><Message>HTTP {fault.status}</Message></Error>"
            return seen, token, Response(body, fault.status, headers, media_type=XML)
        return seen, token, None

    def answer(seen: Seen, response: Response) -> Response:
        seen.status = response.status_code
        return response

    async def serve(request: Request, template: str, **values: str) -> Response:
        seen, token, early = await admit(request)
        if early is not None:
            return early
        login = request.query_params.get("userid_value") or f"traveller-{token[-6:]}@example.com"
        body = TEMPLATES[template].replace("{{LOGIN_ID}}", login)
        for key, value in values.items():
            body = body.replace("{{" + key + "}}", value)
        return answer(seen, Response(body, media_type=XML))

    async def trip(request: Request) -> Response:
        return await serve(request, "trip", TRIP_ID=request.path_params["trip_id"])

    async def profile(request: Request) -> Response:
        v1 = "/v1.0/" in request.url.path
        if v1 and "lastmodifieddate" in _params(request):  # v1 lists summaries at the profile URL
            return await profile_summaries(request)
        return await serve(request, "profile_v1" if v1 else "profile_v2")

    async def fop(request: Request) -> Response:
        return await serve(request, "fop")

    async def profile_summaries(request: Request) -> Response:
        seen, _, early = await admit(request)
        if early is not None:
            return early
        params = _params(request)
        since = params.get("lastmodifieddate")
        if not since:
            return answer(seen, _error("LastModifiedDate is required", 400))
        try:
            cutoff = datetime.fromisoformat(since).replace(tzinfo=None)
        except ValueError:
            return answer(seen, _error(f"Invalid LastModifiedDate: {since}", 400))
        per_page = min(_int_param(params, "itemsperpage", PROFILE_PAGE_MAX), PROFILE_PAGE_MAX)
        page = _int_param(params, "page", 1)
        changed = [t for t in company.travellers if datetime.fromisoformat(t.modified) >= cutoff]
        chunk = changed[(page - 1) * per_page : page * per_page]
        v2 = "/v2.0/" in request.url.path
        total_pages = (len(changed) + per_page - 1) // per_page
        items = "".join(
            "<ProfileSummary>"
            + (f"<Status>{t.status}</Status>" if v2 else "")
            + f"<LoginID>{t.login}</LoginID><XmlProfileSyncID>{t.sync_id}</XmlProfileSyncID>"
            f"<ProfileLastModifiedUTC>{t.modified}</ProfileLastModifiedUTC></ProfileSummary>"
            for t in chunk
        )
        if not chunk:  # documented: a page out of range gives empty elements
            status = "<Status />" if v2 else ""
            empty = "<LoginID /><XmlProfileSyncID /><ProfileLastModifiedUTC />"
            items = f"<ProfileSummary>{status}{empty}</ProfileSummary>"
        body = (
            f"<ConnectResponse><Metadata><Paging><TotalPages>{total_pages}</TotalPages>"
            f"<TotalItems>{len(changed)}</TotalItems><Page>{page}</Page><ItemsPerPage>{per_page}</ItemsPerPage>"
            "<PreviousPageURL /><NextPageURL /></Paging></Metadata>"
            f"<Data>{items}</Data></ConnectResponse>"
        )
        return answer(seen, Response(body, media_type=XML))

    async def trip_summaries(request: Request) -> Response:
        seen, token, early = await admit(request)
        if early is not None:
            return early
        params = _params(request)
        trips = company.trips
        if since := params.get("lastmodifieddate"):
            try:
                cutoff = datetime.fromisoformat(since).replace(tzinfo=None)
            except ValueError:
                return answer(seen, _error(f"Invalid lastModifiedDate: {since}", 400))
            trips = [t for t in trips if datetime.fromisoformat(t.modified) >= cutoff]
        user = params.get("userid_value") or f"traveller-{token[-6:]}@example.com"
        if user.upper() != "ALL":
            trips = [t for t in trips if t.login == user]
        paged = "page" in params
        per_page = _int_param(params, "itemsperpage", 200 if paged else 1000)
        page = _int_param(params, "page", 1)
        chunk = trips[(page - 1) * per_page : page * per_page]
        base = str(request.base_url).rstrip("/")
        infos = "".join(
            f"<ItineraryInfo><TripId>{t.trip_id}</TripId><TripName>{escape(t.name)}</TripName>"
            f"<StartDateLocal>{t.start}</StartDateLocal><EndDateLocal>{t.end}</EndDateLocal>"
            f"<UserLoginId>{t.login}</UserLoginId><DateModifiedUtc>{t.modified}</DateModifiedUtc>"
            f"<id>{base}/api/travel/trip/v1.1/{t.trip_id}</id></ItineraryInfo>"
            for t in chunk
        )
        listing = f'<ItineraryInfoList xmlns="{TRIP_NS}">{infos}</ItineraryInfoList>'
        if params.get("includemetadata", "").lower() != "true":
            return answer(seen, Response(listing, media_type=XML))
        total_pages = (len(trips) + per_page - 1) // per_page

        def page_url(number: int) -> str:
            if number < 1 or number > total_pages:
                return ""
            return escape(str(request.url.include_query_params(Page=str(number))))

        body = (
            f"<ConnectResponse><Metadata><Paging><TotalPages>{total_pages}</TotalPages>"
            f"<TotalItems>{len(trips)}</TotalItems><CurrentPage>{page}</CurrentPage>"
            f"<ItemsPerPage>{per_page}</ItemsPerPage><PreviousPageURL>{page_url(page - 1)}</PreviousPageURL>"
            f"<NextPageURL>{page_url(page + 1)}</NextPageURL></Paging></Metadata>"
            f"<Data>{listing}</Data></ConnectResponse>"
        )
        return answer(seen, Response(body, media_type=XML))

    async def subscription(request: Request) -> Response:
        seen, token, early = await admit(request)
        if early is not None:
            return early
        kind = _params(request).get("type", "").lower()
        if kind not in SUBSCRIPTION_TYPES:
            return answer(seen, _error(f"Invalid notification type: {kind or '(none)'}", 400))
        scope = "company" if request.url.path.startswith("/api/company/") else "user"
        key = (scope, kind, token)
        if request.url.path.endswith("/unsubscribe"):
            state.subscriptions.pop(key, None)
        else:
            state.subscriptions[key] = datetime.now(UTC).isoformat(timespec="seconds")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<TravelProfileResponseMessage><Code>S001</Code>'
            "<Message>Success, no errors or warnings reported</Message></TravelProfileResponseMessage>"
        )
        return answer(seen, Response(body, media_type=XML))

    async def add_fault(request: Request) -> Response:
        state.faults.append(Fault(**await request.json()))
        return JSONResponse({"faults": len(state.faults)})

    async def clear(_: Request) -> Response:
        state.faults.clear()
        state.requests.clear()
        return JSONResponse({"cleared": True})

    async def requests(_: Request) -> Response:
        return JSONResponse([asdict(seen) for seen in state.requests])

    async def subscriptions(_: Request) -> Response:
        return JSONResponse(
            [
                {"scope": scope, "type": kind, "token": mask(token), "since": since}
                for (scope, kind, token), since in sorted(state.subscriptions.items())
            ]
        )

    async def company_info(_: Request) -> Response:
        return JSONResponse(
            {
                "travellers": [asdict(t) for t in company.travellers],
                "trips": [asdict(t) for t in company.trips],
            }
        )

    subscribe_paths = [
        f"/api/{area}/v1.0/{action}"
        for area in ("travelprofile", "user", "company")
        for action in ("subscribe", "unsubscribe")
    ]
    return Starlette(
        routes=[
            Route("/api/travel/trip/v1.1/", trip_summaries, methods=["GET"]),
            Route("/api/travel/trip/v1.1", trip_summaries, methods=["GET"]),
            Route("/api/travel/trip/v1.1/{trip_id}", trip, methods=["GET"]),
            Route("/api/travelprofile/v2.0/summary", profile_summaries, methods=["GET"]),
            Route("/api/travelprofile/{version}/profile", profile, methods=["GET"]),
            Route("/api/travelprofile/v2.0/fop", fop, methods=["GET"]),
            *(Route(path, subscription, methods=["POST"]) for path in subscribe_paths),
            Route("/_simulator/faults", add_fault, methods=["POST"]),
            Route("/_simulator/faults", clear, methods=["DELETE"]),
            Route("/_simulator/requests", requests, methods=["GET"]),
            Route("/_simulator/subscriptions", subscriptions, methods=["GET"]),
            Route("/_simulator/company", company_info, methods=["GET"]),
        ]
    )


def run_simulator(
    host: str,
    port: int,
    latency_ms: int,
    *,
    travellers: int = DEFAULT_TRAVELLERS,
    seed: int = DEFAULT_SEED,
    max_rps: float = 0,
) -> None:
    app = create_simulator(latency_ms, travellers=travellers, seed=seed, max_rps=max_rps)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


# --- firing notifications at a postback URL ---------------------------------------------------------


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
class Shot:
    """One notification as Concur would post it: query parameters and body."""

    params: dict[str, str]
    body: bytes


def notification_body(concur_url: str, trip_id: str, event: str, when: str) -> bytes:
    uri = f"{concur_url.rstrip('/')}/api/travel/trip/v1.1/{trip_id}"
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<Notification>\n'
        f"  <ObjectType>ITINERARY</ObjectType>\n  <ObjectURI>{escape(uri)}</ObjectURI>\n"
        f"  <EventDateTime>{when}</EventDateTime>\n  <EventType>{event}</EventType>\n"
        f"  <Context/>\n  <TripId>{trip_id}</TripId>\n</Notification>\n"
    ).encode()


def shots(
    count: int,
    *,
    kinds: tuple[str, ...],
    concur_url: str,
    travellers: int = DEFAULT_TRAVELLERS,
    seed: int = DEFAULT_SEED,
    company_token: str | None = None,
) -> list[Shot]:
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
        if kind == "itinerary" and company.trips:
            chosen = rng.choice(company.trips)
            login = chosen.login
            event = rng.choices(("CREATE", "UPDATE", "CANCEL"), (2, 7, 1))[0]
            when = (start + timedelta(milliseconds=n)).isoformat(timespec="milliseconds")
            body = notification_body(concur_url, chosen.trip_id, event, when)
        else:
            if kind == "itinerary":  # no trips generated: fall back to a profile change
                kind = "profile"
            login = rng.choice(company.travellers).login if company.travellers else "traveller@example.com"
        label = {"itinerary": "Itinerary", "fop": "FOP", "profile": "Profile"}[kind]
        params = {"type": label, "oauth_token_key": company_token or traveller_token(login, seed)}
        if company_token:
            params |= {"userid_type": "login", "userid_value": login}
        out.append(Shot(params, body))
    return out


async def fire(
    to: str,
    planned: list[Shot],
    *,
    rate: float,
    concurrency: int = 64,
    on_sent: Callable[[], None] | None = None,
) -> FireResult:
    """POST ``planned`` to the postback URL ``to`` at ``rate`` per second (0: as fast as possible)."""
    result = FireResult()
    slots = asyncio.Semaphore(concurrency)
    began = time.monotonic()
    headers = {"Content-Type": "application/xml"}

    async def send(client: httpx.AsyncClient, shot: Shot) -> None:
        try:
            response = await client.post(to, params=shot.params, content=shot.body, headers=headers)
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
        for n, shot in enumerate(planned):
            if rate > 0 and (wait := began + n / rate - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            await slots.acquire()
            tasks.append(asyncio.create_task(send(client, shot)))
            result.sent += 1
        await asyncio.gather(*tasks)
    result.seconds = time.monotonic() - began
    return result
