"""The simulator's ESS side: its own signing key, signed events about its company, and the ESS
subscription API.

Concur signs with a key whose private half only it holds, so the simulator makes its own (once per
process) and serves the public half at `GET /_simulator/ess-public-key`: a receiver pointed at the
simulator puts that key in ESS_PUBLIC_KEYS (`run --simulate` does). `GET /_simulator/ess/events?count=N`
plans N events about the generated company (every topic, some redelivered), signed: `simulate fire
--ess` posts them. The subscription calls (`/events/v4/topics`, `…/subscriptions`) take an
application token from the client credentials grant.
"""

from __future__ import annotations

import base64
import functools
import uuid
from dataclasses import dataclass, field

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from concur_postback.concur.ess import IDENTITY_TOPICS, ITINERARY_TOPIC, PROFILE_TOPIC
from concur_postback.simulator.company import DEFAULT_SEED, DEFAULT_TRAVELLERS, company_id, generate_company

TOPICS = (ITINERARY_TOPIC, PROFILE_TOPIC, sorted(IDENTITY_TOPICS)[0], "public.concur.travel.book")
REDELIVER_EVERY = 10  # every tenth event is sent again, as ESS does when an answer was lost


@dataclass(frozen=True)
class EssSigner:
    key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> EssSigner:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, body: bytes, scheme: padding.AsymmetricPadding | None = None) -> str:
        """``Concur-Signature`` for ``body``: RSA-SHA256, PSS unless ``scheme`` says otherwise."""
        chosen = scheme or padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
        return base64.b64encode(self.key.sign(body, chosen, hashes.SHA256())).decode("ascii")


@functools.cache
def process_signer() -> EssSigner:
    """This process's signer: generating a key takes tens of milliseconds, so once."""
    return EssSigner.generate()


def plan_events(
    count: int, concur_url: str, *, seed: int = DEFAULT_SEED, travellers: int = DEFAULT_TRAVELLERS
) -> list[bytes]:
    """``count`` ESS events about the generated company, every topic in turn, reproducibly."""
    company = generate_company(max(travellers, 1), seed)
    ident = company_id(seed)
    events: list[bytes] = []
    for n in range(count):
        if n and n % REDELIVER_EVERY == 0:
            events.append(events[-1])
            continue
        traveller = company.travellers[n % len(company.travellers)]
        user = str(uuid.uuid5(uuid.NAMESPACE_URL, traveller.login))
        topic = TOPICS[n % len(TOPICS)]
        facts: dict[str, object] = {"companyId": ident, "userId": user}
        if topic == ITINERARY_TOPIC:
            trip = company.trips[n % len(company.trips)].trip_id if company.trips else f"trip-{n}"
            kind = ("ItineraryCreated", "ItineraryUpdated", "ItineraryCancelled")[n % 3]
            facts.update(id=trip, hrefs={"v4": f"{concur_url}/travel/v4/trips/{trip}"})
        elif topic == PROFILE_TOPIC:
            kind, facts["loginId"] = "TravelProfileUpdated", traveller.login
        elif topic in IDENTITY_TOPICS:
            kind, facts["userHref"] = (
                "IdentityProfileUpdated",
                f"{concur_url}/profile/identity/v4/Users/{user}",
            )
        else:
            kind = "TravelBooked"
        event = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ess-event/{seed}/{n}")),
            "correlationId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ess-correlation/{seed}/{n}")),
            "eventType": kind,
            "topic": topic,
            "timeStamp": f"2026-11-30T10:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
            "facts": facts,
        }
        events.append(orjson.dumps(event))
    return events


# --- the HTTP side ------------------------------------------------------------------------------------
@dataclass
class Subscriptions:
    by_id: dict[str, dict[str, object]] = field(default_factory=dict)


async def public_key(_: Request) -> Response:
    return Response(process_signer().public_pem(), media_type="application/x-pem-file")


async def signed_events(request: Request) -> Response:
    count = min(max(int(request.query_params.get("count", "10")), 1), 100_000)
    seed = int(request.query_params.get("seed", str(DEFAULT_SEED)))
    base = f"{request.url.scheme}://{request.url.netloc}"
    signer = process_signer()
    planned = [
        {"body": body.decode(), "signature": signer.sign(body)}
        for body in plan_events(count, base, seed=seed)
    ]
    return JSONResponse(planned)


def _app_token(request: Request) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme == "Bearer" and bool(request.app.state.tokens.is_app_token(token))


def _subscriptions(request: Request) -> Subscriptions:
    state: Subscriptions = request.app.state.ess_subscriptions
    return state


_REFUSED = JSONResponse({"error": "an application token (client credentials) is required"}, 401)


async def topics(request: Request) -> Response:
    return JSONResponse(list(TOPICS)) if _app_token(request) else _REFUSED


async def put_subscription(request: Request) -> Response:
    if not _app_token(request):
        return _REFUSED
    wanted = orjson.loads(await request.body())
    ident = str(wanted.get("id", ""))
    if (
        not ident
        or wanted.get("topic") not in TOPICS
        or not (wanted.get("webHookConfig") or {}).get("endpoint")
    ):
        return JSONResponse({"message": "id, a known topic and webHookConfig.endpoint are required"}, 400)
    company = company_id(DEFAULT_SEED)
    _subscriptions(request).by_id[ident] = {**wanted, "applicationId": "simulator", "scope": "", "groups": [],
                                            "companyIds": [company]}  # fmt: skip
    return JSONResponse({"message": f"Subscription '{ident}' saved successfully"})


async def list_subscriptions(request: Request) -> Response:
    if not _app_token(request):
        return _REFUSED
    ident = request.path_params.get("ident")
    found = _subscriptions(request).by_id
    return JSONResponse([found[ident]] if ident in found else [] if ident else list(found.values()))


async def delete_subscription(request: Request) -> Response:
    if not _app_token(request):
        return _REFUSED
    ident = request.path_params["ident"]
    if _subscriptions(request).by_id.pop(ident, None) is None:
        return JSONResponse({"message": f"Subscription '{ident}' not found"}, 404)
    return JSONResponse({"message": f"Subscription '{ident}' marked for deletion"})
