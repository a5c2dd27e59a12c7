"""Property-based fuzzing of the three document parsers: a typed record or InvalidDocument, nothing else.

`tests/concur` already feeds each parser short random bytes and trees of element names with plain
text. Here the trees also carry attributes (card-number-named ones included), namespaces and
prefixes, mixed content, CDATA, comments, processing instructions, character and entity references,
XInclude elements and deep nesting; and the raw bytes are mutations of the documents the simulator
serves (truncated, spliced with markup fragments, re-encoded, mis-declared), which reach much deeper
into the parser than uniform noise does. Whatever comes back must serialise the way the pipeline
serialises it, and no example may take long (the deadline).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from concur_postback.concur.fop import FormOfPayment, parse_fop
from concur_postback.concur.profiles import Profile, parse_profile
from concur_postback.concur.trips import Trip, parse_trip
from concur_postback.errors import InvalidDocument

DATA = Path(__file__).resolve().parents[2] / "concur_postback" / "simulator" / "data"
CODES = {"empty_body", "malformed_xml", "dtd_forbidden", "unexpected_document"}
FUZZ = settings(max_examples=60, deadline=timedelta(seconds=1))


class Target(NamedTuple):
    parse: Callable[[bytes], object]
    record: type
    root: str
    documents: tuple[str, ...]  # simulator documents: the seeds, and the element names the parser knows
    more_names: tuple[str, ...]  # names it reads that the seeds lack


TARGETS = {
    "trip": Target(parse_trip, Trip, "Itinerary", ("trip.xml",), ("Rail", "Dining", "Seats", "AirSeat")),
    "profile": Target(
        parse_profile,
        Profile,
        "ProfileResponse",
        ("profile_v1.xml", "profile_v2.xml"),
        ("Password", "Passports", "Passport", "TSAInfo", "Roles", "UnusedTickets", "DiscountCodes"),
    ),
    "fop": Target(
        parse_fop,
        FormOfPayment,
        "CorporateFOPResponse",
        ("fop.xml",),
        ("CardNumber", "CVV", "SecurityCode", "Usages", "DisplayName", "Default", "Mandatory"),
    ),
}


@cache
def seeds(kind: str) -> tuple[bytes, ...]:
    return tuple((DATA / name).read_bytes() for name in TARGETS[kind].documents)


@cache
def known_names(kind: str) -> tuple[str, ...]:
    names = {
        etree.QName(element).localname
        for seed in seeds(kind)
        for element in etree.fromstring(seed).iter(etree.Element)
    }
    return tuple(sorted(names | set(TARGETS[kind].more_names)))


def check(kind: str, data: bytes) -> None:
    """The property: a typed record that orjson can serialise, or InvalidDocument with a known code."""
    target = TARGETS[kind]
    try:
        result = target.parse(data)
    except InvalidDocument as exc:
        assert exc.code in CODES, exc
        return
    assert isinstance(result, target.record)
    orjson.dumps(result)  # what the pipeline does with it next; raises on anything not serialisable


# --- generated trees -------------------------------------------------------------------------------------

TEXT = st.one_of(
    st.sampled_from(["", " ", "true", "N", "0", "-1", "12.50", "2026-11-22T10:00:00", "4111 1111 1111 1111"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Co", "Cn")), max_size=12),
)
XINCLUDE_NS = "http://www.w3.org/2001/XInclude"
NAMESPACES = ["", "http://www.concursolutions.com/api/travel/trip/2010/06", "urn:other", "https://x/"]


def escape(text: str) -> str:
    """XML character data: markup escaped, characters XML 1.0 forbids as character references
    (which the parser must refuse cleanly: `&#1;` is not allowed either)."""
    out = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return "".join(f"&#{ord(c)};" if ord(c) < 0x20 and c not in "\t\n\r" else c for c in out)


@st.composite
def content(draw: st.DrawFn) -> str:
    """A piece of mixed content: text in one of its spellings, or markup XML allows inside an element."""
    text = draw(TEXT)
    return draw(
        st.sampled_from(
            [
                escape(text),
                f"<![CDATA[{text.replace(']]>', '')}]]>",
                f"<!--{text.replace('--', '')}-->",
                f"<?pi {text.replace('?>', '')}?>",
                "&amp;&lt;&#65;&#x42;",
                f'<xi:include xmlns:xi="{XINCLUDE_NS}" href="file:///etc/passwd" parse="text"/>',
            ]
        )
    )


def element(names: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    leaf = st.builds(
        lambda name, attrs, inner: f"<{name}{attrs}>{inner}</{name}>",
        names,
        attributes(names),
        st.lists(content(), max_size=2).map("".join),
    )
    return st.recursive(
        leaf,
        lambda children: st.builds(
            lambda name, attrs, parts, prefix: wrap(name, attrs, "".join(parts), prefix),
            names,
            attributes(names),
            st.lists(st.one_of(children, content()), max_size=4),
            st.sampled_from(["", "p"]),
        ),
        max_leaves=25,
    )


def attributes(names: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    attribute = st.builds(
        lambda name, value: f' {name}="{escape(value)}"',
        st.one_of(names, st.sampled_from(["Type", "LoginId", "AccountNo", "Default", "xsi:nil", "xml:lang"])),
        TEXT,
    )
    namespace = st.sampled_from(NAMESPACES).map(lambda ns: f' xmlns="{ns}"' if ns else "")
    xsi = ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
    # A repeated attribute name is not well-formed: the parser must refuse that document cleanly too.
    return st.tuples(st.lists(attribute, max_size=3), namespace).map(lambda t: xsi + t[1] + "".join(t[0]))


def wrap(name: str, attrs: str, inner: str, prefix: str) -> str:
    if prefix:
        return f'<{prefix}:{name} xmlns:{prefix}="urn:p"{attrs}>{inner}</{prefix}:{name}>'
    return f"<{name}{attrs}>{inner}</{name}>"


@st.composite
def document(draw: st.DrawFn, kind: str) -> bytes:
    names = st.one_of(
        st.sampled_from(known_names(kind)),
        st.sampled_from(known_names(kind)).map(str.lower),
        st.sampled_from(["Unknown", "Extra", "CustomAttributes", "X-Y", "_a"]),
    )
    root = draw(st.sampled_from([TARGETS[kind].root, TARGETS[kind].root.upper(), "Error"]))
    body = draw(st.lists(element(names), max_size=5).map("".join))
    nesting = draw(st.integers(0, 300))  # libxml2 caps depth at 256 without huge_tree: both sides of it
    deep = "<Deep>" * nesting + "x" + "</Deep>" * nesting
    prologue = draw(st.sampled_from(["", "<?xml version='1.0' encoding='UTF-8'?>", "\ufeff", "<!-- c -->"]))
    attrs = draw(attributes(names))
    return f"{prologue}<{root}{attrs}>{body}{deep}</{root}>".encode()


@pytest.mark.parametrize("kind", TARGETS)
@FUZZ
@given(data=st.data())
def test_generated_documents_give_a_record_or_a_clean_refusal(kind: str, data: st.DataObject) -> None:
    check(kind, data.draw(document(kind)))


# --- mutated bytes --------------------------------------------------------------------------------------

FRAGMENTS = [
    b"<", b">", b"&", b"&x;", b"&#0;", b"&#x110000;", b"]]>", b"<!DOCTYPE x>", b"<!ENTITY e 'x'>",
    b"<?xml version='1.0'?>", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\xc3", b"</", b"<a", b"=\"", b"\r\n",
    b"<![CDATA[", b"<!--", b"xmlns:a='urn:a'", b"a:b", b"<xi:include href='file:///etc/passwd'/>",
]  # fmt: skip
ENCODINGS = ["utf-8", "utf-16", "utf-16-le", "latin-1", "cp1252", "utf-32", "ascii", "cp500"]


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds(kind))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["insert", "replace", "delete", "truncate"]))
        piece = draw(st.one_of(st.sampled_from(FRAGMENTS), st.binary(min_size=1, max_size=8)))
        if operation == "insert":
            data[at:at] = piece
        elif operation == "replace":
            data[at : at + len(piece)] = piece
        elif operation == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


@st.composite
def re_encoded(draw: st.DrawFn, kind: str) -> bytes:
    """A seed in another encoding, declared truthfully, wrongly or not at all."""
    text = draw(st.sampled_from(seeds(kind))).decode("utf-8")
    text = text.split("?>", 1)[1] if text.startswith("<?xml") else text
    actual = draw(st.sampled_from(ENCODINGS))
    declared = draw(st.one_of(st.none(), st.sampled_from([*ENCODINGS, "x-unknown", "UTF-7", "EBCDIC-US"])))
    if declared is not None:
        text = f"<?xml version='1.0' encoding='{declared}'?>{text}"
    return text.encode(actual, errors="replace")


@pytest.mark.parametrize("kind", TARGETS)
@FUZZ
@given(data=st.data())
def test_mutated_and_re_encoded_bytes_give_a_record_or_a_clean_refusal(
    kind: str, data: st.DataObject
) -> None:
    check(kind, data.draw(st.one_of(mutated(kind), re_encoded(kind))))


@pytest.mark.parametrize("kind", TARGETS)
def test_the_seeds_are_records(kind: str) -> None:
    """The control: unmutated, every seed is a record, so the fuzzing starts from valid documents."""
    for seed in seeds(kind):
        assert isinstance(TARGETS[kind].parse(seed), TARGETS[kind].record)
