"""Tokens at rest: AES-256-GCM encrypted, bound to their record, never stored in clear.

The same key is shared by the web tier (which encrypts) and the workers (which decrypt), so it comes
from TOKEN_ENCRYPTION_KEY, or from a key file that `run` generates in its data directory.

AES-GCM (from `cryptography`, like Fernet) rather than Fernet itself: encryption sits on the ack path,
and GCM costs ~1 µs per token where Fernet's CBC + HMAC + base64 costs ~8. Each ciphertext carries a
random 96-bit nonce and authenticates the notification id as associated data, so a ciphertext copied
into another record does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from concur_postback.concur.notification import OAuthToken
from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError, TokenDecryptionError

KEY_FILE_NAME = "token.key"
_VERSION = "v1."
_NONCE_BYTES = 12


class _Nonces:
    """96-bit GCM nonces built the deterministic way (NIST SP 800-38D, 8.2.1): a random 64-bit field
    per process and a 32-bit counter. Unique within a process by construction and across processes
    with overwhelming probability, without a system call or a lock per token. A forked child, or a
    counter that runs out, draws a new random field."""

    def __init__(self) -> None:
        self._renew()

    def _renew(self) -> None:
        self._pid = os.getpid()
        self._field = os.urandom(8)
        self._counter = itertools.count()  # next() on it is atomic under the GIL

    def take(self) -> bytes:
        n = next(self._counter)
        if n >= 0xFFFFFFFF or self._pid != os.getpid():
            self._renew()
            n = next(self._counter)
        return self._field + n.to_bytes(4, "big")


class TokenVault:
    def __init__(self, key: str | bytes) -> None:
        try:
            raw = base64.urlsafe_b64decode(key)
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) != 32:
            raise ConfigurationError(
                "TOKEN_ENCRYPTION_KEY must be 32 random bytes, url-safe base64-encoded "
                "(make one with `concur-postback genkey`)"
            )
        self._aead = AESGCM(raw)
        self._nonces = _Nonces()
        # A separate key for pseudonymous subjects, so the hash of a token reveals nothing usable.
        self._subject_key = hashlib.sha256(b"concur-postback subject\x00" + raw).digest()

    def encrypt(self, token: OAuthToken, bound_to: str) -> str:
        nonce = self._nonces.take()
        sealed = self._aead.encrypt(nonce, token.value.encode(), bound_to.encode())
        return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, data: str, bound_to: str) -> OAuthToken:
        try:
            if not data.startswith(_VERSION):
                raise ValueError(data[:3])
            blob = base64.urlsafe_b64decode(data[len(_VERSION) :])
            plain = self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], bound_to.encode())
            return OAuthToken(plain.decode())
        except (InvalidTag, ValueError, binascii.Error):
            raise TokenDecryptionError("stored token cannot be decrypted with this key") from None

    def subject_of(self, token: OAuthToken) -> str:
        """A stable pseudonym for the traveller a user-level token belongs to."""
        digest = hmac.digest(self._subject_key, token.value.encode(), "sha256")  # one-shot: C fast path
        return "token:" + digest[:16].hex()


def generate_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def ensure_key_file(data_dir: Path) -> str:
    """Return the key stored in data_dir, creating it (mode 0600) on first use."""
    path = data_dir / KEY_FILE_NAME
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_key())
    return path.read_text().strip()


def vault_from_settings(settings: Settings) -> TokenVault:
    if settings.token_encryption_key is None:
        raise ConfigurationError(
            "TOKEN_ENCRYPTION_KEY is not set: the web tier and the workers need the same key "
            "(`concur-postback genkey` prints a new one; `run` keeps one in its data directory)"
        )
    return TokenVault(settings.token_encryption_key.get_secret_value())
