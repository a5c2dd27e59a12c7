"""Secrets and personal data at rest: AES-256-GCM encrypted, bound to their record, never in clear.

Tokens (in stored notifications) and events (kept for sink retries and dead letters: passport and
licence numbers, addresses) are sealed with the same key ring, shared by the web tier and the
workers: TOKEN_ENCRYPTION_KEYS (the first key seals, every key opens, so a key can be rotated while
data sealed with the old one is still stored; `concur-postback rekey` re-seals it), or the one key
of TOKEN_ENCRYPTION_KEY, or a key file that `run` generates in its data directory.

AES-GCM (from `cryptography`, like Fernet) rather than Fernet itself: encryption sits on the ack path,
and GCM costs a fraction of Fernet's CBC + HMAC + base64 per token. Each ciphertext carries a random
96-bit nonce and authenticates the notification id as associated data, so a ciphertext copied into
another record does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
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
_V1 = "v1."  # v1.<base64(nonce + ciphertext)>: one key, before key rings
_V2 = "v2."  # v2.<key id>.<base64(nonce + ciphertext)>
_NONCE_BYTES = 12


class _Nonces:
    """96-bit GCM nonces built the deterministic way (NIST SP 800-38D, 8.2.1): a random 64-bit field
    per process and a 32-bit counter. Unique within a process by construction and across processes
    with overwhelming probability, without a random draw or a lock per token (the fork check costs
    one getpid). A forked child, or a counter that runs out, draws a new random field."""

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


def _raw_key(key: str | bytes) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(key)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 32:
        raise ConfigurationError(
            "TOKEN_ENCRYPTION_KEY must be 32 random bytes, url-safe base64-encoded, and so must each "
            "of TOKEN_ENCRYPTION_KEYS (make one with `concur-postback genkey`)"
        )
    return raw


def _key_id(raw: bytes) -> str:
    """Names the key a value was sealed with (a digest that reveals nothing of the key)."""
    return hashlib.sha256(b"concur-postback key id\x00" + raw).hexdigest()[:8]


class TokenVault:
    """Seals with the first of ``keys``, opens with any of them."""

    def __init__(self, *keys: str | bytes) -> None:
        if not keys:
            raise ConfigurationError("no TOKEN_ENCRYPTION_KEYS given")
        raws = [_raw_key(key) for key in keys]
        self._ring = {_key_id(raw): AESGCM(raw) for raw in raws}
        self._current = _key_id(raws[0])
        self._nonces = _Nonces()
        # A separate key for pseudonymous subjects, so the hash of a token reveals nothing usable. From
        # the oldest key: a new key at the head of the ring leaves every traveller's pseudonym as it was.
        self._subject_key = hashlib.sha256(b"concur-postback subject\x00" + raws[-1]).digest()

    def seal(self, data: bytes, bound_to: str) -> str:
        """``data`` encrypted with the current key; it opens only as ``bound_to``'s."""
        nonce = self._nonces.take()
        sealed = self._ring[self._current].encrypt(nonce, data, bound_to.encode())
        return f"{_V2}{self._current}.{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def open(self, data: str, bound_to: str) -> bytes:
        """What `seal` sealed for ``bound_to``, with whichever key of the ring sealed it."""
        try:
            if data.startswith(_V2):
                key_id, _, encoded = data[len(_V2) :].partition(".")
                keys = [self._ring[key_id]] if key_id in self._ring else []
            elif data.startswith(_V1):
                encoded, keys = data[len(_V1) :], list(self._ring.values())
            else:
                raise ValueError(data[:3])
            blob = base64.urlsafe_b64decode(encoded)
            for aead in keys:
                with contextlib.suppress(InvalidTag):
                    return aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], bound_to.encode())
        except (ValueError, binascii.Error):
            pass
        raise TokenDecryptionError("stored data cannot be decrypted with these keys")

    def is_current(self, data: str) -> bool:
        """Whether ``data`` is sealed with the key that seals now (`rekey` re-seals the rest)."""
        return data.startswith(f"{_V2}{self._current}.")

    def encrypt(self, token: OAuthToken, bound_to: str) -> str:
        return self.seal(token.value.encode(), bound_to)

    def decrypt(self, data: str, bound_to: str) -> OAuthToken:
        try:
            return OAuthToken(self.open(data, bound_to).decode())
        except UnicodeDecodeError:
            raise TokenDecryptionError("stored token cannot be decrypted with these keys") from None

    def subject_of(self, token: OAuthToken) -> str:
        """A stable pseudonym for the traveller a user-level token belongs to."""
        digest = hmac.digest(self._subject_key, token.value.encode(), "sha256")  # one-shot: C fast path
        return "token:" + digest[:16].hex()

    def pseudonym(self, name: str) -> str:
        """A stable pseudonym for a person Concur names (an ESS event's user id), for logs and Redis."""
        return "user:" + hmac.digest(self._subject_key, name.encode(), "sha256")[:16].hex()


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
    keys = settings.encryption_keys
    if not keys:
        raise ConfigurationError(
            "TOKEN_ENCRYPTION_KEY is not set: the web tier and the workers need the same key "
            "(`concur-postback genkey` prints a new one; `run` keeps one in its data directory)"
        )
    return TokenVault(*keys)
