"""Worker-side fixtures: the Concur simulator over HTTP, and the pipeline from postback to file sink."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import Redis

from concur_postback.config import Settings
from concur_postback.keys import LEASED_KEY
from concur_postback.workers.worker import run_worker
from tests.conftest import LiveServer, Simulator


def lease(redis: Redis, *ids: str) -> None:
    """Give stored notifications to a job, as the pump does (a job claims only what it was given)."""
    redis.zadd(LEASED_KEY, dict.fromkeys(ids, time.time() + 300))


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
        fetch_backoff_seconds=0.01,
        fetch_backoff_max_seconds=0.2,
    )
    return Pipeline(settings, make_server(settings), events_file)
