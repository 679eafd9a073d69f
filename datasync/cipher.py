"""AES-256-GCM, one key, as datasync's encryption uses it (natively: ``cryptography``).

Example::

    cipher = NativeCipher(os.urandom(32))
    sealed = cipher.seal(nonce, b"block", aad)
    assert cipher.open(nonce, sealed, aad) == b"block"     # None if not authentic

:class:`Cipher` is the interface :mod:`datasync.encryption` seals blocks with;
:func:`datasync.runtime.make_cipher` picks the implementation: :class:`NativeCipher`
natively, :class:`datasync.browser.webcrypto.WebCipher` (WebCrypto) in Pyodide.
The algorithm is AES-256-GCM (NIST SP 800-38D) with 12-byte nonces and 16-byte tags.
"""
from __future__ import annotations

from typing import Protocol

from .errors import CryptoUnavailableError


class Cipher(Protocol):
    """AES-256-GCM under one key; ``open`` returns None when authentication fails."""

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes: ...

    def open(self, nonce: bytes, sealed: bytes, aad: bytes) -> bytes | None: ...

    async def seal_many(self, items: list[tuple[bytes, bytes, bytes]]) -> list[bytes]: ...

    async def open_many(
        self, items: list[tuple[bytes, bytes, bytes]]
    ) -> list[bytes | None]: ...


class NativeCipher:
    """AES-256-GCM with the ``cryptography`` package (the ``crypto`` extra)."""

    def __init__(self, key: bytes) -> None:
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise CryptoUnavailableError(
                "encryption needs the 'cryptography' package: pip install 'datasync[crypto]'"
            ) from exc
        self._aead = AESGCM(key)
        self._invalid = InvalidTag

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(nonce, data, aad)

    def open(self, nonce: bytes, sealed: bytes, aad: bytes) -> bytes | None:
        try:
            return self._aead.decrypt(nonce, sealed, aad)
        except self._invalid:
            return None

    async def seal_many(self, items: list[tuple[bytes, bytes, bytes]]) -> list[bytes]:
        return [self.seal(*item) for item in items]

    async def open_many(self, items: list[tuple[bytes, bytes, bytes]]) -> list[bytes | None]:
        return [self.open(*item) for item in items]
