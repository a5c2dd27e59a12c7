"""Concur-Signature: RSA-SHA256 over the raw body, PSS with any salt length or PKCS#1 v1.5, against a ring."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from concur_postback.concur.signatures import KeyRing
from concur_postback.errors import BadSignature, ConfigurationError
from concur_postback.simulator.ess import EssSigner

BODY = b'{"id": "e-1", "topic": "public.concur.travel.itinerary"}'
SIGNER, OTHER = EssSigner.generate(), EssSigner.generate()


def ring(*signers: EssSigner) -> KeyRing:
    return KeyRing.from_pem(b"# a comment between keys\n".join(s.public_pem() for s in signers), "test")


@pytest.mark.parametrize(
    "scheme",
    [
        None,  # PSS, maximum salt
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=0),
        padding.PKCS1v15(),
    ],
)
def test_either_padding_with_any_salt_length_verifies(scheme: padding.AsymmetricPadding | None) -> None:
    ring(SIGNER).verify(BODY, SIGNER.sign(BODY, scheme).encode())


def test_the_second_key_of_the_ring_verifies_too() -> None:
    ring(OTHER, SIGNER).verify(BODY, SIGNER.sign(BODY).encode())


def test_url_safe_or_unpadded_base64_and_line_breaks_are_read() -> None:
    signature = SIGNER.sign(BODY)
    url_safe = signature.replace("+", "-").replace("/", "_")
    for variant in (url_safe, signature.rstrip("="), signature[:40] + "\n" + signature[40:]):
        ring(SIGNER).verify(BODY, variant.encode())


@pytest.mark.parametrize(
    ("body", "signature", "reason"),
    [
        (BODY, OTHER.sign(BODY).encode(), "no key of the ring"),  # the wrong key
        (BODY + b" ", SIGNER.sign(BODY).encode(), "no key of the ring"),  # a tampered body
        (BODY, None, "no Concur-Signature"),
        (BODY, b"", "no Concur-Signature"),
        (BODY, b"not base64!", "not base64"),
        (BODY, b"A" * 3000, "too long"),
    ],
)
def test_anything_else_is_a_bad_signature(body: bytes, signature: bytes | None, reason: str) -> None:
    with pytest.raises(BadSignature, match=reason):
        ring(SIGNER).verify(body, signature)


def test_the_ring_by_default_holds_the_two_keys_concur_publishes() -> None:
    assert len(KeyRing.load(None).keys) == 2
    with pytest.raises(BadSignature):
        KeyRing.load(None).verify(BODY, SIGNER.sign(BODY).encode())


def test_a_key_file_that_holds_no_usable_key_stops_the_start(tmp_path: Path) -> None:
    empty, broken = tmp_path / "empty.pem", tmp_path / "broken.pem"
    empty.write_text("nothing here\n")
    broken.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    cases = ((empty, "no PEM public key"), (broken, "cannot be read"), (tmp_path / "gone", "cannot read"))
    for path, said in cases:
        with pytest.raises(ConfigurationError, match=said):
            KeyRing.load(path)
