"""Hardened XML parsing shared by every Concur document we read.

lxml with DTDs, entity expansion and network access off, and libxml2's limits on (depth, text size)
left on. A document that declares a DOCTYPE is refused outright: Concur never sends one, and it is the
carrier of XXE and billion-laughs attacks.
"""

from __future__ import annotations

import threading

from lxml import etree

from concur_postback.errors import InvalidInput, InvalidPostback

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


def child_texts(element: etree._Element) -> dict[str, str]:
    """Map each child element's local name to its text (stripped); the first occurrence wins."""
    texts: dict[str, str] = {}
    for child in element.iterchildren(etree.Element):
        name = local_name(child)
        if name not in texts:
            text = child.text if len(child) == 0 else "".join(map(str, child.itertext()))
            texts[name] = (text or "").strip()
    return texts


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
