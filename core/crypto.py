"""Encryption at rest for sensitive fields that search never needs.

Phone numbers, postal addresses, staff notes and raw billing details are stored as Fernet tokens
(AES-128-CBC + HMAC-SHA256, from the ``cryptography`` package). The key ring holds one or more
keys: the first encrypts, all of them decrypt. Rotation is therefore:

1. put a new key first in ``MEMBERDESK_ENCRYPTION_KEYS`` (keep the old ones after it);
2. run ``python -m cli rotate-key``, which re-encrypts every encrypted column with the new key;
3. remove the old keys.

There is no plaintext fallback: without a key, reading or writing an encrypted field fails with a
sentence that says which setting is missing.
"""

from __future__ import annotations

import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class EncryptionKeyError(RuntimeError):
    """The encryption key is missing or wrong; the message says what to do."""


class KeyRing:
    def __init__(self, keys: list[str]):
        if not keys:
            raise EncryptionKeyError(
                "No encryption key is configured: set MEMBERDESK_ENCRYPTION_KEYS "
                "(or encryption_keys under [memberdesk] in .streamlit/secrets.toml)."
            )
        try:
            self._fernets = [Fernet(k.strip().encode()) for k in keys]
        except (ValueError, TypeError):
            raise EncryptionKeyError(
                "An encryption key is not a valid Fernet key (32 url-safe base64-encoded bytes); "
                "create one with `python -m cli keygen`."
            ) from None
        self._multi = MultiFernet(self._fernets)
        self._primary = keys[0].strip().encode()

    def digest_key(self) -> bytes:
        """A key for keyed digests (HMAC), derived from the primary key: a digest is not
        reversible by trying every input without it. A rotation changes the digests."""
        return hashlib.sha256(b"memberdesk digest key\x00" + self._primary).digest()

    def encrypt(self, plaintext: str) -> str:
        return self._fernets[0].encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._multi.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken:
            raise EncryptionKeyError(
                "A stored value cannot be decrypted with the configured keys; was a key removed "
                "before `python -m cli rotate-key` ran?"
            ) from None

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` with the primary key (no-op cost if it already uses it)."""
        try:
            return self._multi.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise EncryptionKeyError("A stored value cannot be decrypted with the configured keys.") from None


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


_active: KeyRing | None = None


def set_keyring(ring: KeyRing | None) -> None:
    """Install the key ring used by encrypted columns (done by ``core.db.connect``)."""
    global _active
    _active = ring


def keyring() -> KeyRing:
    if _active is None:
        raise EncryptionKeyError(
            "No encryption key is configured: set MEMBERDESK_ENCRYPTION_KEYS "
            "(or encryption_keys under [memberdesk] in .streamlit/secrets.toml)."
        )
    return _active
