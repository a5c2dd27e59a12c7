"""The vault: what it seals opens only for its record, with any key of the ring, and rotates."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from concur_postback.concur.notification import OAuthToken
from concur_postback.errors import TokenDecryptionError
from concur_postback.tokens import TokenVault, generate_key

OLD, NEW = generate_key(), generate_key()


def test_sealed_data_opens_only_for_its_record() -> None:
    vault = TokenVault(OLD)
    sealed = vault.seal(b"passport X1234567", bound_to="ev:1")
    assert b"X1234567" not in sealed.encode() and vault.open(sealed, "ev:1") == b"passport X1234567"
    with pytest.raises(TokenDecryptionError):
        vault.open(sealed, "ev:2")  # copied into another record
    with pytest.raises(TokenDecryptionError):
        TokenVault(NEW).open(sealed, "ev:1")


def test_a_ring_seals_with_its_first_key_and_opens_with_any() -> None:
    before, during, after = TokenVault(OLD), TokenVault(NEW, OLD), TokenVault(NEW)
    old = before.encrypt(OAuthToken("tok-1"), "n1")
    assert during.decrypt(old, "n1").value == "tok-1"  # stored before the rotation: still readable
    assert not during.is_current(old)  # ... and what `rekey` re-seals
    new = during.encrypt(OAuthToken("tok-2"), "n2")
    assert during.is_current(new) and after.decrypt(new, "n2").value == "tok-2"
    with pytest.raises(TokenDecryptionError):
        after.decrypt(old, "n1")  # the old key dropped before rekey: that value is lost


def test_values_sealed_before_key_rings_still_open() -> None:
    raw = base64.urlsafe_b64decode(OLD)
    nonce = b"\x00" * 12
    v1 = "v1." + base64.urlsafe_b64encode(nonce + AESGCM(raw).encrypt(nonce, b"tok", b"n1")).decode()
    assert TokenVault(NEW, OLD).decrypt(v1, "n1").value == "tok"


def test_a_new_key_at_the_head_of_the_ring_keeps_pseudonyms() -> None:
    token = OAuthToken("traveller-token")
    assert TokenVault(NEW, OLD).subject_of(token) == TokenVault(OLD).subject_of(token)
