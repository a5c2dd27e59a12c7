"""The endpoint over real HTTP (uvicorn on a socket) against a real Redis."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from redis import Redis

from concur_postback.config import Settings
from concur_postback.inbox import INBOX_KEY, PENDING_KEY, RECORD_PREFIX, Record
from concur_postback.tokens import TokenVault
from tests.conftest import NOTIFICATION, TOKEN, CapturedLogs, LiveServer

ITINERARY = {"type": "Itinerary", "oauth_token_key": TOKEN}


def stored_records(redis: Redis) -> list[Record]:
    ids = [raw.decode() for raw in redis.lrange(INBOX_KEY, 0, -1)]
    return [Record.from_json(redis.get(RECORD_PREFIX + ident)) for ident in ids]


def test_corpus_notification_is_stored_then_acknowledged(
    server: LiveServer, redis: Redis, settings: Settings
) -> None:
    response = server.post(body=NOTIFICATION, **ITINERARY)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "accepted"
    [record] = stored_records(redis)
    assert record.id == body["id"]
    assert (record.kind.value, record.trip_id, record.event_type) == (
        "itinerary",
        "naIzQJ0y2DBWjCIQOb2SHTsozwBsHDkdP",
        "CREATE",
    )
    assert record.object_uri.startswith("https://www.concursolutions.com/api/travel/trip/v1.1/")
    vault = TokenVault(settings.token_encryption_key.get_secret_value())
    assert vault.decrypt(record.token, bound_to=record.id).value == TOKEN
    assert redis.zscore(PENDING_KEY, record.id) == record.received_ms
    assert 0 < redis.ttl(RECORD_PREFIX + record.id) <= settings.token_ttl_seconds
    assert response.headers["x-request-id"] == record.request_id


@pytest.mark.parametrize("type_", ["FOP", "fop", "Profile", "profile", "PROFILE"])
def test_fop_and_profile_without_body(server: LiveServer, redis: Redis, type_: str) -> None:
    response = server.post(type=type_, oauth_token_key=TOKEN)
    assert response.status_code == 200, response.text
    [record] = stored_records(redis)
    assert record.kind.value == type_.lower()
    assert record.trip_id is None


def test_company_notification_keeps_the_user(server: LiveServer, redis: Redis) -> None:
    response = server.post(
        type="Profile", oauth_token_key=TOKEN, userid_type="login", userid_value="cm@example.com"
    )
    assert response.status_code == 200
    [record] = stored_records(redis)
    assert (record.userid_type, record.userid_value, record.subject) == (
        "login",
        "cm@example.com",
        "login:cm@example.com",
    )


def test_namespaced_bom_body_is_accepted(server: LiveServer, redis: Redis) -> None:
    body = b"\xef\xbb\xbf" + NOTIFICATION.replace(
        b"<Notification>", b'<Notification xmlns="http://www.concursolutions.com/api/travel/trip/2010/06">'
    )
    assert server.post(body=body, **ITINERARY).status_code == 200
    assert len(stored_records(redis)) == 1


def test_redelivered_itinerary_is_acknowledged_but_stored_once(
    server: LiveServer, redis: Redis, captured_logs: CapturedLogs
) -> None:
    first = server.post(body=NOTIFICATION, **ITINERARY)
    again = server.post(body=NOTIFICATION.replace(b"<Context/>", b"<Context>retry</Context>"), **ITINERARY)
    assert first.status_code == again.status_code == 200
    assert again.json() == {"status": "duplicate", "id": first.json()["id"]}
    assert len(stored_records(redis)) == 1
    assert redis.zcard(PENDING_KEY) == 1
    assert [entry["id"] for entry in captured_logs.named("postback.duplicate")] == [first.json()["id"]]


def test_different_events_of_one_trip_are_all_stored(server: LiveServer, redis: Redis) -> None:
    update = NOTIFICATION.replace(b"CREATE", b"UPDATE")
    later = update.replace(b"2013-02-13T08:12:35", b"2013-02-13T09:00:00")
    for body in (NOTIFICATION, update, later):
        assert server.post(body=body, **ITINERARY).json()["status"] == "accepted"
    other_user = server.post(body=NOTIFICATION, type="Itinerary", oauth_token_key=TOKEN + "x")
    assert other_user.json()["status"] == "accepted"
    assert len(stored_records(redis)) == 4


def test_profile_notifications_coalesce_within_the_window(
    make_server: Callable[[Settings], LiveServer], make_settings: Callable[..., Settings], redis: Redis
) -> None:
    server = make_server(make_settings(coalesce_window_seconds=300))
    statuses = [server.post(type="Profile", oauth_token_key=TOKEN).json()["status"] for _ in range(3)]
    assert statuses == ["accepted", "duplicate", "duplicate"]
    assert server.post(type="FOP", oauth_token_key=TOKEN).json()["status"] == "accepted"  # another kind
    assert len(stored_records(redis)) == 2


@pytest.mark.parametrize(
    ("params", "body", "code"),
    [
        ({"oauth_token_key": TOKEN}, b"", "missing_type"),
        ({"type": "Expense", "oauth_token_key": TOKEN}, b"", "invalid_type"),
        ({"type": "FOP"}, b"", "missing_token"),
        ({"type": "Profile", "oauth_token_key": TOKEN, "userid_type": "login"}, b"", "incomplete_user"),
        (ITINERARY, b"", "empty_body"),
        (ITINERARY, b"<Notification>", "malformed_xml"),
        (ITINERARY, NOTIFICATION.replace(b"CREATE", b"DELETE"), "invalid_event_type"),
        (
            ITINERARY,
            NOTIFICATION.replace(b"www.concursolutions.com", b"attacker.example"),
            "object_uri_not_allowed",
        ),
        (ITINERARY, NOTIFICATION.replace(b"<TripId>na", b"<TripId>xx"), "trip_id_mismatch"),
        (ITINERARY, b'<!DOCTYPE x [<!ENTITY a "b">]><Notification/>', "dtd_forbidden"),
    ],
)
def test_invalid_input_gets_400_with_a_json_error_and_stores_nothing(
    server: LiveServer,
    redis: Redis,
    captured_logs: CapturedLogs,
    params: dict[str, str],
    body: bytes,
    code: str,
) -> None:
    assert server.post(body=NOTIFICATION, **ITINERARY).status_code == 200  # earlier data must survive
    before = redis.dbsize()
    response = server.post(body=body, **params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == code
    assert response.json()["detail"]
    assert TOKEN not in response.text
    assert redis.dbsize() == before
    assert len(stored_records(redis)) == 1
    assert [entry["reason"] for entry in captured_logs.named("postback.rejected")] == [code]


def test_duplicate_query_parameter_is_refused(server: LiveServer, redis: Redis) -> None:
    response = server.client.post(f"/postback?type=FOP&oauth_token_key={TOKEN}&oauth_token_key=other")
    assert response.status_code == 400
    assert response.json()["error"] == "duplicate_parameter"
    assert redis.llen(INBOX_KEY) == 0


def test_body_over_the_limit_gets_413_before_parsing(
    make_server: Callable[[Settings], LiveServer], make_settings: Callable[..., Settings], redis: Redis
) -> None:
    server = make_server(make_settings(max_body_bytes=2048))
    padded = NOTIFICATION.replace(b"<Context/>", b"<Context>" + b"x" * 4096 + b"</Context>")
    response = server.post(body=padded, **ITINERARY)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"

    def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(10):
            yield b"<" * 1000

    streamed = server.client.post("/postback", params=ITINERARY, content=chunks())
    assert streamed.status_code == 413
    assert redis.llen(INBOX_KEY) == 0


def test_secret_path(
    make_server: Callable[[Settings], LiveServer], make_settings: Callable[..., Settings], redis: Redis
) -> None:
    server = make_server(make_settings(postback_secret="s3cr3t-path-value"))
    assert server.post("/postback/s3cr3t-path-value", body=NOTIFICATION, **ITINERARY).status_code == 200
    for path in ("/postback", "/postback/s3cr3t-path-valuf", "/postback/s3cr3t", "/postback/"):
        response = server.post(path, body=NOTIFICATION, **ITINERARY)
        assert response.status_code == 404
        assert response.text == "Not Found"
    assert redis.llen(INBOX_KEY) == 1


def test_a_secret_being_changed_accepts_the_new_and_the_old_one(
    make_server: Callable[[Settings], LiveServer], make_settings: Callable[..., Settings], redis: Redis
) -> None:
    server = make_server(make_settings(postback_secret="new-secret-value-1, old-secret-value-0"))
    for secret in ("new-secret-value-1", "old-secret-value-0"):
        assert server.post(f"/postback/{secret}", body=NOTIFICATION, **ITINERARY).status_code == 200
    for path in ("/postback/new-secret-value-1,", "/postback/new-secret-value-1, old-secret-value-0"):
        assert server.post(path, body=NOTIFICATION, **ITINERARY).status_code == 404


def test_wrong_method_and_unknown_path(server: LiveServer) -> None:
    assert server.client.get("/postback").status_code == 405
    assert server.client.post("/other").status_code == 404


def test_health_and_readiness(server: LiveServer) -> None:
    assert server.client.get("/healthz").json() == {"status": "ok"}
    assert server.client.get("/readyz").json() == {"status": "ready"}


def test_one_json_access_line_per_request_named_by_outcome_without_token(
    server: LiveServer, redis: Redis, captured_logs: CapturedLogs
) -> None:
    responses = [
        server.post(body=NOTIFICATION, **ITINERARY),
        server.post(body=NOTIFICATION, **ITINERARY),
        server.post(type="Nope", oauth_token_key=TOKEN),
        server.post(type="FOP", oauth_token_key=TOKEN, userid_type="login", userid_value="u@example.com"),
        server.client.get("/healthz"),
    ]
    access = [entry for entry in captured_logs.events() if "method" in entry]
    assert [entry["event"] for entry in access] == [
        "postback.accepted",
        "postback.duplicate",
        "postback.rejected",
        "postback.accepted",
        "http.request",
    ]
    assert [entry["request_id"] for entry in access] == [r.headers["x-request-id"] for r in responses]
    assert [entry["status"] for entry in access] == [200, 200, 400, 200, 200]
    assert access[0]["trip_id"] == "naIzQJ0y2DBWjCIQOb2SHTsozwBsHDkdP"
    assert access[3]["subject"] == "login:u@example.com"
    assert all(entry["path"] in ("/postback", "/healthz") for entry in access)
    assert TOKEN not in captured_logs.text
    assert TOKEN[-12:] not in captured_logs.text


def test_request_id_from_the_caller_is_kept(server: LiveServer, captured_logs: CapturedLogs) -> None:
    response = server.client.post(
        "/postback?type=FOP&oauth_token_key=abc", headers={"x-request-id": "concur-req-12345"}
    )
    assert response.headers["x-request-id"] == "concur-req-12345"
    assert captured_logs.named("postback.accepted")[0]["request_id"] == "concur-req-12345"


def test_secret_path_never_reaches_the_logs(
    make_server: Callable[[Settings], LiveServer],
    make_settings: Callable[..., Settings],
    captured_logs: CapturedLogs,
) -> None:
    server = make_server(make_settings(postback_secret="hidden-path-secret"))
    server.post("/postback/hidden-path-secret", type="FOP", oauth_token_key=TOKEN)
    server.post("/postback/wrong-guess", type="FOP", oauth_token_key=TOKEN)
    assert "hidden-path-secret" not in captured_logs.text
    assert "wrong-guess" not in captured_logs.text
    assert [entry["path"] for entry in captured_logs.events() if "method" in entry] == [
        "/postback/<secret>"
    ] * 2


def test_token_is_never_stored_in_clear(server: LiveServer, redis: Redis) -> None:
    server.post(body=NOTIFICATION, **ITINERARY)
    server.post(type="Profile", oauth_token_key=TOKEN, userid_type="login", userid_value="u@example.com")
    server.post(type="FOP", oauth_token_key=TOKEN)
    needle = TOKEN.encode()
    keys = list(redis.scan_iter(count=1000))
    assert len(keys) >= 8
    for key in keys:
        assert needle not in key
        kind = redis.type(key)
        if kind == b"string":
            values = [redis.get(key)]
        elif kind == b"list":
            values = redis.lrange(key, 0, -1)
        elif kind == b"zset":
            values = redis.zrange(key, 0, -1)
        else:
            values = [orjson.dumps({str(k): str(v) for k, v in redis.hgetall(key).items()})]
        assert all(needle not in value for value in values), key


def test_a_blank_secret_means_no_secret(make_settings: Callable[..., Settings]) -> None:
    assert make_settings(postback_secret="").postback_secret is None
    assert make_settings(postback_secret="  ").postback_secret is None


def test_without_the_replicas_redis_min_replicas_asks_for_a_postback_is_not_acknowledged(
    make_server: Callable[[Settings], LiveServer], make_settings: Callable[..., Settings], redis: Redis
) -> None:
    """WAIT 1 on a Redis without replicas: 503 and Retry-After, never a 200 that a failover could undo."""
    server = make_server(make_settings(redis_min_replicas=1, redis_timeout_seconds=0.5))
    response = server.post(type="Profile", oauth_token_key=TOKEN)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["error"] == "unavailable"
