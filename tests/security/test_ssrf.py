"""ObjectURIs that would carry a traveller's token off Concur's hosts: refused at ingest (400) and, for
a record that got into Redis some other way, never requested by the worker.

"Never requested" is shown with a real listening socket (`ConnectionTrap`) that counts connections:
the worker's real HTTP stack is aimed at it through IP-address spellings that reach 127.0.0.1, and
the Concur client through a resolver that sends every host name there. Each harness also has a
control in which an allowed URL does reach the trap, so a count of zero means something.
`tests/concur` covers the simplest cases (another host, http, :8443, user-info, 10.0.0.1, ftp).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport
from redis import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from concur_postback.concur.client import ConcurClient
from concur_postback.concur.hosts import HostPolicy
from concur_postback.concur.notification import EventType, ItineraryNotification, Kind, OAuthToken, Postback
from concur_postback.config import Settings
from concur_postback.errors import HostNotAllowed, PermanentFetch, RetryableFetch
from concur_postback.workers.failed import list_failed
from concur_postback.workers.worker import run_worker
from tests.conftest import TOKEN, LiveServer, serve_asgi, store
from tests.security.conftest import ConnectionTrap

TRIP = "/api/travel/trip/v1.1/ABC"
ALLOWED = f"https://www.concursolutions.com{TRIP}"

# Refused by the default policy (https://us.api.concursolutions.com, *.concursolutions.com).
BAD_OBJECT_URIS = [
    # other hosts and suffix tricks
    f"https://concursolutions.com.evil.net{TRIP}",
    f"https://www.concursolutions.com.evil.net{TRIP}",
    f"https://WWW.CONCURSOLUTIONS.COM.EVIL.NET{TRIP}",
    f"https://evilconcursolutions.com{TRIP}",
    f"https://www.evilconcursolutions.com{TRIP}",
    f"https://www.concursolutions.co{TRIP}",
    f"https://www.concursolutions.com\u3002evil.net{TRIP}",  # ideographic full stop
    # loopback, private, link-local and metadata addresses, in every spelling resolvers accept
    f"https://127.0.0.1{TRIP}",
    f"https://127.0.0.1:443{TRIP}",
    f"https://10.20.30.40{TRIP}",
    f"https://172.16.0.1{TRIP}",
    f"https://192.168.1.1{TRIP}",
    f"https://169.254.169.254{TRIP}",
    f"https://[::1]{TRIP}",
    f"https://[fe80::1]{TRIP}",
    f"https://[fe80::1%25eth0]{TRIP}",
    f"https://[::ffff:169.254.169.254]{TRIP}",
    f"https://[::ffff:a9fe:a9fe]{TRIP}",
    f"https://0.0.0.0{TRIP}",
    f"https://localhost{TRIP}",
    f"https://2130706433{TRIP}",  # 127.0.0.1 as one decimal number
    f"https://2852039166{TRIP}",  # 169.254.169.254 likewise
    f"https://0177.0.0.1{TRIP}",  # octal
    f"https://017700000001{TRIP}",
    f"https://0x7f000001{TRIP}",  # hexadecimal
    f"https://0x7f.0.0.1{TRIP}",
    f"https://127.1{TRIP}",
    # other schemes
    f"http://us.api.concursolutions.com{TRIP}",
    "file:///etc/passwd",
    f"file://www.concursolutions.com{TRIP}",
    f"gopher://www.concursolutions.com:443/_GET%20{TRIP}",
    f"dict://www.concursolutions.com:443{TRIP}",
    f"wss://www.concursolutions.com{TRIP}",
    f"//www.concursolutions.com{TRIP}",
    f"www.concursolutions.com{TRIP}",
    "data:text/plain,ABC",
    "javascript:alert(1)",
    # other ports
    f"https://us.api.concursolutions.com:8443{TRIP}",
    f"https://www.concursolutions.com:80{TRIP}",
    f"https://www.concursolutions.com:0{TRIP}",
    f"https://www.concursolutions.com:65536{TRIP}",
    f"https://www.concursolutions.com:443:443{TRIP}",
    # user-info tricks
    f"https://us.api.concursolutions.com@evil.com{TRIP}",
    f"https://us.api.concursolutions.com:443@evil.com{TRIP}",
    f"https://evil.com@www.concursolutions.com{TRIP}",
    f"https://@www.concursolutions.com{TRIP}",
    f"https://us.api.concursolutions.com%40evil.com{TRIP}",
    # backslashes: a WHATWG parser reads `\` as `/`, so the host below is evil.com
    f"https://evil.com\\.concursolutions.com{TRIP}",
    f"https://evil.com\\@www.concursolutions.com{TRIP}",
    f"https://www.concursolutions.com\\@evil.com{TRIP}",
    f"https:\\\\evil.com{TRIP}",
    f"https:/\\www.concursolutions.com{TRIP}",
    # percent-encoded dots, slashes and delimiters in the host
    f"https://evil.com%2F.concursolutions.com{TRIP}",
    f"https://evil.com%2f.concursolutions.com{TRIP}",
    f"https://127.0.0.1%2F.concursolutions.com{TRIP}",
    f"https://evil.com%23.concursolutions.com{TRIP}",
    f"https://evil.com%3F.concursolutions.com{TRIP}",
    f"https://evil.com%00.concursolutions.com{TRIP}",
    f"https://www%2Econcursolutions%2Ecom{TRIP}",
    f"https://evil%2Ecom{TRIP}",
    f"https://a..concursolutions.com{TRIP}",
]
# On an allowed host, paths an HTTP client would resolve to another resource than the trip named.
BAD_TRIP_PATHS = ["%2e%2e", ".%2E", "..", "%2e", "%2e%2e%2fv2.0%2fprofile", "ABC%0A", "ABC%3Fx=1", "ABC%23x"]


def itinerary_body(object_uri: str) -> bytes:
    return (
        "<Notification><ObjectType>ITINERARY</ObjectType>"
        f"<ObjectURI>{object_uri.replace('&', '&amp;')}</ObjectURI>"
        "<EventDateTime>2026-01-01T00:00:00</EventDateTime><EventType>UPDATE</EventType></Notification>"
    ).encode()


def itinerary(object_uri: str, n: int) -> Postback:
    """A notification that bypasses ingest's validation (each a distinct change: none is a duplicate)."""
    note = ItineraryNotification(object_uri, f"T{n}", EventType.UPDATE, "2026-01-01T00:00:00", None)
    return Postback(Kind.ITINERARY, OAuthToken(TOKEN), itinerary=note)


# --- ingest -----------------------------------------------------------------------------------------------


def test_every_bad_object_uri_is_refused_at_ingest_and_nothing_is_stored(
    server: LiveServer, redis: Redis
) -> None:
    assert (
        server.post(body=itinerary_body(ALLOWED), type="Itinerary", oauth_token_key=TOKEN).status_code == 200
    )
    before = redis.dbsize()
    uris = BAD_OBJECT_URIS + [
        f"https://www.concursolutions.com/api/travel/trip/v1.1/{p}" for p in BAD_TRIP_PATHS
    ]
    answers = {
        uri: server.post(body=itinerary_body(uri), type="Itinerary", oauth_token_key=TOKEN) for uri in uris
    }
    let_through = {uri: r.text for uri, r in answers.items() if r.status_code != 400}
    assert not let_through
    codes = {uri: r.json()["error"] for uri, r in answers.items()}
    assert set(codes.values()) <= {"object_uri_not_allowed", "invalid_object_uri"}, codes
    assert redis.dbsize() == before


def test_a_wildcard_admits_names_but_no_address_in_any_spelling() -> None:
    policy = HostPolicy.from_base_url("https://us.api.concursolutions.com", ["*"])
    assert policy.host_allowed("anything.example")
    for host in ("0x7f000001", "0x7f.0.0.1", "0177.0.0.1", "2130706433", "127.1", "0.0.0.0", "::1"):
        assert not policy.host_allowed(host), host
    for host in ("evil.com\\.x", "evil.com%2f.x", "a..b", "evil.com/x", "*"):
        assert not policy.host_allowed(host), host


# --- the Concur client, every host name resolving to the trap --------------------------------------------


class TrapResolver(AbstractResolver):
    """Resolves every host name to the trap (its port too): whatever the client asks for, it gets the trap."""

    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=self.port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        pass


def trapped_client(settings: Settings, trap: ConnectionTrap) -> ConcurClient:
    """The production client and transport (aiohttp), but no DNS: every name leads to the trap."""

    def session() -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=TrapResolver(trap.port)))

    return ConcurClient(settings, AiohttpTransport(client=session))


def outcomes(client: ConcurClient, urls: list[str]) -> dict[str, BaseException | None]:
    """What ``client.get`` did for each URL: the exception it raised, or None if it got a response."""

    async def run() -> dict[str, BaseException | None]:
        found: dict[str, BaseException | None] = {}
        try:
            for url in urls:
                try:
                    await client.get(url, OAuthToken(TOKEN), kind="itinerary")
                except Exception as exc:
                    found[url] = exc
                else:
                    found[url] = None
        finally:
            await client.aclose()
        return found

    return asyncio.run(run())


def test_the_client_sends_nothing_to_a_bad_host_however_it_is_named(
    settings: Settings, trap: ConnectionTrap
) -> None:
    aimed = [
        f"http://127.0.0.1:{trap.port}{TRIP}",
        f"https://127.0.0.1:{trap.port}{TRIP}",
        f"https://2130706433:{trap.port}{TRIP}",
        f"https://0177.0.0.1:{trap.port}{TRIP}",
        f"https://0x7f000001:{trap.port}{TRIP}",
        f"https://127.1:{trap.port}{TRIP}",
        f"https://0.0.0.0:{trap.port}{TRIP}",
        f"https://[::ffff:127.0.0.1]:{trap.port}{TRIP}",
        f"https://www.concursolutions.com@127.0.0.1:{trap.port}{TRIP}",
        f"https://www.concursolutions.com:{trap.port}{TRIP}",  # an allowed name, another port
    ]
    urls = BAD_OBJECT_URIS + aimed
    results = outcomes(trapped_client(settings, trap), urls)
    assert {
        url: type(exc).__name__ for url, exc in results.items() if not isinstance(exc, HostNotAllowed)
    } == {}
    assert all("refusing to send a token" in str(exc) for exc in results.values())
    assert trap.connections() == 0


def test_control_an_allowed_host_does_reach_the_trap(settings: Settings, trap: ConnectionTrap) -> None:
    [result] = outcomes(trapped_client(settings, trap), [ALLOWED]).values()
    assert isinstance(result, RetryableFetch)  # the trap hangs up: a connection error, retried later
    assert trap.connections() == 1


def test_control_under_a_wildcard_names_reach_the_trap_and_addresses_do_not(
    make_settings: Callable[..., Settings], trap: ConnectionTrap
) -> None:
    settings = make_settings(concur_allowed_hosts=["*"])
    urls = [f"https://anything.example{TRIP}", f"https://0x7f000001{TRIP}", f"https://0177.1{TRIP}"]
    results = outcomes(trapped_client(settings, trap), urls)
    assert isinstance(results[urls[0]], RetryableFetch)
    assert isinstance(results[urls[1]], HostNotAllowed)
    assert isinstance(results[urls[2]], HostNotAllowed)
    assert trap.connections() == 1


def redirect_to(location: str) -> Starlette:
    async def redirect(_: Request) -> Response:
        return Response(status_code=302, headers={"Location": location})

    return Starlette(routes=[Route("/{path:path}", redirect)])


@pytest.fixture
def redirecting_concur(trap: ConnectionTrap) -> Iterator[LiveServer]:
    """A 'Concur' that answers every request with a redirect to the trap."""
    running = serve_asgi(redirect_to(f"{trap.url}{TRIP}"))
    yield next(running)
    next(running, None)


def test_a_redirect_off_concur_is_not_followed(
    make_settings: Callable[..., Settings], redirecting_concur: LiveServer, trap: ConnectionTrap
) -> None:
    settings = make_settings(concur_base_url=redirecting_concur.url, concur_allowed_hosts=[])
    client = ConcurClient(settings)
    [result] = outcomes(client, [f"{redirecting_concur.url}{TRIP}"]).values()
    assert isinstance(result, PermanentFetch)
    assert result.status == 302
    assert trap.connections() == 0


# --- the worker, with records stored behind ingest's back ------------------------------------------------


def failed_reasons(redis: Redis, settings: Settings) -> str:
    return "\n".join(f"{entry.id}: {entry.reason}" for entry in list_failed(redis))


def test_the_worker_requests_nothing_for_a_stored_record_aimed_off_concur(
    make_settings: Callable[..., Settings], redis: Redis, trap: ConnectionTrap
) -> None:
    settings = make_settings(concur_connect_timeout_seconds=1, concur_read_timeout_seconds=1)
    p = trap.port
    uris = [
        f"https://127.0.0.1:{p}{TRIP}",
        f"http://127.0.0.1:{p}{TRIP}",
        f"https://2130706433:{p}{TRIP}",
        f"https://0177.0.0.1:{p}{TRIP}",
        f"https://0x7f000001:{p}{TRIP}",
        f"https://127.1:{p}{TRIP}",
        f"https://0.0.0.0:{p}{TRIP}",
        f"https://localhost:{p}{TRIP}",
        f"https://[::ffff:127.0.0.1]:{p}{TRIP}",
        f"https://us.api.concursolutions.com@127.0.0.1:{p}{TRIP}",
        f"https://us.api.concursolutions.com:{p}@127.0.0.1:{p}{TRIP}",
        f"https://127.0.0.1:{p}\\@us.api.concursolutions.com{TRIP}",
        f"https://127.0.0.1:{p}#@us.api.concursolutions.com{TRIP}",
        f"http://127.0.0.1:{p}/?.concursolutions.com",
    ]
    if trap.ipv6:
        uris.append(f"https://[::1]:{p}{TRIP}")
    records = store(redis, settings, [itinerary(uri, n) for n, uri in enumerate(uris)])
    run_worker(settings, burst=True)
    assert trap.connections() == 0
    reasons = failed_reasons(redis, settings)
    for record in records:
        assert f"{record.id}: refusing to send a token" in reasons, record.object_uri
    assert TOKEN not in reasons


def test_with_an_http_base_url_the_worker_fetches_only_its_trips_on_its_port(
    make_settings: Callable[..., Settings], make_trap: Callable[[], ConnectionTrap], redis: Redis
) -> None:
    """The simulator's set-up (an http:// base URL on 127.0.0.1): other ports and other resources on
    the allowed host are never requested; the allowed trip is (the control)."""
    concur, elsewhere = make_trap(), make_trap()
    settings = make_settings(
        concur_base_url=concur.url,
        concur_allowed_hosts=[],
        concur_connect_timeout_seconds=1,
        concur_read_timeout_seconds=1,
    )
    uris = [
        f"http://127.0.0.1:{elsewhere.port}{TRIP}",
        f"http://localhost:{elsewhere.port}{TRIP}",
        f"http://2130706433:{elsewhere.port}{TRIP}",
        f"{concur.url}@127.0.0.1:{elsewhere.port}{TRIP}",
        *(f"{concur.url}/api/travel/trip/v1.1/{path}" for path in BAD_TRIP_PATHS),
    ]
    records = store(redis, settings, [itinerary(uri, n) for n, uri in enumerate(uris)])
    run_worker(settings, burst=True)
    assert (concur.connections(), elsewhere.connections()) == (0, 0)
    reasons = failed_reasons(redis, settings)
    for record in records:
        assert f"{record.id}: refusing to send a token" in reasons, record.object_uri

    [control] = store(redis, settings, [itinerary(f"{concur.url}{TRIP}", len(uris))])
    run_worker(settings, burst=True)
    assert concur.connections() >= 1  # aiohttp retries a connection dropped before the response once
    assert f"{control.id}: refusing" not in failed_reasons(redis, settings)
