"""Tokens at rest: encrypted with Fernet (AES-128-CBC + HMAC-SHA256), never stored in clear.

The same key is shared by the web tier (which encrypts) and the workers (which decrypt), so it comes
from TOKEN_ENCRYPTION_KEY, or from a key file that `run` generates in its data directory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from concur_postback.concur.notification import OAuthToken
from concur_postback.config import Settings
from concur_postback.errors import ConfigurationError, TokenDecryptionError

KEY_FILE_NAME = "token.key"


class TokenVault:
    def __init__(self, key: str | bytes) -> None:
        raw = key.encode() if isinstance(key, str) else key
        try:
            self._fernet = Fernet(raw)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "TOKEN_ENCRYPTION_KEY must be a Fernet key: 32 url-safe base64-encoded bytes "
                "(make one with `concur-postback genkey`)"
            ) from None
        # A separate key for pseudonymous subjects, so the hash of a token reveals nothing usable.
        self._subject_key = hashlib.sha256(b"concur-postback subject\x00" + raw).digest()

    def encrypt(self, token: OAuthToken) -> str:
        return self._fernet.encrypt(token.value.encode()).decode("ascii")

    def decrypt(self, data: str) -> OAuthToken:
        try:
            return OAuthToken(self._fernet.decrypt(data.encode("ascii")).decode())
        except (InvalidToken, ValueError):
            raise TokenDecryptionError("stored token cannot be decrypted with this key") from None

    def subject_of(self, token: OAuthToken) -> str:
        """A stable pseudonym for the traveller a user-level token belongs to."""
        digest = hmac.new(self._subject_key, token.value.encode(), hashlib.sha256).hexdigest()
        return "token:" + digest[:32]


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


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
