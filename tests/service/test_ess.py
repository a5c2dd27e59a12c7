"""`POST /events` over real HTTP against a real Redis: signed ESS events stored once, the rest refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from redis import Redis

from concur_postback.config import Settings
from concur_postback.keys import INBOX_KEY, RECORD_PREFIX
from concur_postback.simulator.ess import EssSigner, process_signer
from tests.concur.test_ess import EXAMPLES, _valid_json
from tests.conftest import CapturedLogs, LiveServer

SIGNER = process_signer()
EVENT_TOPIC = "public.concur.user.travel.profile"
USER = "0723e5bb-1e24-4311-8388-748975ec56a3"
EVENT = orjson.dumps(
    {
        "id": "5ffcdb2f1f9f1f72720a492a1158f12f",
        "correlationId": "bd019209-024f-4186-ac24-137d7e9e2b2b",
        "eventType": "TravelProfileUpdated",
        "topic": EVENT_TOPIC,
        "timeStamp": "2024-07-29T12:22:15.715Z",
        "facts": {"loginId": "traveller@example.com", "userId": USER, "companyId": "c-1"},
    }
)


def post_event(
    server: LiveServer, body: bytes, path: str = "/events", signature: str | None = ""
) -> httpx.Response:
    """POST an ESS event, signed by the simulator's key unless ``signature`` is given (None: unsigned)."""
    headers = {"content-type": "application/json"}
    if signature is not None:
        headers["concur-signature"] = signature or SIGNER.sign(body)
    return server.client.post(path, content=body, headers=headers)


@pytest.fixture
def ess_settings(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    keys = tmp_path / "ess-keys.pem"
    keys.write_bytes(SIGNER.public_pem())
    return lambda **overrides: make_settings(ess_public_keys=keys, **overrides)


def test_a_signed_event_is_stored_once_and_its_redelivery_is_a_duplicate(
    ess_settings: Callable[..., Settings], make_server: Callable[[Settings], LiveServer], redis: Redis
) -> None:
    server = make_server(ess_settings())
    first = post_event(server, EVENT)
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    again = post_event(server, EVENT)  # ESS delivers at least once: the same event id
    assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    assert [raw.decode() for raw in redis.lrange(INBOX_KEY, 0, -1)] == [first.json()["id"]]
    stored = redis.get(RECORD_PREFIX + first.json()["id"]) or b""
    record = orjson.loads(stored)
    assert (record["source"], record["kind"], record["topic"]) == ("ess", "event", EVENT_TOPIC)
    for person in (b"traveller@example.com", USER.encode()):  # sealed, not in clear
        assert person not in stored


@pytest.mark.parametrize(
    "signature",
    [None, "not base64!", "QUJD", "wrong-key"],
)
def test_an_unsigned_or_badly_signed_event_is_401_and_logged_without_its_body(
    signature: str | None,
    ess_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
    captured_logs: CapturedLogs,
    redis: Redis,
) -> None:
    server = make_server(ess_settings())
    if signature == "wrong-key":
        signature = EssSigner.generate().sign(EVENT)
    answer = post_event(server, EVENT, signature=signature)
    assert answer.status_code == 401
    assert answer.json()["error"] == "bad_signature"
    assert redis.llen(INBOX_KEY) == 0
    (line,) = captured_logs.named("ess.unauthorized")
    assert "traveller@example.com" not in captured_logs.text and USER not in captured_logs.text
    assert line["status"] == 401


def test_a_tampered_body_is_401(
    ess_settings: Callable[..., Settings], make_server: Callable[[Settings], LiveServer]
) -> None:
    server = make_server(ess_settings())
    tampered = EVENT.replace(b"traveller@", b"attacker@")
    assert post_event(server, tampered, signature=SIGNER.sign(EVENT)).status_code == 401


def test_concurs_examples_that_are_not_json_are_400_and_the_others_200(
    ess_settings: Callable[..., Settings], make_server: Callable[[Settings], LiveServer]
) -> None:
    server = make_server(ess_settings())
    for path in EXAMPLES:
        answer = post_event(server, path.read_bytes())
        assert answer.status_code == (200 if _valid_json(path) else 400), (path.name, answer.text)


def test_behind_a_secret_path_only_that_path_takes_events(
    ess_settings: Callable[..., Settings], make_server: Callable[[Settings], LiveServer]
) -> None:
    server = make_server(ess_settings(postback_secret="s3cret-path"))
    assert post_event(server, EVENT).status_code == 404
    assert post_event(server, EVENT, "/events/wrong").status_code == 404
    assert post_event(server, EVENT, "/events/s3cret-path").status_code == 200
    assert server.client.get("/events/s3cret-path").status_code == 405


def test_with_verification_off_unsigned_events_are_taken_and_every_start_warns(
    ess_settings: Callable[..., Settings],
    make_server: Callable[[Settings], LiveServer],
    captured_logs: CapturedLogs,
) -> None:
    server = make_server(ess_settings(ess_verify_signature=False))
    assert post_event(server, EVENT, signature=None).status_code == 200
    assert len(captured_logs.named("ess.signatures_not_verified")) == 1
