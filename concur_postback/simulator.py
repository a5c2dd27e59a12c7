"""A stand-in for Concur's travel APIs, for local work, tests and benchmarks (`concur-postback simulate`).

Serves a trip, a travel profile (v1 and v2) and a form of payment for any token, built from Concur's
documented examples (the trip id and login id filled in), with a configurable latency. Faults are
injected over HTTP, so a test can script Concur's bad days: `POST /_simulator/faults` with
`{"match": "<substring of path or token>", "status": 503, "times": 2, "retry_after": "1",
"delay_ms": 0}` (status 0: delay, then answer normally); `GET /_simulator/requests` lists what
was asked (tokens masked to the last four).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from concur_postback.concur.notification import mask

# Next to this module (importlib.resources does not read namespace packages such as this one).
_DATA = Path(__file__).resolve().parent / "simulator_data"
TEMPLATE_NAMES = ("trip", "profile_v1", "profile_v2", "fop")
TEMPLATES = {name: (_DATA / f"{name}.xml").read_text() for name in TEMPLATE_NAMES}
XML = "application/xml"


@dataclass
class Fault:
    match: str
    status: int = 503
    times: int = 1
    retry_after: str | None = None
    delay_ms: int = 0
    body: str = ""


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    scheme: str
    token: str
    status: int = 0


@dataclass
class SimulatorState:
    latency_ms: int = 0
    faults: list[Fault] = field(default_factory=list)
    requests: deque[Seen] = field(default_factory=lambda: deque(maxlen=10_000))

    def take_fault(self, path: str, token: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and (fault.match in path or fault.match == token):
                fault.times -= 1
                return fault
        return None


def create_simulator(latency_ms: int = 0, on_request: Callable[[Seen], None] | None = None) -> Starlette:
    """``on_request`` is called with every API request as it arrives (tests await it)."""
    state = SimulatorState(latency_ms=latency_ms)

    async def serve(request: Request, template: str, **values: str) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        seen = Seen(request.method, request.url.path, dict(request.query_params), scheme, mask(token))
        state.requests.append(seen)
        if on_request is not None:
            on_request(seen)
        if scheme not in ("OAuth", "Bearer") or not token:
            seen.status = 401
            return Response("<Error><Message>Unauthorized</Message></Error>", 401, media_type=XML)
        fault = state.take_fault(request.url.path, token)
        delay = (fault.delay_ms if fault else 0) or state.latency_ms
        if delay:
            await asyncio.sleep(delay / 1000)
        if fault is not None and fault.status:  # status 0: only the delay, then the normal answer
            seen.status = fault.status
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            body = fault.body or f"<Error><Message>HTTP {fault.status}</Message></Error>"
            return Response(body, fault.status, headers, media_type=XML)
        login = request.query_params.get("userid_value") or f"traveller-{token[-6:]}@example.com"
        body = TEMPLATES[template].replace("{{LOGIN_ID}}", login)
        for key, value in values.items():
            body = body.replace("{{" + key + "}}", value)
        seen.status = 200
        return Response(body, media_type=XML)

    async def trip(request: Request) -> Response:
        return await serve(request, "trip", TRIP_ID=request.path_params["trip_id"])

    async def profile(request: Request) -> Response:
        return await serve(request, "profile_v1" if "/v1.0/" in request.url.path else "profile_v2")

    async def fop(request: Request) -> Response:
        return await serve(request, "fop")

    async def add_fault(request: Request) -> Response:
        state.faults.append(Fault(**await request.json()))
        return JSONResponse({"faults": len(state.faults)})

    async def clear(_: Request) -> Response:
        state.faults.clear()
        state.requests.clear()
        return JSONResponse({"cleared": True})

    async def requests(_: Request) -> Response:
        return JSONResponse([asdict(seen) for seen in state.requests])

    return Starlette(
        routes=[
            Route("/api/travel/trip/v1.1/{trip_id}", trip, methods=["GET"]),
            Route("/api/travelprofile/{version}/profile", profile, methods=["GET"]),
            Route("/api/travelprofile/v2.0/fop", fop, methods=["GET"]),
            Route("/_simulator/faults", add_fault, methods=["POST"]),
            Route("/_simulator/faults", clear, methods=["DELETE"]),
            Route("/_simulator/requests", requests, methods=["GET"]),
        ]
    )


def run_simulator(host: str, port: int, latency_ms: int) -> None:
    uvicorn.run(create_simulator(latency_ms), host=host, port=port, log_config=None, access_log=False)
