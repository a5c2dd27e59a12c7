"""One declarative reader for every Concur document: records say where each field comes from.

A record is a frozen dataclass whose fields are declared next to the names they are read from
(``vendor: str | None = text("Vendor")``); `read` fills it from a document node. This module alone
decides the rules every document shares:

- **names**: a field is found by local name without regard to case or namespace, as a child element
  or an attribute (v1 and v2 put some fields in different places);
- **nothing lost**: whatever no field asked for, a repeat that disagrees, a value that is not the
  count or flag it should be, all land in the record's ``extra`` (local name -> text or mapping);
- **redaction**: every string that leaves here, typed field or ``extra``, key or value, goes through
  one `Redaction` step (card numbers to their last four, card fields always, CVVs hidden).

Values stay the stripped text Concur sent: dates and amounts are text (no float rounding, no guessing
at zones). Nodes come from `xml.XmlNode` or, for the v4 APIs' JSON, `json_node.JsonNode`: both
share the records and the redaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import Field, dataclass, field, fields
from functools import cache, partial
from typing import Any, ClassVar, Protocol, TypeVar

from concur_postback.concur.redaction import hide, mask_card_field, scrub_card_numbers

# What `extra` holds: text, a mapping of children (repeated names become lists), or a list.
JSON = str | dict[str, "JSON"] | list["JSON"] | None

_READER = "concur.reader"  # dataclass field metadata: how the field is read from its node
_DERIVED = "concur.derived"  # ... or computed from the fields read before it
_SENT = "concur.sent"  # `Node.names` of which one must be sent for the field to be other than None


class Node(Protocol):
    """One element of a document as the reader sees it (an XML element or attribute, a JSON value)."""

    listed: bool  # one element of a JSON array written for a container: an item of that container

    @property
    def name(self) -> str:
        """The local name."""

    @property
    def key(self) -> str:
        """How it is named in ``extra``: its name, ``@Type`` for an attribute."""

    def take(self, key: str) -> list[Node]:
        """The attributes, then the child elements in document order, whose lower-cased name is
        ``key``. What is taken is left out of `rest`."""

    def children(self) -> list[Node]:
        """Every child element, in document order, all taken."""

    def names(self) -> set[str]:
        """Lower-cased keys of everything in the node (``@name`` for attributes), taken or not."""

    def text(self) -> str | None:
        """All the text inside, stripped (the pieces of nested elements spaced); None when empty."""

    def own_text(self) -> str | None:
        """Only the text directly inside (`<Email Type="Work">a@b.c</Email>`), around any children
        too; taken from `rest`."""

    def structured(self) -> bool:
        """Whether it has child elements or attributes (other than schema markup) beside its text."""

    def data(self) -> JSON:
        """The whole node as plain data."""

    def rest(self) -> dict[str, JSON]:
        """What nothing took, as plain data."""


@dataclass(frozen=True)
class Redaction:
    """Which names hold card numbers (masked to their last four whatever they hold) and which hold
    secrets (hidden entirely); every other string has the card numbers in it masked."""

    card_fields: frozenset[str]
    hidden: frozenset[str]
    scrub: Callable[[str], str] = scrub_card_numbers

    def including(self, card_fields: Iterable[str] = (), hidden: Iterable[str] = ()) -> Redaction:
        """This policy, with more names that hold card numbers or secrets (a form of payment's)."""
        more_cards, more_hidden = {name.lower() for name in card_fields}, {name.lower() for name in hidden}
        return Redaction(self.card_fields | more_cards, self.hidden | more_hidden, self.scrub)

    def rule(self, key: str) -> Callable[[str], str] | None:
        if not self.card_fields and not self.hidden:  # VERBATIM's identifiers: nothing to look up
            return None
        name = key.lstrip("@").lower()
        return mask_card_field if name in self.card_fields else hide if name in self.hidden else None

    def value(self, key: str, value: str) -> str:
        rule = self.rule(key)
        return rule(value) if rule is not None else self.scrub(value)

    def data(self, value: JSON, rule: Callable[[str], str] | None = None) -> JSON:
        """``value`` redacted throughout; beneath a card or secret name, every string follows its rule."""
        if isinstance(value, str):
            return (rule or self.scrub)(value) if value else value
        if isinstance(value, list):
            return [self.data(item, rule) for item in value]
        if isinstance(value, dict):
            redacted: dict[str, JSON] = {}
            for key, item in value.items():  # two names may mask alike: both kept
                add_value(redacted, self.scrub(key), self.data(item, rule or self.rule(key)))
            return redacted
        return value


# Names that mean a card number or a secret in any document; a form of payment adds its own (`fop`),
# which elsewhere mean other things (a loyalty `AccountNo`, an Indian tax `PAN`, a customer `CID`).
REDACTION = Redaction(
    card_fields=frozenset(("cardnumber", "creditcardnumber")), hidden=frozenset(("password",))
)
# For what is not event data but identifiers to act on (a notification's trip URI, a summary's login):
# masking a Luhn-valid digit run there would fetch the wrong thing.
VERBATIM = Redaction(frozenset(), frozenset(), scrub=str)


class _Record(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]


R = TypeVar("R", bound=_Record)
# Where a declared name is looked for: (its group as declared, "" for none; its lower-cased local name).
Lookup = tuple[str, str]


def lookups(*names: str) -> tuple[Lookup, ...]:
    """``names`` split and lower-cased once, when a field is declared: ``Group/Name`` is ``Name`` inside
    the first ``Group``."""
    return tuple((group, name.lower()) for group, _, name in (name.rpartition("/") for name in names))


@dataclass(slots=True)
class Reading:
    """One record being read: its node, the policy, and what it keeps for ``extra`` besides `rest`."""

    node: Node
    redaction: Redaction
    kept: dict[str, JSON] = field(default_factory=dict)
    groups: dict[str, Node] = field(default_factory=dict)  # nested groups read field by field

    def take(self, names: tuple[Lookup, ...]) -> list[Node]:
        """Nodes named any of ``names``, in that order."""
        found: list[Node] = []
        for group, key in names:
            found += self.group(group).take(key) if group else self.node.take(key)
        return found

    def elements(self, names: tuple[Lookup, ...]) -> list[Node]:
        """Like `take`, for records and groups: an attribute of such a name holds none, so it is kept."""
        elements: list[Node] = []
        for node in self.take(names):
            if node.key.startswith("@"):
                self.keep(node.key, node.data())
            else:
                elements.append(node)
        return elements

    def group(self, name: str) -> Node:
        if name not in self.groups:
            nodes = self.elements(lookups(name))
            self.keep_all(nodes[1:])
            self.groups[name] = nodes[0] if nodes else Leaf()
        return self.groups[name]

    def keep(self, key: str, value: JSON) -> None:
        if value not in (None, "", {}, []):
            add_value(self.kept, key, value)

    def keep_all(self, nodes: Iterable[Node]) -> None:
        for node in nodes:
            self.keep(node.key, node.data())


def read(cls: type[R], node: Node, redaction: Redaction = REDACTION) -> R:
    """Fill the record ``cls`` from ``node``: declared fields first, then all the rest into ``extra``."""
    reading = Reading(node, redaction)
    values: dict[str, object] = {}
    sent = node.names()
    for name, function, is_derived, needed in _plan(cls):
        if is_derived:
            values[name] = function(values)
        elif needed and sent.isdisjoint(needed):  # none of its names sent: nothing to look up
            values[name] = None
        else:
            values[name] = function(reading)
    if "extra" in cls.__dataclass_fields__:
        extra = node.rest()
        for name, group in reading.groups.items():
            if left := group.rest():
                add_value(extra, name, left)
        for key, value in reading.kept.items():
            add_value(extra, key, value)
        values["extra"] = redaction.data(extra)
    return cls(**values)


@cache
def _plan(cls: type[_Record]) -> list[tuple[str, Callable[[Any], object], bool, frozenset[str]]]:
    """How each declared field of ``cls`` is filled, in order: (name, function, whether derived, the
    names one of which must be sent for it to be read at all)."""
    return [
        (
            spec.name,
            spec.metadata.get(_READER) or spec.metadata[_DERIVED],
            _READER not in spec.metadata,
            spec.metadata.get(_SENT, frozenset()),
        )
        for spec in fields(cls)
        if _READER in spec.metadata or _DERIVED in spec.metadata
    ]


def add_value(data: dict[str, JSON], name: str, value: JSON) -> None:
    """Add ``value`` under ``name`` without overwriting: a name seen twice holds a list."""
    if name not in data:
        data[name] = value
    elif isinstance(existing := data[name], list):
        existing.append(value)
    else:
        data[name] = [existing, value]


def _declared(
    function: Callable[[Reading], object], default: object = None, names: tuple[Lookup, ...] = ()
) -> Any:
    """A field read by ``function``; one that finds none of ``names`` is None, so it is not called
    when the node holds none of them (most declared fields are absent from any one document)."""
    first = {group.partition("/")[0].lower() if group else key for group, key in names}
    sent = frozenset(first | {"@" + name for name in first})
    return field(default=default, metadata={_READER: function, _SENT: sent})


def text(*names: str, or_own_text: bool = False, or_name: bool = False) -> Any:
    """The first of ``names`` sent, as text; with ``or_own_text`` the node's own text when none is,
    with ``or_name`` the node's own name."""
    found = lookups(*names)
    plain = () if or_own_text or or_name else found
    return _declared(partial(_text, found, or_own_text, or_name), names=plain)


def card_number(*names: str) -> Any:
    """A card number field: masked to its last four whatever it holds."""
    found = lookups(*names)
    return _declared(partial(_card_number, found), names=found)


def count(*names: str) -> Any:
    """A whole number; text that is not one (``1.5``, ``n/a``) is kept in ``extra`` instead."""
    found = lookups(*names)
    return _declared(partial(_parsed, found, _to_int), names=found)


def flag(*names: str) -> Any:
    """A boolean (true/false, 1/0, yes/no, Y/N); anything else is kept in ``extra`` instead."""
    found = lookups(*names)
    return _declared(partial(_parsed, found, to_bool), names=found)


def own_text() -> Any:
    """The node's own text (an `<EmailAddress>`'s address), beside its attributes."""
    return _declared(lambda reading: _clean(reading, reading.node.key, reading.node.own_text()))


def text_list(*names: str, separator: str = ",") -> Any:
    """Every part of the ``separator``-separated lists named any of ``names`` (`<Usages>A,B</Usages>`)."""
    return field(default_factory=list, metadata={_READER: partial(_text_list, lookups(*names), separator)})


def element_kind(*known: str) -> Any:
    """The node's own name (``Air``, ``RateWithAllowance``), spelled as in ``known`` whatever the case."""
    spelling = {name.lower(): name for name in known}

    def kind(reading: Reading) -> str:
        name = reading.node.name
        return spelling.get(name.lower()) or reading.redaction.scrub(name)

    return _declared(kind, default="")


def from_names(function: Callable[[set[str]], object]) -> Any:
    """A value told by which names the node holds (a document's version)."""
    return _declared(lambda reading: function(reading.node.names()))


def derived(function: Callable[[dict[str, object]], object]) -> Any:
    """A value computed from the fields declared before it."""
    return field(default=None, metadata={_DERIVED: function})


def record(cls: type[_Record], *names: str) -> Any:
    """The first node named any of ``names`` as a ``cls`` record (None when absent); repeats are kept."""
    found = lookups(*names)
    return _declared(partial(_record, cls, found), names=found)


def records(cls: type[_Record], containers: str | tuple[str, ...], *item_names: str) -> Any:
    """A list: one ``cls`` per child of each container (any child when no ``item_names`` are given;
    with them, items found directly in the record, without a container, count too)."""
    return items(partial(read, cls), containers, *item_names)


def items(
    make: Callable[[Node, Redaction], object], containers: str | tuple[str, ...], *item_names: str
) -> Any:
    """Like `records`, with ``make`` choosing the record for each node (segments: by kind)."""
    boxes = (containers,) if isinstance(containers, str) else containers
    kinds = {name.lower() for name in item_names}
    found = lookups(*boxes, *kinds)
    reader = partial(_items, make, found, {name.lower() for name in boxes}, kinds)
    return field(default_factory=list, metadata={_READER: reader})


def _clean(reading: Reading, key: str, value: str | None) -> str | None:
    return reading.redaction.value(key, value) if value else value


def _first(reading: Reading, names: tuple[Lookup, ...]) -> tuple[str, str | None] | None:
    """(key, text) of the first node named any of ``names``; what the text leaves out is kept."""
    found = reading.take(names)
    if len(found) == 1:  # the name sent once, as it nearly always is
        node = found[0]
        if node.structured():
            reading.keep(node.key, node.data())
        return node.key, node.text()
    if not found:
        return None
    texts = [node.text() for node in found]  # each node's text once: this runs for every field read
    at = next((i for i, text in enumerate(texts) if text), 0)  # `<Page/><CurrentPage>2`: 2
    chosen, first = found[at], texts[at]
    reading.keep_all(
        node
        for i, node in enumerate(found)
        if node.structured() or (i != at and texts[i] not in (first, None))
    )
    return chosen.key, first


def _text(names: tuple[Lookup, ...], or_own_text: bool, or_name: bool, reading: Reading) -> str | None:
    key, value = _first(reading, names) or ("", None)
    if value is None and or_own_text:
        key, value = reading.node.key, reading.node.own_text()
    if value is None and or_name:
        return reading.redaction.scrub(reading.node.name)
    return _clean(reading, key, value)


def _card_number(names: tuple[Lookup, ...], reading: Reading) -> str | None:
    _, value = _first(reading, names) or ("", None)
    return mask_card_field(value) if value else None


def _parsed(names: tuple[Lookup, ...], parse: Callable[[str], object], reading: Reading) -> object:
    key, raw = _first(reading, names) or ("", None)
    value = None if raw is None else parse(raw)
    if raw is not None and value is None:
        reading.keep(key, raw)
    return value


def _text_list(names: tuple[Lookup, ...], separator: str, reading: Reading) -> list[str]:
    parts: list[str] = []
    for node in reading.take(names):
        if node.structured():  # not the documented plain list: keep its shape too
            reading.keep(node.key, node.data())
        listed = (part.strip() for part in (node.text() or "").split(separator))
        parts += [reading.redaction.value(node.key, part) for part in listed if part]
    return parts


def _record(cls: type[_Record], names: tuple[Lookup, ...], reading: Reading) -> object:
    found = reading.elements(names)
    reading.keep_all(found[1:])
    return read(cls, found[0], reading.redaction) if found else None


def _items(
    make: Callable[[Node, Redaction], object],
    names: tuple[Lookup, ...],  # the containers, then the items
    boxes: set[str],
    item_names: set[str],
    reading: Reading,
) -> list[object]:
    made: list[object] = []
    for node in reading.elements(names):
        if node.name.lower() not in boxes or node.listed:  # an item outside any container, or in an array
            made.append(make(node, reading.redaction))
            continue
        strays: dict[str, JSON] = {}
        for child in node.children():
            if item_names and child.name.lower() not in item_names:  # kept, not mislabelled
                add_value(strays, child.key, child.data())
            else:
                made.append(make(child, reading.redaction))
        # what else the container holds (its own text or attributes: never sent, but kept)
        reading.keep(node.key, {**node.rest(), **strays})
    return made


def to_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y"):
        return True
    if lowered in ("false", "0", "no", "n"):
        return False
    return None


def _to_int(raw: str) -> int | None:
    digits = raw.removeprefix("-")
    # ASCII digits only (int() also takes "1_0" and other scripts), and short enough to be a count.
    return int(raw) if digits.isascii() and digits.isdigit() and len(digits) <= 18 else None


class Leaf:
    """A node that holds only text: an attribute (keyed ``@name`` in ``extra``), or, empty, a group the
    record does not have."""

    __slots__ = ("_value", "key", "name")
    listed = False

    def __init__(self, name: str = "", value: str = "", key: str | None = None) -> None:
        self.name, self._value, self.key = name, value, name if key is None else key

    def take(self, key: str) -> list[Node]:
        return []

    def children(self) -> list[Node]:
        return []

    def names(self) -> set[str]:
        return set()

    def text(self) -> str | None:
        return self._value or None

    def own_text(self) -> str | None:
        return self.text()

    def structured(self) -> bool:
        return False

    def data(self) -> JSON:
        return self._value

    def rest(self) -> dict[str, JSON]:
        return {}
