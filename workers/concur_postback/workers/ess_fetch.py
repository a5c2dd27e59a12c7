"""From an ESS event to the event its sinks receive: what changed, fetched with the company's token.

* `public.concur.user.travel.profile`: `TravelProfileCreated`/`Updated` fetch the traveller's Travel
  Profile v2 by login (`facts.loginId`, `userid_type=login`) with the company token, from the
  company's geolocation, through the postbacks' own profile parser (kind `profile`);
  `TravelProfileDeleted` fetches nothing (kind `profile`, `data: null`).
* Every other topic is delivered as Concur sent it (kind `event`), never dropped.

A fetch fails the way a postback's does (the same retry horizon and permanent causes); a company whose
refresh token Concur refused fails its notifications with the reason `company connect` requeues.
"""

from __future__ import annotations

from concur_postback.companies import CompanyTokens
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.ess import EssEvent
from concur_postback.concur.notification import Kind
from concur_postback.concur.profiles import parse_profile
from concur_postback.config import Settings
from concur_postback.errors import PermanentFetch, RetryableFetch
from concur_postback.events import Event, build_ess_event, now_iso
from concur_postback.inbox import Record

PROFILE_TOPIC = "public.concur.user.travel.profile"
PROFILE_FETCHED = frozenset(("TravelProfileCreated", "TravelProfileUpdated"))
PROFILE_DELETED = "TravelProfileDeleted"


class EssFetcher:
    def __init__(self, settings: Settings, client: ConcurClient, companies: CompanyTokens) -> None:
        self._settings = settings
        self._client = client
        self._companies = companies

    async def event(self, record: Record, sent: EssEvent) -> Event:
        """The event for one ESS event (card numbers masked); FetchError when Concur did not answer."""
        sent = sent.masked()
        if sent.topic == PROFILE_TOPIC and sent.event_type in PROFILE_FETCHED:
            return await self._profile(record, sent)
        if sent.topic == PROFILE_TOPIC and sent.event_type == PROFILE_DELETED:
            return build_ess_event(record, sent, kind=Kind.PROFILE, data=None)
        return build_ess_event(record, sent)

    async def _profile(self, record: Record, sent: EssEvent) -> Event:
        login, company = sent.facts.get("loginId"), sent.company_id
        if not isinstance(login, str) or not login or company is None:
            raise PermanentFetch(f"{sent.event_type} without facts.loginId and facts.companyId")
        params = {"userid_type": "login", "userid_value": login}
        body = await self._get(company, "/api/travelprofile/v2.0/profile", params, Kind.PROFILE)
        profile = parse_profile(body)
        return build_ess_event(record, sent, kind=Kind.PROFILE, data=profile, fetched_at=now_iso())

    async def _get(self, company: str, path: str, params: dict[str, str], kind: Kind) -> bytes:
        """GET ``path`` at the company's geolocation with its token. A 401 before the token's time
        (revoked, or the clocks disagree) makes the next attempt refresh it first."""
        token, geolocation = await self._companies.access(company)
        base = (geolocation or self._settings.concur_base_url).rstrip("/")
        try:
            return await self._client.get(base + path, token, params, kind.value, scheme="Bearer")
        except PermanentFetch as exc:
            if exc.status != 401:
                raise
            await self._companies.forget_access(company)
            raise RetryableFetch(
                f"HTTP 401 with company {company}'s access token: it is refreshed", 401
            ) from None
