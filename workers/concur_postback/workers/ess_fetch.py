"""From an ESS event to the event its sinks receive: what changed, fetched with the company's token.

* `public.concur.user.travel.profile`: `TravelProfileCreated`/`Updated` fetch the traveller's Travel
  Profile v2 by login (`facts.loginId`, `userid_type=login`) with the company token, from the
  company's geolocation, through the postbacks' own profile parser (kind `profile`);
  `TravelProfileDeleted` fetches nothing (kind `profile`, `data: null`).
* `public.concur.travel.itinerary`: `ItineraryCreated`/`Updated`/`Cancelled` fetch the trip from
  Itinerary v4 (`facts.hrefs.v4` when Concur gives it, on an allowed host; else the company's
  geolocation `/travel/v4/trips/{facts.id}`) with Concur's correlation id, read by the XML trips' own
  records (kind `itinerary`; a cancelled trip Concur no longer has is delivered without data, as for
  postbacks); `ItineraryDeleted`/`Anonymized` fetch nothing (``data: null``).
* the identity topic (`public.concur.user.profile.identity`; Concur's samples also say
  `public.concur.profile.identity`): `IdentityProfileCreated`/`Updated` fetch the Identity v4 user
  at `facts.userHref` (kind `identity`); `IdentityProfileDeleted` fetches nothing.
* Every other topic is delivered as Concur sent it (kind `event`), never dropped.

A fetch fails the way a postback's does (the same retry horizon and permanent causes); a company whose
refresh token Concur refused fails its notifications with the reason `company connect` requeues.
"""

from __future__ import annotations

from urllib.parse import quote

from concur_postback.companies import CompanyTokens
from concur_postback.concur.client import JSON, XML, ConcurClient
from concur_postback.concur.ess import (
    IDENTITY_DELETED,
    IDENTITY_FETCHED,
    IDENTITY_TOPICS,
    ITINERARY_FETCHED,
    ITINERARY_GONE,
    ITINERARY_TOPIC,
    PROFILE_DELETED,
    PROFILE_FETCHED,
    PROFILE_TOPIC,
    EssEvent,
)
from concur_postback.concur.fop import parse_fop
from concur_postback.concur.identity import parse_identity
from concur_postback.concur.notification import Kind
from concur_postback.concur.profiles import parse_profile
from concur_postback.concur.trips import parse_trip_v4
from concur_postback.config import Settings
from concur_postback.errors import PermanentFetch, RetryableFetch
from concur_postback.events import Event, build_ess_event, now_iso
from concur_postback.inbox import Record


class EssFetcher:
    def __init__(self, settings: Settings, client: ConcurClient, companies: CompanyTokens) -> None:
        self._settings = settings
        self._client = client
        self._companies = companies

    async def event(self, record: Record, sent: EssEvent) -> Event:
        """The event for one ESS event (card numbers masked); FetchError when Concur did not answer."""
        sent = sent.masked()
        if record.kind is Kind.FOP:
            return await self._fop(record, sent)
        if sent.topic == ITINERARY_TOPIC and sent.event_type in ITINERARY_FETCHED:
            return await self._trip(record, sent)
        if sent.topic == ITINERARY_TOPIC and sent.event_type in ITINERARY_GONE:
            return build_ess_event(record, sent, kind=Kind.ITINERARY, data=None)
        if sent.topic in IDENTITY_TOPICS and sent.event_type in IDENTITY_FETCHED:
            return await self._identity(record, sent)
        if sent.topic in IDENTITY_TOPICS and sent.event_type == IDENTITY_DELETED:
            return build_ess_event(record, sent, kind=Kind.IDENTITY, data=None)
        if sent.topic == PROFILE_TOPIC and sent.event_type in PROFILE_FETCHED:
            return await self._profile(record, sent)
        if sent.topic == PROFILE_TOPIC and sent.event_type == PROFILE_DELETED:
            return build_ess_event(record, sent, kind=Kind.PROFILE, data=None)
        return build_ess_event(record, sent)

    async def _profile(self, record: Record, sent: EssEvent) -> Event:
        company, login = _traveller(sent)
        params = {"userid_type": "login", "userid_value": login}
        body = await self._get(company, "/api/travelprofile/v2.0/profile", Kind.PROFILE, params=params)
        profile = parse_profile(body)
        return build_ess_event(record, sent, kind=Kind.PROFILE, data=profile, fetched_at=now_iso())

    async def _fop(self, record: Record, sent: EssEvent) -> Event:
        """The form of payment beside a travel profile event (ESS_FETCH_FOP): there is no FOP v4."""
        company, login = _traveller(sent)
        params = {"userid_type": "login", "userid_value": login}
        body = await self._get(company, "/api/travelprofile/v2.0/fop", Kind.FOP, params=params)
        return build_ess_event(record, sent, kind=Kind.FOP, data=parse_fop(body), fetched_at=now_iso())

    async def _trip(self, record: Record, sent: EssEvent) -> Event:
        trip_id, company = sent.facts.get("id"), sent.company_id
        if not isinstance(trip_id, str) or not trip_id or company is None:
            raise PermanentFetch(f"{sent.event_type} without facts.id and facts.companyId")
        hrefs = sent.facts.get("hrefs")
        href = hrefs.get("v4") if isinstance(hrefs, dict) else None
        path = href if isinstance(href, str) and href else "/travel/v4/trips/" + quote(trip_id, safe="")
        correlation = {"concur-correlationid": sent.correlation_id}
        try:
            body = await self._get(company, path, Kind.ITINERARY, accept=JSON, headers=correlation)
        except PermanentFetch as exc:
            if exc.status == 404 and sent.event_type == "ItineraryCancelled":
                return build_ess_event(record, sent, kind=Kind.ITINERARY, data=None)
            raise
        trip = parse_trip_v4(body)
        return build_ess_event(record, sent, kind=Kind.ITINERARY, data=trip, fetched_at=now_iso())

    async def _identity(self, record: Record, sent: EssEvent) -> Event:
        href, user, company = sent.facts.get("userHref"), sent.user_id, sent.company_id
        where = href if isinstance(href, str) and href else None
        if where is None and user is not None:
            where = "/profile/identity/v4/Users/" + quote(user, safe="")
        if where is None or company is None:
            raise PermanentFetch(f"{sent.event_type} without facts.userHref (or userId) and companyId")
        identity = parse_identity(await self._get(company, where, Kind.IDENTITY, accept=JSON))
        return build_ess_event(record, sent, kind=Kind.IDENTITY, data=identity, fetched_at=now_iso())

    async def _get(
        self,
        company: str,
        where: str,
        kind: Kind,
        *,
        params: dict[str, str] | None = None,
        accept: str = XML,
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """GET ``where`` (a path at the company's geolocation, or a whole URL Concur named) with the
        company's token. A 401 before the token's time (revoked, or the clocks disagree) makes the
        next attempt refresh it first."""
        token, geolocation = await self._companies.access(company)
        base = (geolocation or self._settings.concur_base_url).rstrip("/")
        url = where if where.startswith(("https://", "http://")) else base + where
        try:
            return await self._client.get(
                url, token, params, kind.value, scheme="Bearer", accept=accept, headers=headers
            )
        except PermanentFetch as exc:
            if exc.status != 401:
                raise
            await self._companies.forget_access(company)
            raise RetryableFetch(
                f"HTTP 401 with company {company}'s access token: it is refreshed", 401
            ) from None


def _traveller(sent: EssEvent) -> tuple[str, str]:
    """(company, login) a travel profile event names; PermanentFetch when it names neither."""
    login, company = sent.facts.get("loginId"), sent.company_id
    if not isinstance(login, str) or not login or company is None:
        raise PermanentFetch(f"{sent.event_type} without facts.loginId and facts.companyId")
    return company, login
