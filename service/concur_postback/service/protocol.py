"""uvicorn's httptools protocol, as `serve` runs it: where each connection's own rules are applied.

**Mutual TLS for ESS.** Concur connects with a client certificate whose subject CN is
`webhook.api.concursolutions.com` (ESS_CLIENT_CN). With `serve --ssl-ca-certs`, the TLS context
verifies any certificate a client presents against that CA; this protocol then closes, before a byte
of HTTP is read, a connection to the public listener that presented none or one of another CN. The
admin listener (ADMIN_PORT) takes connections without one, so probes need no client certificate. The
CN is checked here rather than in the app because uvicorn does not pass the peer certificate to the
ASGI app, and a connection refused at the handshake's end costs nothing further.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from concur_postback.config import load_settings

log = structlog.get_logger("concur_postback.service")


@dataclass(frozen=True)
class ClientCertificates:
    common_name: str
    admin_port: int | None


@functools.cache
def client_certificates() -> ClientCertificates:
    """Read once per process: uvicorn's worker processes import this module, not the parent's state."""
    settings = load_settings()
    return ClientCertificates(settings.ess_client_cn, settings.admin_port)


def verifies_clients(transport: asyncio.Transport) -> bool:
    """Whether this connection's TLS context checks client certificates (serve --ssl-ca-certs)."""
    tls = transport.get_extra_info("ssl_object")
    return tls is not None and tls.context.verify_mode != ssl.CERT_NONE


def subject_common_names(certificate: dict[str, Any] | None) -> list[str]:
    """The CNs of a peer certificate as `SSLSocket.getpeercert()` gives it."""
    if not certificate:
        return []
    return [value for rdn in certificate.get("subject", ()) for key, value in rdn if key == "commonName"]


class HttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not verifies_clients(transport):
            return
        rules = client_certificates()
        if self.server is not None and self.server[1] == rules.admin_port:
            return
        names = subject_common_names(transport.get_extra_info("peercert"))
        if rules.common_name not in names:
            log.warning(
                "tls.client_refused",
                client=self.client[0] if self.client else None,
                reason="no client certificate" if not names else "client certificate of another CN",
                common_names=names,
            )
            transport.close()
