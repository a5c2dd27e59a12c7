"""Rotating the encryption key while notifications and sink retries are stored loses nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
from redis import Redis

from concur_postback.config import Settings
from concur_postback.events import open_event
from concur_postback.inbox import Record
from concur_postback.keys import EVENT_PREFIX, RECORD_PREFIX
from concur_postback.tokens import generate_key, vault_from_settings
from concur_postback.workers.rekey import Rekeyed, rekey
from concur_postback.workers.worker import run_worker
from tests.conftest import Simulator, profiles, store
from tests.processes import clean_env, cli


def test_a_key_rotated_while_data_is_stored_loses_nothing(
    simulator: Simulator, make_settings: Callable[..., Settings], redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    old, new = generate_key(), generate_key()

    def settings(**keys: str) -> Settings:
        return make_settings(
            concur_base_url=simulator.url,
            concur_allowed_hosts=[],
            sinks=f"file://{events} https://127.0.0.1:1/down",  # the second sink owes every event
            sink_backoff_seconds=30,
            **{"token_encryption_key": None, **keys},
        )

    before = settings(token_encryption_key=old)
    handed_over = store(redis, before, profiles(2))
    run_worker(before, burst=True)  # delivered to the file, kept (sealed) for the other sink
    waiting = store(redis, before, profiles(3)[2:])  # a notification not yet fetched

    during = settings(token_encryption_keys=f"{new}, {old}")
    assert rekey(redis, vault_from_settings(during)) == {
        "notifications": Rekeyed(resealed=1),
        "events": Rekeyed(resealed=2),
    }
    assert rekey(redis, vault_from_settings(during))["events"] == Rekeyed(current=2)  # nothing left to do

    after = settings(token_encryption_key=new)  # the old key is gone
    vault = vault_from_settings(after)
    for record in handed_over:
        assert orjson.loads(open_event(vault, record.id, redis.get(EVENT_PREFIX + record.id)))
    [stored] = [Record.from_json(redis.get(RECORD_PREFIX + record.id)) for record in waiting]
    assert vault.decrypt(stored.token, bound_to=stored.id).value == "token-000002-abcdef"
    run_worker(after, burst=True)
    delivered = [orjson.loads(line)["notification_id"] for line in events.read_bytes().splitlines()]
    assert sorted(delivered) == sorted(record.id for record in [*handed_over, *waiting])


def test_rekey_says_what_it_did_and_fails_on_what_it_cannot_open(
    make_settings: Callable[..., Settings], redis: Redis, redis_url: str
) -> None:
    old, new = generate_key(), generate_key()
    store(redis, make_settings(token_encryption_key=old), profiles(1))
    env = clean_env(REDIS_URL=redis_url, TOKEN_ENCRYPTION_KEYS=f"{new},{old}")
    done = cli("rekey", env=env)
    assert done.returncode == 0 and "notifications: 1 re-sealed" in done.stdout
    assert old not in done.stdout + done.stderr and new not in done.stdout + done.stderr
    lost = cli("rekey", env=clean_env(REDIS_URL=redis_url, TOKEN_ENCRYPTION_KEY=generate_key()))
    assert lost.returncode == 1 and "1 under a key not in the ring" in lost.stdout


def test_an_event_an_earlier_version_stored_in_clear_is_read_and_then_sealed(
    make_settings: Callable[..., Settings], redis: Redis
) -> None:
    settings = make_settings()
    redis.set(EVENT_PREFIX + "n1", b'{"id": "evt_1"}', ex=600)
    vault = vault_from_settings(settings)
    assert open_event(vault, "n1", redis.get(EVENT_PREFIX + "n1")) == b'{"id": "evt_1"}'
    assert rekey(redis, vault)["events"] == Rekeyed(resealed=1)
    sealed = redis.get(EVENT_PREFIX + "n1")
    assert b"evt_1" not in sealed and open_event(vault, "n1", sealed) == b'{"id": "evt_1"}'
    assert 0 < redis.ttl(EVENT_PREFIX + "n1") <= 600  # its expiry kept
