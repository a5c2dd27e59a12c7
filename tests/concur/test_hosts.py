from __future__ import annotations

import pytest

from concur_postback.concur.hosts import HostPolicy
from concur_postback.errors import InvalidPostback

US = HostPolicy.from_base_url("https://us.api.concursolutions.com", ["www.concursolutions.com"])
LOCAL = HostPolicy.from_base_url("http://127.0.0.1:8081", [])


@pytest.mark.parametrize(
    "host", ["us.api.concursolutions.com", "US.API.Concursolutions.com", "www.concursolutions.com"]
)
def test_base_host_and_listed_hosts_are_allowed(host: str) -> None:
    assert US.host_allowed(host)


@pytest.mark.parametrize(
    "host", ["emea.api.concursolutions.com", "concursolutions.com.evil.io", "127.0.0.1", "localhost"]
)
def test_other_hosts_are_refused(host: str) -> None:
    assert not US.host_allowed(host)


def test_wildcards_never_admit_ip_addresses() -> None:
    policy = HostPolicy.from_base_url("https://us.api.concursolutions.com", ["*"])
    assert policy.host_allowed("anything.example")
    assert not policy.host_allowed("169.254.169.254")
    assert not policy.host_allowed("[::1]")


def test_an_http_base_url_allows_http_on_its_own_host_and_port_only() -> None:
    assert LOCAL.trip_id_from_uri("http://127.0.0.1:8081/api/travel/trip/v1.1/ABC") == "ABC"
    for uri in (
        "http://127.0.0.1:8082/api/travel/trip/v1.1/ABC",
        "http://127.0.0.2:8081/api/travel/trip/v1.1/ABC",
    ):
        with pytest.raises(InvalidPostback):
            LOCAL.trip_id_from_uri(uri)


def test_an_http_base_url_never_sends_a_token_to_a_concur_host_in_clear_text() -> None:
    local = HostPolicy.from_base_url("http://127.0.0.1:8081", ["*.concursolutions.com"])
    with pytest.raises(InvalidPostback, match="scheme"):
        local.check_url("http://www.concursolutions.com/api/travel/trip/v1.1/ABC")
    assert local.trip_id_from_uri("https://www.concursolutions.com/api/travel/trip/v1.1/ABC") == "ABC"


def test_https_base_url_refuses_plain_http() -> None:
    with pytest.raises(InvalidPostback, match="scheme"):
        US.check_url("http://us.api.concursolutions.com/api/travel/trip/v1.1/ABC")


@pytest.mark.parametrize(
    "uri",
    [
        "https://us.api.concursolutions.com:99999/x",
        "https://[::1/x",
        "https://us.api.concursolutions.com/a b",
    ],
)
def test_unparseable_urls_are_refused(uri: str) -> None:
    with pytest.raises(InvalidPostback):
        US.check_url(uri)


def test_trip_ids_with_dollar_signs_are_valid() -> None:
    trip = "gWu9dRi$pEjxZkYtp0lWbN5gQkBMQfjRbbc$sbDCQ"
    assert US.trip_id_from_uri(f"https://www.concursolutions.com/api/travel/trip/v1.1/{trip}") == trip
