"""The simulator's HTTP API: Concur's trip, profile, FOP, summary and subscription calls, and the
`/_simulator/…` control routes. Handlers are plain functions over the app's ``SimulatorState``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from concur_postback.concur.oauth import TOKEN_PATH
from concur_postback.concur.redaction import mask
from concur_postback.concur.subscriptions import TYPES as SUBSCRIPTION_TYPES
from concur_postback.simulator import documents, ess, oauth
from concur_postback.simulator.company import DEFAULT_SEED, DEFAULT_TRAVELLERS, Company, generate_company
from concur_postback.simulator.documents import XML, Paging
from concur_postback.simulator.faults import Fault, Gate, RateLimit, SeenRequest
from concur_postback.simulator.oauth import TokenService

PROFILE_PAGE_MAX = 200


@dataclass
class SimulatorState:
    gate: Gate
    company: Company
    subscriptions: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (scope, type, token) -> at


def create_simulator(
    latency_ms: int = 0,
    on_request: Callable[[SeenRequest], None] | None = None,
    travellers: int = DEFAULT_TRAVELLERS,
    seed: int = DEFAULT_SEED,
    max_rps: float = 0,
) -> Starlette:
    """``on_request`` is called with every API request as it arrives (tests await it); with
    ``max_rps``, requests above that rate are answered 429."""
    tokens = TokenService()
    gate = Gate(
        latency_ms=latency_ms,
        limit=RateLimit(max_rps) if max_rps else None,
        on_request=on_request,
        expired=tokens.expired,
    )
    app = Starlette(routes=ROUTES)
    app.state.simulator = SimulatorState(gate, generate_company(travellers, seed))
    app.state.tokens = tokens
    app.state.ess_subscriptions = ess.Subscriptions()
    return app


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


def _state(request: Request) -> SimulatorState:
    state: SimulatorState = request.app.state.simulator
    return state


def _params(request: Request) -> dict[str, str]:
    """Query parameters by lower-case name (Concur's own examples mix `Page` and `page`)."""
    return {key.lower(): value for key, value in request.query_params.items()}


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    try:
        return max(1, int(params[name])) if name in params else default
    except ValueError:
        return default


def _since(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=None)


def _answer(seen: SeenRequest, body: bytes | str, status: int = 200) -> Response:
    seen.status = status
    return Response(body, status, media_type=XML)


def _invalid(seen: SeenRequest, message: str) -> Response:
    return _answer(seen, documents.error_document(message), 400)


async def _document(request: Request, template: str, **values: str) -> Response:
    seen, token, early = await _state(request).gate.admit(request)
    if early is not None:
        return early
    login = request.query_params.get("userid_value") or f"traveller-{token[-6:]}@example.com"
    return _answer(seen, documents.from_template(template, LOGIN_ID=login, **values))


async def trip(request: Request) -> Response:
    return await _document(request, "trip", TRIP_ID=request.path_params["trip_id"])


async def _company_call(request: Request, api: str) -> tuple[str, Response | None]:
    """Admit a v4 call: company tokens (Bearer) only. (The token, or the early answer.)"""
    seen, token, early = await _state(request).gate.admit(request)
    if early is None and seen.scheme != "Bearer":
        seen.status = 401
        return token, JSONResponse({"error": f"{api} takes a company token (Bearer)"}, 401)
    seen.status = seen.status or 200
    return token, early


async def trip_v4(request: Request) -> Response:
    token, early = await _company_call(request, "Itinerary v4")
    if early is not None:
        return early
    login = f"traveller-{token[-6:]}@example.com"
    body = documents.from_template("itinerary_v4", TRIP_URL=str(request.url), LOGIN_ID=login)
    return Response(body, media_type="application/json")


async def identity_v4(request: Request) -> Response:
    _, early = await _company_call(request, "Identity v4")
    if early is not None:
        return early
    user = request.path_params["user_id"]
    login = f"user-{user[:8]}@example.com"
    body = documents.from_template("identity_v4", USER_ID=user, USER_URL=str(request.url), LOGIN_ID=login)
    return Response(body, media_type="application/scim+json")


async def profile(request: Request) -> Response:
    v1 = "/v1.0/" in request.url.path
    if v1 and "lastmodifieddate" in _params(request):  # v1 lists summaries at the profile URL
        return await profile_summaries(request)
    return await _document(request, "profile_v1" if v1 else "profile_v2")


async def fop(request: Request) -> Response:
    return await _document(request, "fop")


async def profile_summaries(request: Request) -> Response:
    state = _state(request)
    seen, _, early = await state.gate.admit(request)
    if early is not None:
        return early
    params = _params(request)
    since = params.get("lastmodifieddate")
    if not since:
        return _invalid(seen, "LastModifiedDate is required")
    try:
        cutoff = _since(since)
    except ValueError:
        return _invalid(seen, f"Invalid LastModifiedDate: {since}")
    per_page = min(_int_param(params, "itemsperpage", PROFILE_PAGE_MAX), PROFILE_PAGE_MAX)
    page = _int_param(params, "page", 1)
    changed = [t for t in state.company.travellers if datetime.fromisoformat(t.modified) >= cutoff]
    chunk = changed[(page - 1) * per_page : page * per_page]
    paging = Paging(len(changed), page, per_page)
    return _answer(seen, documents.profile_summaries(chunk, paging, v2="/v2.0/" in request.url.path))


async def trip_summaries(request: Request) -> Response:
    state = _state(request)
    seen, token, early = await state.gate.admit(request)
    if early is not None:
        return early
    params = _params(request)
    trips = state.company.trips
    if since := params.get("lastmodifieddate"):
        try:
            cutoff = _since(since)
        except ValueError:
            return _invalid(seen, f"Invalid lastModifiedDate: {since}")
        trips = [t for t in trips if datetime.fromisoformat(t.modified) >= cutoff]
    user = params.get("userid_value") or f"traveller-{token[-6:]}@example.com"
    if user.upper() != "ALL":
        trips = [t for t in trips if t.login == user]
    per_page = _int_param(params, "itemsperpage", 200 if "page" in params else 1000)
    page = _int_param(params, "page", 1)
    chunk = trips[(page - 1) * per_page : page * per_page]
    base = str(request.base_url).rstrip("/")
    if params.get("includemetadata", "").lower() != "true":
        return _answer(seen, documents.trip_summaries(chunk, base, None))
    pages = Paging(len(trips), page, per_page).total_pages

    def page_url(number: int) -> str:
        if number < 1 or number > pages:
            return ""
        return str(request.url.include_query_params(Page=str(number)))

    paging = Paging(len(trips), page, per_page, page_url(page - 1), page_url(page + 1))
    return _answer(seen, documents.trip_summaries(chunk, base, paging))


async def subscription(request: Request) -> Response:
    state = _state(request)
    seen, token, early = await state.gate.admit(request)
    if early is not None:
        return early
    kind = _params(request).get("type", "").lower()
    if kind not in SUBSCRIPTION_TYPES:
        return _invalid(seen, f"Invalid notification type: {kind or '(none)'}")
    scope = "company" if request.url.path.startswith("/api/company/") else "user"
    key = (scope, kind, token)
    if request.url.path.endswith("/unsubscribe"):
        state.subscriptions.pop(key, None)
    else:
        state.subscriptions[key] = datetime.now(UTC).isoformat(timespec="seconds")
    return _answer(seen, documents.subscription_success())


async def add_fault(request: Request) -> Response:
    faults = _state(request).gate.faults
    faults.append(Fault(**await request.json()))
    return JSONResponse({"faults": len(faults)})


async def clear(request: Request) -> Response:
    gate = _state(request).gate
    gate.faults.clear()
    gate.requests.clear()
    return JSONResponse({"cleared": True})


async def requests(request: Request) -> Response:
    return JSONResponse([asdict(seen) for seen in _state(request).gate.requests])


async def subscriptions(request: Request) -> Response:
    listed = sorted(_state(request).subscriptions.items())
    return JSONResponse(
        [
            {"scope": scope, "type": kind, "token": mask(token), "since": since}
            for (scope, kind, token), since in listed
        ]
    )


async def company_info(request: Request) -> Response:
    company = _state(request).company
    return JSONResponse(
        {"travellers": [asdict(t) for t in company.travellers], "trips": [asdict(t) for t in company.trips]}
    )


_SUBSCRIBE_PATHS = [
    f"/api/{area}/v1.0/{action}"
    for area in ("travelprofile", "user", "company")
    for action in ("subscribe", "unsubscribe")
]
ROUTES = [
    Route("/api/travel/trip/v1.1/", trip_summaries, methods=["GET"]),
    Route("/api/travel/trip/v1.1", trip_summaries, methods=["GET"]),
    Route("/api/travel/trip/v1.1/{trip_id}", trip, methods=["GET"]),
    Route("/travel/v4/trips/{trip_id}", trip_v4, methods=["GET"]),
    Route("/profile/identity/v4/Users/{user_id}", identity_v4, methods=["GET"]),
    Route("/api/travelprofile/v2.0/summary", profile_summaries, methods=["GET"]),
    Route("/api/travelprofile/{version}/profile", profile, methods=["GET"]),
    Route("/api/travelprofile/v2.0/fop", fop, methods=["GET"]),
    *(Route(path, subscription, methods=["POST"]) for path in _SUBSCRIBE_PATHS),
    Route(TOKEN_PATH, oauth.token, methods=["POST"]),
    Route("/events/v4/topics", ess.topics, methods=["GET"]),
    Route("/events/v4/subscriptions/webhook", ess.put_subscription, methods=["PUT"]),
    Route("/events/v4/subscriptions", ess.list_subscriptions, methods=["GET"]),
    Route("/events/v4/subscriptions/{ident}", ess.list_subscriptions, methods=["GET"]),
    Route("/events/v4/subscriptions/{ident}", ess.delete_subscription, methods=["DELETE"]),
    Route("/_simulator/ess-public-key", ess.public_key, methods=["GET"]),
    Route("/_simulator/ess/events", ess.signed_events, methods=["GET"]),
    Route("/_simulator/clock", oauth.clock, methods=["POST"]),
    Route("/_simulator/revoke", oauth.revoke, methods=["POST"]),
    Route("/_simulator/grants", oauth.grants, methods=["GET"]),
    Route("/_simulator/faults", add_fault, methods=["POST"]),
    Route("/_simulator/faults", clear, methods=["DELETE"]),
    Route("/_simulator/requests", requests, methods=["GET"]),
    Route("/_simulator/subscriptions", subscriptions, methods=["GET"]),
    Route("/_simulator/company", company_info, methods=["GET"]),
]
