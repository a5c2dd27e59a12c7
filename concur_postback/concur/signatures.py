"""The `Concur-Signature` of an ESS event: an RSA-SHA256 signature over the raw body, base64.

Concur publishes its public keys (one before, one after 2025-10-22: `ess_public_keys.pem`, shipped
here) but not the padding. The one public receiver found verifies PSS (MGF1-SHA256); PKCS#1 v1.5 is
the other usual choice. A signature is accepted if any key of the ring verifies it with either padding
(PSS with any salt length), so a key rotation or either padding needs no release of ours.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from concur_postback.errors import BadSignature, ConfigurationError

HEADER = b"concur-signature"
_PEM_BEGIN = b"-----BEGIN PUBLIC KEY-----"
_PADDINGS = (
    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
    padding.PKCS1v15(),
)
_URLSAFE = bytes.maketrans(b"-_", b"+/")
_MAX_SIGNATURE_CHARS = 2048  # base64 of a 8192-bit signature is 1,368


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[rsa.RSAPublicKey, ...]

    @classmethod
    def from_pem(cls, pem: bytes, where: str) -> KeyRing:
        """Every public key in ``pem`` (text between the keys, such as comments, is ignored)."""
        keys = []
        for block in pem.split(_PEM_BEGIN)[1:]:
            try:
                key = serialization.load_pem_public_key(_PEM_BEGIN + block)
            except ValueError as exc:
                raise ConfigurationError(f"{where}: a public key cannot be read ({exc})") from None
            if not isinstance(key, rsa.RSAPublicKey):
                raise ConfigurationError(f"{where}: only RSA public keys can verify Concur-Signature")
            keys.append(key)
        if not keys:
            raise ConfigurationError(f"{where}: no PEM public key (-----BEGIN PUBLIC KEY-----) in it")
        return cls(tuple(keys))

    @classmethod
    def load(cls, path: Path | None) -> KeyRing:
        """The keys in ``path`` (ESS_PUBLIC_KEYS), or Concur's published keys when it is not set."""
        if path is None:
            return cls.from_pem(files(__package__).joinpath("ess_public_keys.pem").read_bytes(), "built-in")
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"ESS_PUBLIC_KEYS {path}: cannot read it ({exc.strerror})") from None
        return cls.from_pem(pem, f"ESS_PUBLIC_KEYS {path}")

    def verify(self, body: bytes, signature: bytes | None) -> None:
        """Return if a key of the ring signed ``body``; raise BadSignature otherwise."""
        if not signature:
            raise BadSignature("no Concur-Signature header")
        if len(signature) > _MAX_SIGNATURE_CHARS:
            raise BadSignature("Concur-Signature is too long")
        try:
            text = b"".join(signature.split()).translate(_URLSAFE)  # either alphabet, padded or not
            raw = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise BadSignature("Concur-Signature is not base64") from None
        for key in self.keys:
            for scheme in _PADDINGS:
                try:
                    key.verify(raw, body, scheme, hashes.SHA256())
                except InvalidSignature:
                    continue
                return
        raise BadSignature("no key of the ring verifies Concur-Signature")
