"""The simulator's ESS side: its own signing key, and events signed the way Concur signs them.

Concur signs with a key whose private half only it holds, so the simulator makes its own (once per
process) and serves the public half at `GET /_simulator/ess-public-key`: a receiver pointed at the
simulator puts that key in ESS_PUBLIC_KEYS.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


@dataclass(frozen=True)
class EssSigner:
    key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> EssSigner:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, body: bytes, scheme: padding.AsymmetricPadding | None = None) -> str:
        """``Concur-Signature`` for ``body``: RSA-SHA256, PSS unless ``scheme`` says otherwise."""
        chosen = scheme or padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)
        return base64.b64encode(self.key.sign(body, chosen, hashes.SHA256())).decode("ascii")


@functools.cache
def process_signer() -> EssSigner:
    """This process's signer: generating a key takes tens of milliseconds, so once."""
    return EssSigner.generate()
