"""Encryption with the browser's WebCrypto: AES-256-GCM and PBKDF2 (Pyodide only).

Example (Pyodide)::

    cipher = await WebCipher.create(raw_key)          # what datasync.runtime picks
    sealed = await cipher.seal_many([(nonce, data, aad)])

Each batch of blocks is ONE JS call (``Promise.all`` over ``crypto.subtle``), built
once with ``js.Function.new``. WebCrypto exists only in secure contexts (https,
localhost): elsewhere :class:`~datasync.CryptoUnavailableError`. The stored format
is the one of :mod:`datasync.encryption`, whichever side wrote it.
"""
from __future__ import annotations

from typing import Any

from ..errors import AsyncOnlyError, CryptoUnavailableError

_WEB_AES: Any = None
_WEB_PBKDF2: Any = None


def _web_aes() -> Any:
    """JS ``(key, decrypt, ivs, datas, aads) -> Promise<Array<Uint8Array|undefined>>``:
    a whole batch in one call (undefined where authentication failed)."""
    global _WEB_AES
    if _WEB_AES is None:
        import js

        _WEB_AES = js.Function.new(
            "key", "decrypt", "ivs", "datas", "aads",
            "const s = crypto.subtle;"
            "const op = decrypt ? s.decrypt.bind(s) : s.encrypt.bind(s);"
            "return Promise.all(datas.map((d, i) => op({name: 'AES-GCM', iv: ivs[i],"
            " additionalData: aads[i]}, key, d).then((b) => new Uint8Array(b), () => undefined)));",
        )
    return _WEB_AES


def _subtle() -> Any:
    """``crypto.subtle``, or a clear error where the page cannot have it."""
    import js

    subtle = getattr(getattr(js, "crypto", None), "subtle", None)
    if subtle is None:
        raise CryptoUnavailableError(
            "encryption needs WebCrypto (crypto.subtle), which browsers offer only in "
            "secure contexts: serve the page over https or from localhost")
    return subtle


class WebCipher:
    """AES-256-GCM with the browser's WebCrypto (Pyodide). Asynchronous only: in
    Pyodide every block is resident, so nothing decrypts on a synchronous path."""

    decodes_sync = False

    def __init__(self, crypto_key: Any) -> None:
        self._key = crypto_key

    @classmethod
    async def create(cls, key: bytes) -> "WebCipher":
        from pyodide.ffi import to_js

        crypto_key = await _subtle().importKey(
            "raw", to_js(key), "AES-GCM", False, to_js(["encrypt", "decrypt"]))
        return cls(crypto_key)

    def seal(self, nonce: bytes, data: bytes, aad: bytes) -> bytes:
        raise AsyncOnlyError("WebCrypto is asynchronous: use seal_many()")

    def open(self, nonce: bytes, sealed: bytes, aad: bytes) -> bytes | None:
        raise AsyncOnlyError("WebCrypto is asynchronous: use open_many()")

    async def _run(self, decrypt: bool, items: list[tuple[bytes, bytes, bytes]]) -> list[Any]:
        from pyodide.ffi import to_js

        if not items:
            return []
        ivs, datas, aads = zip(*items)
        out = await _web_aes()(self._key, decrypt, to_js(list(ivs)), to_js(list(datas)),
                               to_js(list(aads)))
        return [None if b is None else b.to_bytes() for b in out]

    async def seal_many(self, items: list[tuple[bytes, bytes, bytes]]) -> list[bytes]:
        sealed = await self._run(False, items)
        if any(s is None for s in sealed):
            raise CryptoUnavailableError("WebCrypto refused to encrypt a block")
        return sealed

    async def open_many(self, items: list[tuple[bytes, bytes, bytes]]) -> list[bytes | None]:
        return await self._run(True, items)


async def derive_key(passphrase: str, salt: bytes, iterations: int) -> bytes:
    """PBKDF2-HMAC-SHA256 with WebCrypto's ``deriveBits`` -> 32 bytes."""
    global _WEB_PBKDF2
    from pyodide.ffi import to_js

    _subtle()
    if _WEB_PBKDF2 is None:
        import js

        _WEB_PBKDF2 = js.Function.new(
            "pass", "salt", "iterations",
            "return crypto.subtle.importKey('raw', pass, 'PBKDF2', false, ['deriveBits'])"
            ".then((k) => crypto.subtle.deriveBits({name: 'PBKDF2', hash: 'SHA-256', salt,"
            " iterations}, k, 256)).then((b) => new Uint8Array(b));",
        )
    out = await _WEB_PBKDF2(to_js(passphrase.encode("utf-8")), to_js(salt), iterations)
    return bytes(out.to_bytes())
