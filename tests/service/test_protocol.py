"""`serve`'s connection protocol. With mutual TLS: a CA, a server certificate and client certificates
this test makes, over real sockets; Concur's ESS client certificate's CN is required on the public
listener only. And what one turn of the event loop writes to a connection is sent in one write."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from concur_postback.embedded import free_port
from concur_postback.service.protocol import CoalescingTransport, subject_common_names
from concur_postback.tokens import generate_key
from tests.processes import Process, clean_env
from tests.service.test_ess import EVENT

CONCUR_CN = "webhook.api.concursolutions.com"


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


class Authority:
    """A CA that signs server and client certificates into ``directory``."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.name = subject
        self.cert = (
            self._builder(subject, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = directory / f"{name}.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(getattr(self, "name", subject))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def issue(self, common_name: str, server: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._builder(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key()
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(self.directory / f"{common_name}.crt", self.directory / f"{common_name}.key")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return issued


@pytest.fixture
def mtls(tmp_path: Path, redis_url: str) -> Iterator[tuple[Authority, int, int]]:
    authority = Authority(tmp_path, "test-ca")
    server = authority.issue("localhost", server=True)
    port, admin = free_port(), free_port()
    env = clean_env(
        REDIS_URL=redis_url,
        TOKEN_ENCRYPTION_KEY=generate_key(),
        ESS_VERIFY_SIGNATURE="false",
        ADMIN_PORT=str(admin),
        ADMIN_HOST="127.0.0.1",
    )
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--ssl-certfile", str(server.cert),
            "--ssl-keyfile", str(server.key), "--ssl-ca-certs", str(authority.path)]  # fmt: skip
    process = Process(args, env)
    process.wait_for("Uvicorn running on", prefix=True)
    yield authority, port, admin
    process.stop()


def client(authority: Authority, issued: Issued | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(authority.path))
    if issued is not None:
        context.load_cert_chain(str(issued.cert), str(issued.key))
    return httpx.Client(verify=context, timeout=10)


def test_concurs_client_certificate_is_let_in(mtls: tuple[Authority, int, int]) -> None:
    authority, port, _ = mtls
    with client(authority, authority.issue(CONCUR_CN)) as concur:
        answer = concur.post(f"https://127.0.0.1:{port}/events", content=EVENT)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted"


@pytest.mark.parametrize("who", ["another CN", "no certificate", "another CA"])
def test_anyone_else_is_refused_before_http_on_the_public_listener(
    who: str, mtls: tuple[Authority, int, int], tmp_path: Path
) -> None:
    authority, port, _ = mtls
    issued = {
        "another CN": authority.issue("attacker.example.com"),
        "no certificate": None,
        "another CA": Authority(tmp_path / "..", "other-ca").issue(CONCUR_CN),
    }[who]
    with client(authority, issued) as stranger, pytest.raises(httpx.TransportError):
        stranger.post(f"https://127.0.0.1:{port}/events", content=EVENT)


def test_probes_on_the_admin_listener_need_no_client_certificate(mtls: tuple[Authority, int, int]) -> None:
    authority, _, admin = mtls
    with client(authority, None) as probe:
        assert probe.get(f"https://127.0.0.1:{admin}/healthz").status_code == 200


def test_common_names_are_read_from_a_peer_certificate() -> None:
    peer = {"subject": ((("countryName", "DE"),), (("commonName", CONCUR_CN),))}
    assert subject_common_names(peer) == [CONCUR_CN]
    assert subject_common_names(None) == [] and subject_common_names({}) == []


@dataclass
class Wire:
    """Stands for the socket's transport: what was sent, in order, and when it closed."""

    sent: list[bytes]
    closed: bool = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "written after close"
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_what_one_turn_of_the_loop_writes_goes_out_in_one_write_and_a_close_sends_it_first() -> None:
    async def scenario() -> list[list[bytes]]:
        wire = Wire([])
        transport = CoalescingTransport(wire, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")  # uvicorn: the head...
        transport.write(b"{}")  # ... then the body
        seen = [list(wire.sent)]  # nothing yet: the turn is not over
        await asyncio.sleep(0)
        seen.append(list(wire.sent))
        transport.writelines([b"HTTP/1.1 408 ", b"Request Timeout\r\n\r\n"])
        transport.close()  # at once, within the turn: what is pending goes first
        seen.append(wire.sent[1:] + [b"closed"] * wire.closed)
        transport.write(b"late")  # after the close: dropped, as a closed transport would
        await asyncio.sleep(0)
        seen.append([*wire.sent[2:], transport.get_extra_info("peername").encode()])
        return seen

    before, first, on_close, after = asyncio.run(scenario())
    assert before == []
    assert first == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert on_close == [b"HTTP/1.1 408 Request Timeout\r\n\r\n", b"closed"]
    assert after == [b"info:peername"]  # the rest is the socket's own


def test_a_large_write_goes_out_at_once_so_that_flow_control_sees_it() -> None:
    async def scenario() -> list[int]:
        wire = Wire([])
        transport = CoalescingTransport(wire, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"head")
        transport.write(b"x" * (CoalescingTransport.FLUSH_BYTES - 5))
        sizes = [len(data) for data in wire.sent]  # still below: held
        transport.write(b"x")
        return [*sizes, *(len(data) for data in wire.sent)]

    assert asyncio.run(scenario()) == [CoalescingTransport.FLUSH_BYTES]
