"""The project's error hierarchy, in one module:

    ConcurPostbackError
    ├── ConfigurationError      a setting missing or contradicting another (start-up; exit 2)
    ├── InvalidInput            input we refuse to read (a stable ``code``, a ``detail``)
    │   ├── InvalidPostback     a postback refused with 400
    │   ├── InvalidEvent        an ESS event refused with 400 (ESS does not retry it)
    │   └── InvalidDocument     a fetched trip, profile or FOP that cannot be read (permanent)
    ├── BadSignature            an ESS event whose Concur-Signature no key of the ring verifies (401)
    ├── PayloadTooLarge         a body over MAX_BODY_BYTES (413)
    ├── StoreUnavailable        Redis cannot take a postback now (503 + Retry-After)
    ├── TokenDecryptionError    stored data sealed with a key the ring does not hold
    ├── FetchError              one fetch from Concur failed
    │   ├── RetryableFetch      429, 5xx, timeouts, network errors: try again later
    │   ├── PermanentFetch      401, 403, 404 and the like: trying again cannot help
    │   │   ├── HostNotAllowed  a URL the host policy refuses to send a token to
    │   │   └── ReauthorizationNeeded  a company's refresh token refused: connect it again
    │   └── FetchDeferred       the request budget says wait; no attempt was made
    └── SinkError               a delivery failed (``permanent`` or retried)

Messages never contain a token or any other request secret: they are shown to callers and logged.
"""

from __future__ import annotations


class ConcurPostbackError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(ConcurPostbackError):
    """A setting is missing or contradicts another; raised at start-up."""


class InvalidInput(ConcurPostbackError):
    """Input we refuse to read. ``code`` is stable and machine-readable, ``detail`` for people."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class InvalidPostback(InvalidInput):
    """A postback that must be refused with 400."""


class InvalidEvent(InvalidInput):
    """An ESS event body that must be refused with 400: not JSON, or not an ESS event."""


class BadSignature(ConcurPostbackError):
    """An ESS event's Concur-Signature is missing or no key of the ring verifies it. Answered with
    401, which ESS retries for 72 h: an operator who must update ESS_PUBLIC_KEYS loses nothing."""


class InvalidDocument(InvalidInput):
    """A trip, profile or form of payment fetched from Concur that cannot be read (malformed XML,
    unexpected root). Permanent: fetching it again returns the same document."""


class PayloadTooLarge(ConcurPostbackError):
    """The body exceeds the configured limit; refused with 413 before it is parsed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


class StoreUnavailable(ConcurPostbackError):
    """Redis could not durably take a notification; refused with 503 so Concur retries."""


class TokenDecryptionError(ConcurPostbackError):
    """A stored token cannot be decrypted (wrong TOKEN_ENCRYPTION_KEY, or expired)."""


class FetchError(ConcurPostbackError):
    """Concur did not give us the document. ``status`` is the HTTP status, None for network errors."""

    def __init__(self, detail: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.retry_after = retry_after


class RetryableFetch(FetchError):
    """429, 5xx, a timeout or a connection error: worth another attempt after a pause."""


class PermanentFetch(FetchError):
    """401/403 (token revoked or not permitted), 404, other 4xx: another attempt changes nothing."""


class HostNotAllowed(PermanentFetch):
    """A URL that is not on an allowed Concur host: the token is never sent there."""


class ReauthorizationNeeded(PermanentFetch):
    """Concur refused a company's refresh token (`invalid_grant`): nothing is fetched for that
    company until an administrator connects it again (`company connect`), which requeues its
    notifications that failed for this reason."""


class FetchDeferred(FetchError):
    """Not sent: the deployment's request budget for the host (or a pause Concur asked for with a
    429) has no slot soon enough. Not a failure: the notification waits ``retry_after`` seconds in
    the retry schedule instead of holding its job, and no attempt is counted."""


class SinkError(ConcurPostbackError):
    """A sink could not take an event. ``permanent``: trying again cannot help (e.g. HTTP 400 from a
    webhook receiver), so the delivery becomes a dead letter at once instead of being retried."""

    def __init__(self, detail: str, permanent: bool = False) -> None:
        super().__init__(detail)
        self.permanent = permanent
