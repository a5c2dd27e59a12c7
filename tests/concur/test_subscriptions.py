"""`subscribe` / `unsubscribe` against the simulator over real HTTP: paths, output, Concur's errors."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from concur_postback import logs
from concur_postback.cli import main
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import OAuthToken
from concur_postback.concur.subscriptions import concur_message, subscription_path
from concur_postback.config import load_settings
from concur_postback.embedded import free_port
from concur_postback.errors import HostNotAllowed
from tests.conftest import CORPUS, TOKEN, Simulator


@pytest.fixture
def env(simulator: Simulator, quiet_logs: io.StringIO) -> Iterator[dict[str, str]]:
    yield {"CONCUR_BASE_URL": simulator.url, "CONCUR_ALLOWED_HOSTS": "", "LOG_LEVEL": "WARNING"}
    logs.configure("DEBUG", stream=quiet_logs)


def invoke(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(main, list(args), env=env)
    assert TOKEN not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_subscribe_and_unsubscribe_a_user(env: dict[str, str], simulator: Simulator) -> None:
    result = invoke(env, "subscribe", "--type", "itinerary", "--token", TOKEN)
    assert result.exit_code == 0, result.output
    assert "subscribed the user (****" in result.output
    assert (
        f"to itinerary notifications at {simulator.url}/api/travelprofile/v1.0/subscribe (HTTP 200)"
        in result.output
    )
    assert "S001 Success" in result.output
    [request] = simulator.requests()
    assert (request["method"], request["path"], request["query"]) == (
        "POST",
        "/api/travelprofile/v1.0/subscribe",
        {"type": "itinerary"},
    )
    assert request["scheme"] == "OAuth"
    subscriptions = simulator.client.get("/_simulator/subscriptions").json()
    assert [(s["scope"], s["type"]) for s in subscriptions] == [("user", "itinerary")]
    assert TOKEN not in str(subscriptions)

    gone = invoke(env, "unsubscribe", "--type", "itinerary", "--token", TOKEN)
    assert gone.exit_code == 0, gone.output
    assert "unsubscribed the user" in gone.output and "/api/travelprofile/v1.0/unsubscribe" in gone.output
    assert simulator.client.get("/_simulator/subscriptions").json() == []


def test_company_and_path_choices(env: dict[str, str], simulator: Simulator) -> None:
    assert invoke(env, "subscribe", "--type", "fop", "--company", "--token", TOKEN).exit_code == 0
    assert invoke(env, "unsubscribe", "--type", "profile", "--company", "--token", TOKEN).exit_code == 0
    alt = "/api/user/v1.0/subscribe"
    assert invoke(env, "subscribe", "--type", "profile", "--path", alt, "--token", TOKEN).exit_code == 0
    assert (
        invoke(
            {**env, "CONCUR_SUBSCRIBE_PATH": alt, "CONCUR_ACCESS_TOKEN": TOKEN},
            "unsubscribe",
            "--type",
            "profile",
        ).exit_code
        == 0
    )
    assert [(r["path"], r["query"]["type"]) for r in simulator.requests()] == [
        ("/api/company/v1.0/subscribe", "fop"),
        ("/api/company/v1.0/unsubscribe", "profile"),
        ("/api/user/v1.0/subscribe", "profile"),
        ("/api/user/v1.0/unsubscribe", "profile"),
    ]
    assert [(s["scope"], s["type"]) for s in simulator.client.get("/_simulator/subscriptions").json()] == [
        ("company", "fop")
    ]


def corpus(name: str) -> str:
    return (CORPUS / "errors" / name).read_text()


def test_concur_error_xml_becomes_a_readable_message(env: dict[str, str], simulator: Simulator) -> None:
    simulator.fault(match="/subscribe", status=400, body=corpus("tmc-guide_error_invalid-user.xml"))
    result = invoke(env, "subscribe", "--type", "profile", "--token", TOKEN)
    assert result.exit_code == 1
    assert (
        "Error: Concur refused to subscribe profile (user): HTTP 400: Invalid User:dutchinw@anybizbu.com"
        in (result.output)
    )
    assert "<Error>" not in result.output


def test_unauthorized_says_what_to_check_and_never_echoes_the_token(
    env: dict[str, str], simulator: Simulator
) -> None:
    echo = f"<Error><Message>Token {TOKEN} is not valid</Message></Error>"  # should Concur ever echo it
    simulator.fault(match="/unsubscribe", status=401, body=echo)
    result = invoke(env, "unsubscribe", "--type", "fop", "--company", "--token", TOKEN)
    assert result.exit_code == 1
    assert "HTTP 401: Token ****" in result.output and "revoked" in result.output


def test_invalid_type_is_refused_by_click_and_by_the_simulator(
    env: dict[str, str], simulator: Simulator
) -> None:
    assert invoke(env, "subscribe", "--type", "expense", "--token", TOKEN).exit_code == 2
    response = simulator.client.post(
        "/api/travelprofile/v1.0/subscribe", params={"type": "expense"}, headers={"Authorization": "OAuth x"}
    )
    assert response.status_code == 400
    assert concur_message(response.content) == "Invalid notification type: expense"


def test_unreachable_concur(env: dict[str, str]) -> None:
    result = invoke(
        {**env, "CONCUR_BASE_URL": f"http://127.0.0.1:{free_port()}"},
        "subscribe",
        "--type",
        "fop",
        "--token",
        TOKEN,
    )
    assert result.exit_code == 1
    assert "/api/travelprofile/v1.0/subscribe failed: " in result.output  # aiohttp: ConnectTimeout


def test_missing_token_is_a_usage_error(env: dict[str, str]) -> None:
    result = invoke(env, "subscribe", "--type", "fop")
    assert result.exit_code == 2 and "--token" in result.output


def test_the_token_goes_to_concur_hosts_only() -> None:
    settings = load_settings(concur_base_url="https://us.api.concursolutions.com", concur_allowed_hosts=[])

    async def attempt() -> None:
        client = ConcurClient(settings)
        try:
            await client.post("https://evil.example.com/api/company/v1.0/subscribe", OAuthToken(TOKEN))
        finally:
            await client.aclose()

    with pytest.raises(HostNotAllowed) as caught:
        asyncio.run(attempt())
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("configured", "action", "company", "path"),
    [
        ("/api/travelprofile/v1.0/subscribe", "subscribe", False, "/api/travelprofile/v1.0/subscribe"),
        ("/api/travelprofile/v1.0/subscribe", "unsubscribe", False, "/api/travelprofile/v1.0/unsubscribe"),
        ("/api/user/v1.0/subscribe/", "unsubscribe", False, "/api/user/v1.0/unsubscribe"),
        ("/api/travelprofile/v1.0/subscribe", "unsubscribe", True, "/api/company/v1.0/unsubscribe"),
        ("/custom/notify", "unsubscribe", False, "/custom/notify/unsubscribe"),
    ],
)
def test_subscription_paths(configured: str, action: str, company: bool, path: str) -> None:
    settings = load_settings(concur_subscribe_path=configured)
    assert subscription_path(settings, action, company) == path


def test_error_messages_of_the_corpus() -> None:
    many = concur_message(corpus("tmc-guide_error_E001-cannot-update.xml").encode())
    assert many is not None
    assert many.startswith("E001 Cannot update this element: General/HasOpenBooking; E001 Cannot update")
    assert concur_message(corpus("v2_error-in-xml-document.xml").encode()) == (
        "There is an error in XML document (1, 147)."
    )
    assert concur_message(b"not xml") is None
