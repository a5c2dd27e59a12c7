"""Hardened XML parsing shared by every Concur document we read, and its nodes as `reader` sees them.

lxml with DTDs, entity expansion and network access off, and libxml2's limits on (depth, text size)
left on. A document that declares a DOCTYPE is refused outright: Concur never sends one, and it is the
carrier of XXE and billion-laughs attacks.

Concur's documents are inconsistent (namespaces present, absent or http vs https; `preferPool` vs
`PreferPool`), so `XmlNode` finds children and attributes by local name without regard to case.
"""

from __future__ import annotations

import threading

from lxml import etree

from concur_postback.concur.reader import JSON, Leaf, Node, add_value
from concur_postback.errors import InvalidDocument, InvalidInput, InvalidPostback

_local = threading.local()


def _parser() -> etree.XMLParser:
    # A parser object must not be shared between threads; one per thread is reused.
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


def parse_document(data: bytes, error: type[InvalidInput] = InvalidPostback) -> etree._Element:
    """Parse bytes (any declared encoding, optional BOM) into a root element, or raise ``error``."""
    if not data.strip():
        raise error("empty_body", "an XML body is required")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise error("malformed_xml", f"not well-formed XML: {_first_line(exc)}") from None
    except (ValueError, LookupError) as exc:  # unknown or unsupported declared encoding
        raise error("malformed_xml", f"cannot be decoded: {_first_line(exc)}") from None
    if root is None:
        raise error("malformed_xml", "no root element")
    docinfo = root.getroottree().docinfo
    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:
        raise error("dtd_forbidden", "documents with a DOCTYPE are refused")
    return root


def local_name(element: etree._Element) -> str:
    """The tag without its namespace (``{ns}Trip`` -> ``Trip``)."""
    tag: object = element.tag  # a function, not a str, for entity references and other non-elements
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


# Concur's documents nest about ten levels deep. ``extra`` mirrors what a model does not know level for
# level, and orjson serialises at most 255 levels (an event fails to serialise well before libxml2's own
# limit of 256 document levels), so deeper documents are refused here, where the reason can be read.
MAX_DEPTH = 64
_TOO_DEEP = etree.XPath("boolean(/*" + "/*" * MAX_DEPTH + ")")  # an element below MAX_DEPTH levels
_XSI = "{http://www.w3.org/2001/XMLSchema-instance}"


def parse(data: bytes, *roots: str) -> XmlNode:
    """Parse a fetched document; InvalidDocument if it is malformed, nested deeper than MAX_DEPTH, or its
    root is none of ``roots``."""
    root = parse_document(data, InvalidDocument)
    if _TOO_DEEP(root):
        raise InvalidDocument("malformed_xml", f"nested deeper than {MAX_DEPTH} levels")
    name = local_name(root)
    if roots and name.lower() not in {r.lower() for r in roots}:
        expected = " or ".join(f"<{r}>" for r in roots)
        raise InvalidDocument("unexpected_document", f"expected {expected}, got <{name[:64]}>")
    return XmlNode(root)


class XmlNode:
    """An element for `reader.read`: children and attributes by local name, any case, each taken once.

    Its children are indexed by lower-cased local name at the first lookup, so each name is worked out
    once per element however many fields look for it."""

    __slots__ = ("_attributes", "_children", "_element", "_index", "_own_text_taken", "_taken", "key", "name")
    listed = False  # XML repeats an element instead

    def __init__(self, element: etree._Element, name: str | None = None) -> None:
        self._element = element
        # a parent's index knows the name already; ``key`` is the name too
        self.name = self.key = local_name(element) if name is None else name
        # (lookup name, local name, value); schema markup (xsi:type, xsi:nil) is kept, never read as a field
        attributes = element.items()  # none, mostly
        self._attributes = tuple(_attribute(str(k), str(v)) for k, v in attributes) if attributes else ()
        self._children: list[_Child] | None = None  # built at the first lookup, in document order
        self._index: dict[str, list[_Child]] | None = None
        self._taken: set[str] = set()  # lower-cased names, of attributes and children alike
        self._own_text_taken = False

    def take(self, key: str) -> list[Node]:
        self._taken.add(key)
        found: list[Node] = []  # loops, not comprehensions: this runs for every field read
        for lookup, local, value in self._attributes:
            if lookup == key:
                found.append(Leaf(local, value, "@" + local))
        for _, name, element in (self._index if self._index is not None else self._indexed()).get(key, ()):
            found.append(XmlNode(element, name))
        return found

    def children(self) -> list[Node]:
        self._taken.update(self._indexed())
        return [XmlNode(element, name) for _, name, element in self._elements()]

    def names(self) -> set[str]:
        return {"@" + lookup for lookup, _, _ in self._attributes if lookup} | self._indexed().keys()

    def text(self) -> str | None:
        if len(self._element) == 0:
            return (self._element.text or "").strip() or None
        # Spaced: joined, "4111111111111111" and "1" from two children would hide a card number.
        parts = (str(part).strip() for part in self._element.itertext())
        return " ".join(part for part in parts if part) or None

    def own_text(self) -> str | None:
        self._own_text_taken = True
        return self._own_text()

    def structured(self) -> bool:
        if len(self._element):
            return True
        return bool(self._attributes) and any(lookup for lookup, _, _ in self._attributes)

    def data(self) -> JSON:
        if not self._attributes and len(self._element) == 0:
            return self.text() or ""
        return self._plain(taken=set(), own_text_taken=False)

    def rest(self) -> dict[str, JSON]:
        return self._plain(self._taken, self._own_text_taken)

    def _plain(self, taken: set[str], own_text_taken: bool) -> dict[str, JSON]:
        data: dict[str, JSON] = {}
        for lookup, name, value in self._attributes:
            if lookup not in taken or not lookup:
                add_value(data, f"@{name}", value)
        for key, name, element in self._elements():
            if key not in taken:
                add_value(data, name, XmlNode(element, name).data())
        own = None if own_text_taken else self._own_text()
        if own:
            data["#text"] = own
        return data

    def _own_text(self) -> str | None:
        """Text directly inside, between and after child elements too (mixed content), spaced."""
        parts = [self._element.text, *(child.tail for child in self._element)]
        return " ".join(part.strip() for part in parts if part and part.strip()) or None

    def _elements(self) -> list[_Child]:
        if self._children is None:
            self._children = []
            for child in self._element:
                tag = child.tag  # as in `local_name`
                if isinstance(tag, str):
                    name = tag.rpartition("}")[2]
                    self._children.append((name.lower(), name, child))
        return self._children

    def _indexed(self) -> dict[str, list[_Child]]:
        if self._index is None:
            self._index = {}
            for child in self._elements():
                self._index.setdefault(child[0], []).append(child)
        return self._index


# A child element as its parent indexes it: (lower-cased local name, local name, element).
_Child = tuple[str, str, etree._Element]


def _attribute(key: str, value: str) -> tuple[str, str, str]:
    name = key.rpartition("}")[2]
    return "" if key.startswith(_XSI) else name.lower(), name, value.strip()


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
