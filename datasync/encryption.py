"""Encryption at rest: every block sealed on its own with AES-256-GCM.

Example::

    db = await datasync.open("app.dsdb", encryption_key="correct horse battery staple")
    await db.execute("CREATE TABLE secrets(body TEXT)")
    await db.rekey(os.urandom(32))          # all blocks + metadata in one flush
    await db.close()
    db = await datasync.open("app.dsdb", encryption_key=new_raw_key)

A key is 32 raw bytes, or a passphrase (``str``) stretched with
PBKDF2-HMAC-SHA256 (:data:`PBKDF2_ITERATIONS` iterations, a random 16-byte salt
per database). A stored block payload is ``nonce(12) || ciphertext || tag(16)``
with a fresh random nonce per write; the additional data binds the database id,
the file, the block index and the version, so a block moved or swapped, or a
payload relabelled with another version, fails to authenticate. NOT detected: a
whole older record put back (its payload *and* its own older version), i.e. one
block rolled back, is caught by the *version map*: the metadata carries
``map`` = XOR over every block ``i`` of HMAC-SHA256(map key, i || version_i)
(truncated to 128 bits; the map key is HMAC-SHA256(key, "datasync-version-map-v1")),
kept up to date incrementally by every flush and checked when the store opens and
when a follower catches up. Without the key nobody can produce a valid map for a
mix of versions; what stays undetectable is rolling back the WHOLE store (metadata
and every block) to an earlier consistent state. The CRC-32 of :class:`Codec`
still covers the stored payload.

The scheme lives in ``meta.extra["encryption"]``: ``alg``, ``kdf``
(``"PBKDF2-HMAC-SHA256"`` or ``"raw"``), ``iterations`` and ``salt`` (base64) for
a passphrase, and ``check`` (base64 of nonce || AES-GCM of :data:`CHECK_PLAINTEXT`
under additional data ``db_id + "key-check"``), which tells a wrong key at open,
before anything is written. Natively the ``cryptography`` package encrypts; in
Pyodide the browser's WebCrypto does (one JS call per batch of blocks), so the
stored format is the same in both.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from typing import Any, Union

from .cipher import Cipher, NativeCipher  # noqa: F401 (NativeCipher: part of this API)
from .errors import CorruptBlockError, InvalidOptionError, WrongKeyError
from .format import (
    Codec,
    Meta,
    PlainCodecs,
    Record,
    key_identity,
    version_map_of,
    with_version_map,
)

#: What ``encryption_key`` accepts: 32 raw bytes or a passphrase.
EncryptionKey = Union[bytes, bytearray, memoryview, str]

ALG = "AES-256-GCM"
KDF_PBKDF2 = "PBKDF2-HMAC-SHA256"
KDF_RAW = "raw"
#: OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
PBKDF2_ITERATIONS = 600_000
KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
#: Bytes an encrypted payload has beyond the block it holds.
OVERHEAD = NONCE_BYTES + TAG_BYTES
#: The constant sealed as the key-check value.
CHECK_PLAINTEXT = b"datasync key check v1"
_AAD_HEAD = b"datasync-block-v1\0"
_INDEX_VERSION = struct.Struct("<qq")


def block_aad(db_id: str, file: str, index: int, version: int) -> bytes:
    """The additional data sealed with a block: database id, file, index, version."""
    return (_AAD_HEAD + db_id.encode() + b"\0" + file.encode() + b"\0"
            + _INDEX_VERSION.pack(index, version))


def check_aad(db_id: str) -> bytes:
    return (db_id + "key-check").encode()


async def make_cipher(key: bytes) -> Cipher:
    """The cipher for this runtime: ``cryptography`` natively, WebCrypto in Pyodide
    (:mod:`datasync.runtime` picks)."""
    from . import runtime

    return await runtime.make_cipher(key)


async def derive_key(passphrase: str, salt: bytes, iterations: int) -> bytes:
    """PBKDF2-HMAC-SHA256 of the UTF-8 passphrase -> 32 bytes (``hashlib`` natively,
    WebCrypto in Pyodide, where 600,000 rounds of pure-WASM hashing take seconds)."""
    from . import runtime

    return await runtime.derive_key(passphrase, salt, iterations)


class EncryptedCodec(Codec):
    """A :class:`Codec` whose payloads are AES-256-GCM sealed (see the module doc).

    Example: ``codec = EncryptedCodec(NativeCipher(key), meta.db_id)``
    """

    def __init__(self, cipher: Cipher, db_id: str, map_key: bytes | None = None) -> None:
        self.cipher = cipher
        self.db_id = db_id
        self.decodes_sync = getattr(cipher, "decodes_sync", True)
        self.map_key = map_key
        self.tracks_versions = map_key is not None

    def version_tag(self, index: int, version: int) -> int:
        """This block's term of the version map (see the module docstring)."""
        assert self.map_key is not None
        mac = hmac.new(self.map_key, struct.pack("<qq", index, version), hashlib.sha256)
        return int.from_bytes(mac.digest()[:16], "big")

    def version_map(self, versions: dict[int, int]) -> int:
        """The version map of every block's stored version."""
        out = 0
        for index, version in versions.items():
            out ^= self.version_tag(index, version)
        return out

    def _moved(self, value: int, changes: dict[int, int | None],
               tracked: dict[int, int]) -> int:
        """Version map ``value`` updated for ``changes`` (from ``tracked``)."""
        for i, new in changes.items():
            old = tracked.get(i)
            if old != new:
                if old is not None:
                    value ^= self.version_tag(i, old)
                if new is not None:
                    value ^= self.version_tag(i, new)
        return value

    # The Codec interface of version authentication (see datasync.format.Codec).
    def versions_authentic(self, versions: dict[int, int], meta: Meta) -> bool:
        if not self.tracks_versions:
            return True
        return self.version_map(versions) == version_map_of(meta)

    def moves_authentic(self, old: Meta, new: Meta, changes: dict[int, int | None],
                        tracked: dict[int, int]) -> bool:
        if not self.tracks_versions:
            return True
        return self._moved(version_map_of(old) or 0, changes, tracked) == version_map_of(new)

    def meta_after(self, base: Meta, new: Meta, changes: dict[int, int | None],
                   tracked: dict[int, int], *, full: bool) -> Meta:
        if not self.tracks_versions:
            return new
        if full:  # every block is written (a rekey): start afresh
            value = self.version_map({i: v for i, v in changes.items() if v is not None})
        else:
            value = self._moved(version_map_of(base) or 0, changes, tracked)
        return with_version_map(new, value)

    def encode(self, file: str, index: int, version: int, data: bytes) -> Record:
        nonce = os.urandom(NONCE_BYTES)
        payload = nonce + self.cipher.seal(nonce, bytes(data),
                                           block_aad(self.db_id, file, index, version))
        return Record(version, self._checksum(file, index, version, payload), payload)

    def decode(self, file: str, index: int, record: Record, *, where: str = "store") -> bytes:
        payload = super().decode(file, index, record, where=where)
        plain = None
        if len(payload) >= OVERHEAD:
            plain = self.cipher.open(payload[:NONCE_BYTES], payload[NONCE_BYTES:],
                                     block_aad(self.db_id, file, index, record[0]))
        if plain is None:
            raise self._unauthentic(file, index, record, where)
        return plain

    async def encode_many(
        self, file: str, version: int, blocks: dict[int, bytes]
    ) -> dict[int, Record]:
        idxs = list(blocks)
        nonces = [os.urandom(NONCE_BYTES) for _ in idxs]
        sealed = await self.cipher.seal_many([
            (n, bytes(blocks[i]), block_aad(self.db_id, file, i, version))
            for n, i in zip(nonces, idxs)])
        out = {}
        for i, n, s in zip(idxs, nonces, sealed):
            payload = n + s
            out[i] = Record(version, self._checksum(file, i, version, payload), payload)
        return out

    async def decode_many(
        self, file: str, records: dict[int, Record], *, where: str = "store"
    ) -> dict[int, bytes]:
        idxs = list(records)
        payloads = [Codec.decode(self, file, i, records[i], where=where) for i in idxs]
        for i, p in zip(idxs, payloads):
            if len(p) < OVERHEAD:
                raise self._unauthentic(file, i, records[i], where)
        plains = await self.cipher.open_many([
            (p[:NONCE_BYTES], p[NONCE_BYTES:], block_aad(self.db_id, file, i, records[i][0]))
            for i, p in zip(idxs, payloads)])
        out = {}
        for i, plain in zip(idxs, plains):
            if plain is None:
                raise self._unauthentic(file, i, records[i], where)
            out[i] = plain
        return out

    @staticmethod
    def _unauthentic(file: str, index: int, record: Record, where: str) -> CorruptBlockError:
        return CorruptBlockError(
            f"block {index} of file {file!r} in {where} (written at version "
            f"{record[0]}) failed authentication: it was altered, moved from another "
            "block or version, or sealed under another key. Restore the store from a "
            "backup or export what is still readable.",
            file=file,
            index=index,
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def check_key_type(key: Any) -> None:
    if isinstance(key, str):
        if not key:
            raise InvalidOptionError("encryption_key must not be an empty passphrase")
        return
    if isinstance(key, (bytes, bytearray, memoryview)):
        if len(key) != KEY_BYTES:
            raise InvalidOptionError(
                f"a raw encryption_key must be exactly {KEY_BYTES} bytes, not {len(key)}; "
                "pass a str to use a passphrase instead")
        return
    raise InvalidOptionError(
        f"encryption_key must be {KEY_BYTES} raw bytes or a passphrase (str), not "
        f"{type(key).__name__}")


def new_scheme(key: EncryptionKey) -> dict[str, Any]:
    """The ``meta.extra["encryption"]`` of a key not yet checked in (``check`` None):
    what a store is created with, before its key-check value is written."""
    check_key_type(key)
    if isinstance(key, str):
        return {"alg": ALG, "kdf": KDF_PBKDF2, "iterations": PBKDF2_ITERATIONS,
                "salt": _b64(os.urandom(SALT_BYTES)), "check": None}
    return {"alg": ALG, "kdf": KDF_RAW, "check": None}


async def _key_bytes(scheme: dict[str, Any], key: EncryptionKey, where: str) -> bytes:
    if scheme.get("alg") != ALG or scheme.get("kdf") not in (KDF_PBKDF2, KDF_RAW):
        raise WrongKeyError(
            f"{where} is encrypted with {scheme.get('alg')}/{scheme.get('kdf')}, which "
            "this release of datasync does not know")
    if scheme["kdf"] == KDF_RAW:
        if isinstance(key, str):
            raise WrongKeyError(
                f"{where} is encrypted with a raw {KEY_BYTES}-byte key, not a passphrase")
        return bytes(key)
    if not isinstance(key, str):
        raise WrongKeyError(f"{where} is encrypted with a passphrase, not a raw key")
    return await derive_key(key, base64.b64decode(scheme["salt"]), int(scheme["iterations"]))


async def open_codec(
    meta: Meta, key: EncryptionKey | None, *, where: str = "store"
) -> tuple[Codec, Meta | None]:
    """The codec for a store just opened, checking ``key`` against its metadata.

    Returns ``(codec, meta_to_write)``: ``meta_to_write`` is the metadata with its
    key-check value when the store was just created and must be flushed once;
    otherwise None. Raises :class:`WrongKeyError` (encrypted store, missing or wrong
    key) or :class:`InvalidOptionError` (a key for an unencrypted store) before
    anything is written.
    """
    scheme = meta.extra.get("encryption")
    if key is None:
        if scheme:
            raise WrongKeyError(
                f"{where} is encrypted: open it with encryption_key= (the raw key or "
                "passphrase it was created with)")
        return Codec(), None
    check_key_type(key)
    if not scheme:
        raise InvalidOptionError(
            f"{where} is not encrypted, so encryption_key cannot open it: open it "
            "without a key, then call db.rekey(key) to encrypt it")
    raw = await _key_bytes(scheme, key, where)
    cipher = await make_cipher(raw)
    if scheme.get("check") is None:
        if meta.version != 0:
            raise WrongKeyError(f"{where} has data but no key-check value: it is damaged")
        return EncryptedCodec(cipher, meta.db_id, map_key(raw)), _with_scheme(
            meta, await _sealed_scheme(scheme, cipher, meta.db_id))
    sealed = base64.b64decode(scheme["check"])
    opened = await cipher.open_many(
        [(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], check_aad(meta.db_id))])
    if opened[0] != CHECK_PLAINTEXT:
        raise WrongKeyError(f"the encryption key does not open {where}; nothing was changed")
    return EncryptedCodec(cipher, meta.db_id, map_key(raw)), None


async def _sealed_scheme(scheme: dict[str, Any], cipher: Cipher, db_id: str) -> dict[str, Any]:
    nonce = os.urandom(NONCE_BYTES)
    [sealed] = await cipher.seal_many([(nonce, CHECK_PLAINTEXT, check_aad(db_id))])
    return {**scheme, "check": _b64(nonce + sealed)}


def _with_scheme(meta: Meta, scheme: dict[str, Any] | None) -> Meta:
    from dataclasses import replace

    extra = {k: v for k, v in meta.extra.items() if k != "encryption"}
    if scheme is not None:
        extra["encryption"] = scheme
    return replace(meta, extra=extra)


async def rekey_codec(
    meta: Meta, new_key: EncryptionKey | None
) -> tuple[Codec, dict[str, Any]]:
    """The codec and metadata ``extra`` of ``new_key`` (None: unencrypted), with a
    fresh salt and key-check value, for :meth:`BlockStore.rekey`."""
    if new_key is None:
        return Codec(), _with_scheme(meta, None).extra
    scheme = new_scheme(new_key)
    raw = await _key_bytes(scheme, new_key, "the new key")
    cipher = await make_cipher(raw)
    sealed = await _sealed_scheme(scheme, cipher, meta.db_id)
    return EncryptedCodec(cipher, meta.db_id, map_key(raw)), _with_scheme(meta, sealed).extra


MAP_LABEL = b"datasync-version-map-v1"


def map_key(raw: bytes) -> bytes:
    """The key of the version map, derived from the encryption key."""
    return hmac.new(raw, MAP_LABEL, hashlib.sha256).digest()


class KeyCodecs:
    """:class:`~datasync.format.Codecs` of a store opened with an encryption key.

    Example: ``await BlockStore.open(backend, codecs=codecs(key))``"""

    def __init__(self, key: EncryptionKey) -> None:
        check_key_type(key)
        self.key = key
        self._opened: dict[str, Codec] = {}  # key identity -> codec (one derivation)

    def new_store_extra(self) -> dict[str, Any]:
        return {"encryption": new_scheme(self.key)}

    async def codec_for(self, meta: Meta, *, where: str = "store") -> tuple[Codec, Meta | None]:
        identity = json.dumps(key_identity(meta), sort_keys=True)
        if identity in self._opened:  # an open started over: no second PBKDF2
            return self._opened[identity], None
        codec, to_write = await open_codec(meta, self.key, where=where)
        if to_write is None:
            self._opened[identity] = codec
        return codec, to_write


def codecs(key: EncryptionKey | None) -> Any:
    """The :class:`~datasync.format.Codecs` for ``key`` (None: an unencrypted store)."""
    return PlainCodecs() if key is None else KeyCodecs(key)
