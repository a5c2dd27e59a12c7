"""The metrics module: the Redis-derived queue depths, exposition, multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from concur_postback import depths as depths_module
from concur_postback import keys, metrics
from concur_postback.config import Settings
from concur_postback.embedded import free_port
from tests.conftest import profiles, store

ROOT = Path(__file__).resolve().parents[1]


def depths(collector: metrics.QueueDepthCollector) -> dict[str, float]:
    families = {family.name: family for family in collector.collect()}
    values = {
        sample.labels["queue"]: sample.value for sample in families["concur_postback_queue_depth"].samples
    }
    [age] = families["concur_postback_oldest_pending_seconds"].samples
    values["oldest_pending_seconds"] = age.value
    return values


def test_queue_depths_are_read_from_redis(redis_url: str, redis: Redis, settings: Settings) -> None:
    collector = metrics.QueueDepthCollector(redis_url, settings.queue_name)
    try:
        assert depths(collector) == dict.fromkeys((*metrics.QUEUES, "oldest_pending_seconds"), 0)
        ids = [record.id for record in store(redis, settings, profiles(6))]
        redis.lrem(keys.INBOX_KEY, 0, ids[3])  # one in a job, one waiting for a retry, one failed
        redis.zadd(keys.LEASED_KEY, {ids[3]: time.time() + 20})
        redis.lrem(keys.INBOX_KEY, 0, ids[4])
        redis.zadd(keys.RETRY_KEY, {ids[4]: time.time() + 20})
        redis.lrem(keys.INBOX_KEY, 0, ids[5])
        redis.zrem(keys.PENDING_KEY, ids[5])
        redis.zadd(keys.FAILED_KEY, {ids[5]: time.time()})
        redis.rpush(depths_module.RQ_QUEUE_PREFIX + settings.queue_name, "job-1", "job-2")
        # dequeued by a worker, not started yet: still queued
        redis.rpush(depths_module.RQ_QUEUE_PREFIX + settings.queue_name + ":intermediate", "job-3")
        # RQ scores a failed job by when it expires; an expired one is gone at RQ's next clean-up.
        failed = depths_module.RQ_FAILED_PREFIX + settings.queue_name
        redis.zadd(failed, {"old": time.time() - 10, "new": time.time() + 3600, "kept": -1})
        redis.zadd(keys.DEAD_KEY, {"a.s1": 1})
        redis.hset(keys.SINK_NAMES_KEY, mapping={"s1": "one", "s2": "two"})
        redis.zadd(keys.sink_retry_key("s1"), {"b": 1, "c": 2})
        redis.zadd(keys.sink_retry_key("s2"), {"b": 1})
        redis.rpush("rq:queue:some-other-queue", "not ours")
        values = depths(collector)
    finally:
        collector.close()
    oldest = values.pop("oldest_pending_seconds")
    assert 0 <= oldest < 60
    assert values == {
        "pending": 5,
        "inbox": 3,
        "in_progress": 1,
        "fetch_retries": 1,
        "failed_notifications": 1,
        "jobs_queued": 3,
        "jobs_failed": 2,
        "dead_letters": 1,
        "sink_retries": 3,
    }


def test_unreachable_redis_exports_no_depths_but_the_rest() -> None:
    """How long the scrape then takes is redis-py's bounded retries (connections.BACKOFF), not
    asserted here: a timed assertion only measures the machine's load."""
    collector = metrics.QueueDepthCollector(f"redis://127.0.0.1:{free_port()}/0", "q", timeout_seconds=0.2)
    assert list(collector.collect()) == []
    text = metrics.exposition(collector).decode()  # the rest of the scrape still works
    assert "concur_postback_postbacks_total" in text
    assert "concur_postback_queue_depth" not in text
    collector.close()


def test_exposition_has_every_metric_and_the_extra_collectors(redis_url: str, settings: Settings) -> None:
    collector = metrics.QueueDepthCollector(redis_url, settings.queue_name)
    text = metrics.exposition(collector).decode()
    collector.close()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "concur_postback_postbacks",
        "concur_postback_ack_seconds",
        "concur_postback_fetch_seconds",
        "concur_postback_fetches",
        "concur_postback_deliveries",
        "concur_postback_notifications",
        "concur_postback_queue_depth",
        "concur_postback_oldest_pending_seconds",
    } <= names


def test_postback_counters_cover_every_kind_and_outcome() -> None:
    counters = metrics.postback_counters()
    assert set(counters) == {
        (kind, outcome)
        for kind in ("itinerary", "fop", "profile", "unknown")
        for outcome in ("accepted", "duplicate", "rejected", "unavailable", "too_large")
    }
    labels = {"kind": "fop", "outcome": "accepted"}
    before = REGISTRY.get_sample_value("concur_postback_postbacks_total", labels)
    assert before is not None  # every series exists from the start, at 0 or more
    counters["fop", "accepted"].inc()
    assert REGISTRY.get_sample_value("concur_postback_postbacks_total", labels) == before + 1


RECORD = """
import sys
from concur_postback import depths as depths_module
from concur_postback import keys, metrics
for _ in range(int(sys.argv[1])):
    metrics.postback_counters()["itinerary", "accepted"].inc()
    metrics.ACK_SECONDS.observe(0.004)
sys.stdout.buffer.write(metrics.exposition())
"""


def test_multiprocess_mode_sums_the_processes(tmp_path: Path) -> None:
    """`serve --workers N`: with PROMETHEUS_MULTIPROC_DIR every process's values are in the scrape."""
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path), "PYTHONPATH": str(ROOT)}

    def run(count: int) -> dict[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", RECORD, str(count)], env=env, capture_output=True, check=True, cwd=ROOT
        ).stdout.decode()
        return {
            sample.name + repr(sorted(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(out)
            for sample in family.samples
        }

    run(2)
    values = run(3)  # another process: its scrape includes the first one's values
    accepted = "concur_postback_postbacks_total[('kind', 'itinerary'), ('outcome', 'accepted')]"
    assert values[accepted] == 5
    assert values["concur_postback_ack_seconds_count[]"] == 5
    assert values["concur_postback_ack_seconds_bucket[('le', '0.005')]"] == 5
    assert values["concur_postback_ack_seconds_bucket[('le', '0.003')]"] == 0
