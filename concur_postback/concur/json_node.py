"""JSON documents for `reader.read`: Concur's v4 APIs send the shapes the XML APIs send, as JSON.

Itinerary v4 names its fields as the v1.1 XML does (`Bookings`, `Segments/Air`, `RecordLocator`), so
the same records read both. Only how repetition is written differs, and a node says which:

* a key whose value is an array is that element repeated: `"Air": [a, b]` is `<Air/><Air/>`;
* a container of items written as an array (`"Bookings": [b]` for `<Bookings><Booking/></Bookings>`)
  gives elements that are ``listed``: `reader` takes each as an item of that container.

Values become text as XML's are (`1341.2`, `true`), so records, ``extra`` and the redaction see one
kind of value whichever API sent it. Parsing refuses what the XML side refuses: a malformed
document, another root, nesting deeper than the records go.
"""

from __future__ import annotations

from typing import Any

import orjson

from concur_postback.concur.reader import JSON, Node, add_value
from concur_postback.errors import InvalidDocument

MAX_DEPTH = 64


def parse_json(data: bytes) -> JsonNode:
    """The document's root object; InvalidDocument if it is not JSON, not an object, or too deep."""
    try:
        root = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidDocument("malformed_json", f"not JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(root, dict):
        raise InvalidDocument("unexpected_document", "expected a JSON object")
    if _depth(root) > MAX_DEPTH:
        raise InvalidDocument("too_deep", f"nested deeper than {MAX_DEPTH} levels")
    return JsonNode("", root)


def _depth(value: Any) -> int:
    deepest, level, pending = 0, 0, [(value, 1)]
    while pending:
        value, level = pending.pop()
        deepest = max(deepest, level)
        if isinstance(value, dict):
            pending += [(item, level + 1) for item in value.values()]
        elif isinstance(value, list):
            pending += [(item, level + 1) for item in value]
    return deepest


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip() or None


class JsonNode:
    """A JSON value under its key: an object (fields by name, any case, each taken once) or a scalar."""

    __slots__ = ("_taken", "_value", "listed", "name")

    def __init__(self, name: str, value: Any, listed: bool = False) -> None:
        self.name = name
        self._value = value
        self.listed = listed
        self._taken: set[str] = set()

    @property
    def key(self) -> str:
        return self.name

    def take(self, key: str) -> list[Node]:
        self._taken.add(key)
        return [node for node in self._nodes() if node.name.lower() == key]

    def children(self) -> list[Node]:
        nodes = self._nodes()
        self._taken.update(node.name.lower() for node in nodes)
        return list(nodes)

    def names(self) -> set[str]:
        if isinstance(self._value, list):  # its items, named as it is
            return {self.name.lower()} if self._value else set()
        return {str(name).lower() for name in self._value} if isinstance(self._value, dict) else set()

    def text(self) -> str | None:
        if not isinstance(self._value, dict | list):
            return _text(self._value)
        parts = (node.text() for node in self._nodes())  # spaced, as XML's: no card number hides
        return " ".join(part for part in parts if part) or None

    def own_text(self) -> str | None:
        return None if isinstance(self._value, dict | list) else _text(self._value)

    def structured(self) -> bool:
        return isinstance(self._value, dict | list)

    def data(self) -> JSON:
        if isinstance(self._value, dict):
            return self._plain(set())
        if isinstance(self._value, list):
            return [JsonNode(self.name, item).data() for item in self._value]
        return None if self._value is None else _text(self._value) or ""  # null stays null

    def rest(self) -> dict[str, JSON]:
        return self._plain(self._taken) if isinstance(self._value, dict) else {}

    def _plain(self, taken: set[str]) -> dict[str, JSON]:
        data: dict[str, JSON] = {}
        for node in self._nodes():
            if node.name.lower() not in taken:
                add_value(data, node.name, node.data())
        return data

    def _nodes(self) -> list[JsonNode]:
        if isinstance(self._value, list):  # an array that is itself a value: its items, unnamed
            return [JsonNode(self.name, item, listed=True) for item in self._value]
        if not isinstance(self._value, dict):
            return []
        nodes = []
        for name, value in self._value.items():
            if isinstance(value, list):
                nodes += [JsonNode(str(name), item, listed=True) for item in value]
            else:
                nodes.append(JsonNode(str(name), value))
        return nodes
