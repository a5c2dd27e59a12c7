"""JSON nodes for the declarative reader: the v4 APIs' repetition read as XML's, values as text."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from concur_postback.concur.json_node import parse_json
from concur_postback.concur.reader import JSON, flag, read, records, text
from concur_postback.concur.trips import parse_trip_v4
from tests.conftest import CORPUS


@dataclass(frozen=True, kw_only=True)
class Item:
    code: str | None = text("Code")
    extra: dict[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Box:
    name: str | None = text("Name")
    on: bool | None = flag("On")
    listed: list[Item] = records(Item, "Items", "Item")  # a container written as an array
    nested: list[Item] = records(Item, "Group", "Item")  # a container holding a repeated element
    extra: dict[str, JSON] = field(default_factory=dict)


def test_arrays_are_read_as_xml_repeats_and_containers_and_values_as_text() -> None:
    document = {
        "name": "box",  # any case, as XML's names
        "On": True,
        "Items": [{"Code": 1}, {"Code": 2.5}],
        "Group": {"Item": [{"Code": "a"}, {"Code": "b", "Other": None}]},
        "Unknown": [1, {"x": False}],
    }
    box = read(Box, parse_json(orjson.dumps(document)))
    assert (box.name, box.on) == ("box", True)
    assert [item.code for item in box.listed] == ["1", "2.5"]
    assert [item.code for item in box.nested] == ["a", "b"] and box.nested[1].extra == {"Other": None}
    assert box.extra == {"Unknown": ["1", {"x": "false"}]}


V4_TRIP = CORPUS / "ess" / "api-reference__travel__itinerary-v4__v4.itinerary__1.json"


def test_a_v4_trip_reads_into_the_trip_record_with_what_it_does_not_model_kept() -> None:
    v4 = parse_trip_v4(V4_TRIP.read_bytes())
    assert v4.name == "My Random Trip #266255879" and v4.status == "0"
    assert len(v4.bookings) == 3 and len(v4.bookings[0].segments) == 2
    assert v4.bookings[0].passengers[0].name_last == "Dover"
    assert "CustomAttributes" in v4.extra  # not modelled: kept
