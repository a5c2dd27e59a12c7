"""Reading Concur's XML documents tolerantly, without losing anything.

Concur's documents are inconsistent (namespaces present, absent or http vs https; `preferPool` vs
`PreferPool`) and grow new elements; its own guidance is that strict parsing "will result in
breakage". So records are read by local name, case-insensitively, and every child element a model
does not know lands in the record's ``extra`` mapping (local name -> text, or a nested mapping) so a
new Concur field still reaches the sinks. Card numbers never survive into ``extra``: any run of
13-19 digits is masked there, whatever element it sits in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lxml import etree

from concur_postback.concur.notification import mask
from concur_postback.concur.xml import local_name, parse_document
from concur_postback.errors import InvalidDocument

# What `extra` holds: text, a mapping of children (repeated names become lists), or a list.
JSON = str | dict[str, "JSON"] | list["JSON"] | None

# Card numbers as people write them: 13 or more digits with single spaces or hyphens anywhere, or
# groups of four split by up to two of " ._/-" (4111.1111.1111.1111). Plain decimals such as a
# latitude (38.812690000000) are not card-shaped and stay as they are.
_PAN_RE = re.compile(r"(?<!\d)(?:\d(?:[ -]?\d){12,}|\d{4}(?:[ ._/-]{1,2}\d{4}){2}[ ._/-]{1,2}\d{1,7})(?!\d)")


# Concur's documents nest about ten levels deep. ``extra`` mirrors what a model does not know level for
# level, and orjson serialises at most 255 levels (an event fails to serialise well before libxml2's own
# limit of 256 document levels), so deeper documents are refused here, where the reason can be read.
MAX_DEPTH = 64
_TOO_DEEP = "boolean(/*" + "/*" * MAX_DEPTH + ")"  # an element below MAX_DEPTH levels


def parse(data: bytes, *roots: str) -> etree._Element:
    """Parse a fetched document; InvalidDocument if it is malformed, nested deeper than MAX_DEPTH, or its
    root is none of ``roots``."""
    root = parse_document(data, InvalidDocument)
    if root.xpath(_TOO_DEEP):
        raise InvalidDocument("malformed_xml", f"nested deeper than {MAX_DEPTH} levels")
    name = local_name(root)
    if roots and name.lower() not in {r.lower() for r in roots}:
        expected = " or ".join(f"<{r}>" for r in roots)
        raise InvalidDocument("unexpected_document", f"expected {expected}, got <{name[:64]}>")
    return root


def scrub_card_numbers(text: str) -> str:
    """Mask anything shaped like a card number (13-19 digits, optionally grouped) to its last four."""
    return _PAN_RE.sub(lambda m: mask(re.sub(r"\D", "", m.group())), text)


def element_data(element: etree._Element) -> JSON:
    """A subtree as plain data: text for a leaf, else a mapping of children (and ``@attributes``)."""
    children = list(_elements(element))
    if not children and not element.attrib:
        return scrub_card_numbers((element.text or "").strip())
    data: dict[str, JSON] = {f"@{k}": scrub_card_numbers(v) for k, v in _attributes(element)}
    for child in children:
        add_value(data, local_name(child), element_data(child))
    text = (element.text or "").strip()
    if text:
        data["#text"] = scrub_card_numbers(text)
    return data


def local_attr(name: str) -> str:
    return name.rpartition("}")[2]


def _elements(element: etree._Element) -> Iterator[etree._Element]:
    return element.iterchildren(etree.Element)


def _attributes(element: etree._Element) -> Iterator[tuple[str, str]]:
    for key, value in element.attrib.items():
        yield local_attr(str(key)), str(value)


def add_value(data: dict[str, JSON], name: str, value: JSON) -> None:
    """Add ``value`` under ``name`` without overwriting: a name seen twice holds a list."""
    if name not in data:
        data[name] = value
    elif isinstance(existing := data[name], list):
        existing.append(value)
    else:
        data[name] = [existing, value]


class Fields:
    """The children of one element, looked up by local name without regard to case.

    Each lookup consumes what it finds; ``extra()`` returns what nobody asked for, so a model keeps
    every field it does not know. Attributes are looked up the same way (``attr``).
    """

    def __init__(self, element: etree._Element) -> None:
        self.element = element
        self._children: dict[str, list[etree._Element]] = {}
        for child in _elements(element):
            self._children.setdefault(local_name(child).lower(), []).append(child)
        self._attrs = {k.lower(): v for k, v in _attributes(element)}
        self._used: set[str] = set()
        self._used_attrs: set[str] = set()

    def text(self, *names: str) -> str | None:
        """Stripped text of the first child with any of ``names``; None when absent or empty."""
        for child in self.all(*names)[:1]:
            text = "".join(map(str, child.itertext())).strip()
            return text or None
        return None

    def all(self, *names: str) -> list[etree._Element]:
        """Every child with any of ``names``, in document order."""
        found: list[etree._Element] = []
        for name in names:
            key = name.lower()
            self._used.add(key)
            found.extend(self._children.get(key, []))
        return sorted(found, key=_position) if len(names) > 1 else found

    def one(self, *names: str) -> etree._Element | None:
        found = self.all(*names)
        return found[0] if found else None

    def attr(self, *names: str) -> str | None:
        for name in names:
            key = name.lower()
            self._used_attrs.add(key)
            if key in self._attrs:
                return self._attrs[key].strip() or None
        return None

    def extra(self) -> dict[str, JSON]:
        """Every child element and attribute not looked up, as plain data (card numbers masked)."""
        data: dict[str, JSON] = {
            f"@{k}": scrub_card_numbers(v)
            for k, v in _attributes(self.element)
            if k.lower() not in self._used_attrs
        }
        for child in _elements(self.element):
            if local_name(child).lower() not in self._used:
                add_value(data, local_name(child), element_data(child))
        return data


def _position(element: etree._Element) -> int:
    parent = element.getparent()
    return parent.index(element) if parent is not None else 0


def to_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "y"):
        return True
    if lowered in ("false", "0", "no", "n"):
        return False
    return None


def to_decimal_text(value: str | None) -> str | None:
    """Amounts stay text (exact, no float rounding); this only normalises blanks to None."""
    return value.strip() if value and value.strip() else None
