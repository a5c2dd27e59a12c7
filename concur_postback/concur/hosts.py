"""Which URLs may carry a traveller's token: the only hosts we ever fetch from are Concur's.

A notification's ObjectURI is attacker-controlled input as far as we know; if we fetched whatever it
named we would hand a live OAuth token to any host. So a URI must use the base URL's scheme rules, the
default port, no user-info, and a host that is the base URL's host or matches an allowed pattern.
Plain http is allowed only when the base URL is http, and then only for that exact host and port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from urllib.parse import SplitResult, unquote, urlsplit

from concur_postback.config import Settings
from concur_postback.errors import InvalidPostback

# Trip ids seen in Concur's docs: letters, digits and `$` (e.g. gWu9dRi$pEjxZkYtp0lWbN5gQ...). Never
# `.` or `..`: as the last path segment (`v1.1/%2e%2e`) an HTTP client resolves it to another resource.
# Patterns end in \Z, not $: `$` also matches before a final newline (`ABC%0A` would pass).
TRIP_ID_RE = re.compile(r"^(?!\.\.?\Z)[A-Za-z0-9$_.~-]{1,128}\Z")
_PLAIN_URL_RE = re.compile(r"^[\x21-\x7e]{1,2048}\Z")  # visible ASCII: no spaces, controls or Unicode tricks
_TRIP_PATH_RE = re.compile(r"^/api/travel/trip/v1\.[01]/([^/?#]+)\Z", re.IGNORECASE)
# A host is dot-separated labels of letters, digits, '-' and '_' (a trailing dot allowed), or an IPv6
# address as urlsplit gives it. Anything else ('%', '\\', an empty label) is read differently by other
# URL parsers (`evil.com\\.concursolutions.com` is `evil.com` to a WHATWG parser), so it never passes.
_HOST_RE = re.compile(r"(?:[a-z0-9_-]+\.)*[a-z0-9_-]+\.?|[0-9a-f.]*:[0-9a-f:.]*")


@dataclass(frozen=True)
class HostPolicy:
    """Allowed scheme(s), host and patterns for URLs that will receive a token."""

    base_host: str
    base_port: int
    allow_http: bool
    patterns: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> HostPolicy:
        """CONCUR_BASE_URL's host, and CONCUR_ALLOWED_HOSTS."""
        return cls.from_base_url(settings.concur_base_url, settings.concur_allowed_hosts)

    @classmethod
    def from_base_url(cls, base_url: str, extra_patterns: Iterable[str]) -> HostPolicy:
        base = urlsplit(base_url)
        host = (base.hostname or "").lower()
        allow_http = base.scheme == "http"
        return cls(
            base_host=host,
            base_port=_port(base),
            allow_http=allow_http,
            patterns=tuple(p.strip().lower() for p in extra_patterns if p.strip()),
        )

    def host_allowed(self, host: str) -> bool:
        host = host.lower()
        if not _HOST_RE.fullmatch(host):
            return False
        host = host.rstrip(".")
        if host == self.base_host:
            return True
        if host in self.patterns:
            return True
        # A wildcard never admits an IP address: list one exactly if you mean it.
        return any(fnmatchcase(host, pattern) for pattern in self.patterns) and not _is_ip_literal(host)

    def check_url(self, url: str) -> SplitResult:
        """Return the parsed URL if a token may be sent to it, else raise InvalidPostback."""
        if not _PLAIN_URL_RE.match(url):
            raise InvalidPostback("invalid_object_uri", "ObjectURI is not a plain URL")
        try:
            parts = urlsplit(url)
            port = _port(parts)
        except ValueError as exc:
            raise InvalidPostback("invalid_object_uri", "ObjectURI is not a valid URL") from exc
        scheme = parts.scheme.lower()
        if scheme != "https" and not (scheme == "http" and self.allow_http):
            raise InvalidPostback("object_uri_not_allowed", "ObjectURI scheme must be https")
        if "@" in parts.netloc:
            raise InvalidPostback("object_uri_not_allowed", "ObjectURI must not carry user info")
        host = (parts.hostname or "").lower()
        if not host or not self.host_allowed(host):
            raise InvalidPostback("object_uri_not_allowed", "ObjectURI host is not an allowed Concur host")
        if scheme == "http" and (host.rstrip(".") != self.base_host or port != self.base_port):
            # An http base URL (a simulator, a local proxy) admits itself only: nothing else in clear text.
            raise InvalidPostback("object_uri_not_allowed", "ObjectURI scheme must be https")
        default_port = 443 if scheme == "https" else 80
        if port != (self.base_port if host == self.base_host else default_port):
            raise InvalidPostback("object_uri_not_allowed", "ObjectURI port is not allowed")
        return parts

    def trip_id_from_uri(self, url: str) -> str:
        """Validate a trip ObjectURI and return the trip id it names."""
        parts = self.check_url(url)
        if parts.query or parts.fragment:
            raise InvalidPostback("invalid_object_uri", "ObjectURI must not have a query or fragment")
        match = _TRIP_PATH_RE.match(parts.path)
        if match is None:
            raise InvalidPostback(
                "invalid_object_uri", "ObjectURI is not a trip URI (/api/travel/trip/v1.1/ID)"
            )
        trip_id = unquote(match.group(1))
        if not TRIP_ID_RE.match(trip_id):
            raise InvalidPostback("invalid_object_uri", "ObjectURI names an invalid trip id")
        return trip_id


def _port(parts: SplitResult) -> int:
    port = parts.port  # raises ValueError when out of range or not a number
    if port is not None:
        return port
    return 443 if parts.scheme.lower() == "https" else 80


def _is_ip_literal(host: str) -> bool:
    # Hostnames never contain ':' and a top-level domain never starts with a digit; anything else is an
    # address in one of the forms resolvers accept (127.0.0.1, 2130706433, 0x7f000001, 0177.1).
    return ":" in host or host.rpartition(".")[2][:1].isdigit()
