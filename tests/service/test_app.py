"""`GET /metrics` on the web tier, over real HTTP against a real Redis.

The default registry is process-global (other tests post too), so counters are compared before/after.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from concur_postback.config import Settings
from concur_postback.embedded import free_port
from tests.conftest import NOTIFICATION, TOKEN, CapturedLogs, LiveServer

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: LiveServer) -> Samples:
    response = server.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def postbacks(samples: Samples, kind: str, outcome: str) -> float:
    return value(samples, "concur_postback_postbacks_total", kind=kind, outcome=outcome)


def test_postback_outcomes_and_queue_depths(
    make_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
    captured_logs: CapturedLogs,
) -> None:
    server = make_server(make_settings(max_body_bytes=2048))
    before = scrape(server)
    itinerary = {"type": "Itinerary", "oauth_token_key": TOKEN}
    assert server.post(body=NOTIFICATION, **itinerary).json()["status"] == "accepted"
    assert server.post(body=NOTIFICATION, **itinerary).json()["status"] == "duplicate"
    assert server.post(type="Profile", oauth_token_key=TOKEN).json()["status"] == "accepted"
    assert server.post(type="FOP", oauth_token_key=TOKEN).json()["status"] == "accepted"
    assert server.post(type="FOP", oauth_token_key=TOKEN).json()["status"] == "duplicate"  # coalesced
    assert server.post(body=b"<Notification/>", **itinerary).status_code == 400
    assert server.post(type="Bogus", oauth_token_key=TOKEN).status_code == 400
    assert server.post(type="Profile").status_code == 400  # no token: rejected, kind still known
    assert server.post(body=b"x" * 4096, **itinerary).status_code == 413
    after = scrape(server)

    def delta(kind: str, outcome: str) -> float:
        return postbacks(after, kind, outcome) - postbacks(before, kind, outcome)

    assert {
        (kind, outcome): delta(kind, outcome)
        for kind in ("itinerary", "fop", "profile", "unknown")
        for outcome in ("accepted", "duplicate", "rejected", "unavailable", "too_large")
        if delta(kind, outcome)
    } == {
        ("itinerary", "accepted"): 1,
        ("itinerary", "duplicate"): 1,
        ("profile", "accepted"): 1,
        ("fop", "accepted"): 1,
        ("fop", "duplicate"): 1,
        ("itinerary", "rejected"): 1,
        ("unknown", "rejected"): 1,
        ("profile", "rejected"): 1,
        ("itinerary", "too_large"): 1,
    }
    count = "concur_postback_ack_seconds_count"
    assert value(after, count) - value(before, count) == 9
    assert value(after, "concur_postback_ack_seconds_bucket", le="+Inf") == value(after, count)

    depth = {
        queue: value(after, "concur_postback_queue_depth", queue=queue)
        for queue in ("pending", "inbox", "jobs_queued", "jobs_failed", "dead_letters", "sink_retries")
    }
    assert depth == {
        "pending": 3,
        "inbox": 3,
        "jobs_queued": 0,
        "jobs_failed": 0,
        "dead_letters": 0,
        "sink_retries": 0,
    }
    assert 0 <= value(after, "concur_postback_oldest_pending_seconds") < 60
    # Scrapes are logged at debug, not at info; the token never reaches the metrics.
    scrapes = [entry for entry in captured_logs.named("http.request") if entry["path"] == "/metrics"]
    assert scrapes and {entry["level"] for entry in scrapes} == {"debug"}
    assert TOKEN not in server.client.get("/metrics").text


def test_metrics_path_is_not_the_postback(
    make_settings: Callable[..., Settings], make_server: Callable[[Settings], LiveServer]
) -> None:
    server = make_server(make_settings(postback_secret="s3cret-path-segment-0123456789"))
    assert server.client.get("/metrics").status_code == 200
    assert server.client.post("/metrics").status_code == 405


def test_redis_down_counts_unavailable_and_the_scrape_still_answers(
    make_settings: Callable[..., Settings], make_server: Callable[[Settings], LiveServer]
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/0"
    server = make_server(make_settings(redis_url=down, redis_timeout_seconds=0.3))
    before = scrape(server)
    for _ in range(2):
        assert server.post(type="Profile", oauth_token_key=TOKEN).status_code == 503
    after = scrape(server)
    assert postbacks(after, "profile", "unavailable") - postbacks(before, "profile", "unavailable") == 2
    assert not any(name == "concur_postback_queue_depth" for name, _ in after)
