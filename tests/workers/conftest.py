"""Worker-side fixtures: the Concur simulator over HTTP, and the pipeline from postback to file sink."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from concur_postback.config import Settings
from concur_postback.simulator import Seen, create_simulator
from concur_postback.workers.worker import run_worker
from tests.conftest import LiveServer, serve_asgi


@dataclass
class Simulator:
    url: str
    client: httpx.Client
    arrivals: queue.Queue[Seen]

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
    arrivals: queue.Queue[Seen] = queue.Queue()
    running = serve_asgi(create_simulator(on_request=arrivals.put))
    live = next(running)
    yield Simulator(live.url, live.client, arrivals)
    next(running, None)


@dataclass
class Pipeline:
    settings: Settings
    server: LiveServer
    events_file: Path

    def post(self, body: bytes = b"", **params: str) -> str:
        response = self.server.post(body=body, **params)
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
    settings = make_settings(
        concur_base_url=simulator.url,
        concur_allowed_hosts=[],
        sinks=f"file://{events_file}",
        fetch_attempts=4,
        fetch_backoff_seconds=0.01,
        fetch_backoff_max_seconds=0.2,
    )
    return Pipeline(settings, make_server(settings), events_file)
