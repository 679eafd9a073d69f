"""The stored format: metadata, block records and the flush a backend applies.

Example::

    from datasync.format import Meta, Codec, validate_block_size
    meta = Meta.new(block_size=validate_block_size(4096))
    rec = Codec().encode("main", 0, version=1, data=b"\\0" * 4096)
    assert Codec().decode("main", 0, rec) == b"\\0" * 4096

Every block record carries the version that wrote it and a CRC-32 checksum that
also binds its file name, index and version, so a record read back at the wrong
place or from the wrong version fails the check. The metadata carries the format
version; a store of another format is refused before anything is written.
"""
from __future__ import annotations

import json
import struct
import time
import uuid
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

from .errors import CorruptBlockError, FormatVersionError, InvalidOptionError, WrongKeyError

#: Version of the stored format written by this release. 2 (issue 11): an IndexedDB
#: segment may be stored *short* (records up to its last used slot, lengths in ``b``),
#: which a release reading only format 1 would take for a segment of another record
#: length and rebuild, dropping blocks; the version makes such a release refuse the
#: store (FormatVersionError) instead. The first flush of this release upgrades a
#: format-1 store (nothing else changed between them).
FORMAT_VERSION = 2
#: Stored formats this release reads.
READABLE_FORMATS = (1, 2)
#: The one persisted file of a datasync database: the SQLite main database file.
MAIN = "main"
MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 65536
DEFAULT_BLOCK_SIZE = 4096


def validate_block_size(block_size: int) -> int:
    """Return ``block_size`` if it is a power of two in 512..65536, else raise."""
    if (
        not isinstance(block_size, int)
        or isinstance(block_size, bool)
        or block_size < MIN_BLOCK_SIZE
        or block_size > MAX_BLOCK_SIZE
        or block_size & (block_size - 1)
    ):
        raise InvalidOptionError(
            f"block_size={block_size!r} is not allowed: use a power of two from "
            f"{MIN_BLOCK_SIZE} to {MAX_BLOCK_SIZE} (the default, {DEFAULT_BLOCK_SIZE}, "
            "matches SQLite's page size)"
        )
    return block_size


@dataclass(frozen=True)
class Meta:
    """Metadata of a store: what a backend writes atomically with every flush."""

    format_version: int
    block_size: int
    version: int
    file_size: int
    db_id: str
    created: float
    extra: dict[str, Any] = field(default_factory=dict)
    #: Leadership epoch of the writer (multi-tab): a flush from a lower epoch than
    #: the stored one comes from a deposed leader and is refused.
    epoch: int = 0

    @classmethod
    def new(cls, block_size: int = DEFAULT_BLOCK_SIZE) -> "Meta":
        return cls(FORMAT_VERSION, block_size, 0, 0, uuid.uuid4().hex, time.time())

    def next(self, file_size: int, epoch: int | None = None) -> "Meta":
        """The metadata of the flush that follows this version (in this release's
        format: the flush upgrades a store of an older readable one)."""
        return replace(self, format_version=FORMAT_VERSION, version=self.version + 1,
                       file_size=file_size, epoch=self.epoch if epoch is None else epoch)

    @property
    def block_count(self) -> int:
        return -(-self.file_size // self.block_size)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": self.format_version,
                "block_size": self.block_size,
                "version": self.version,
                "file_size": self.file_size,
                "db_id": self.db_id,
                "created": self.created,
                "extra": self.extra,
                "epoch": self.epoch,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, *, where: str = "store") -> "Meta":
        try:
            raw = json.loads(text)
            fmt = int(raw["format_version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptBlockError(
                f"the metadata of {where} cannot be read ({exc}); restore it from a backup",
                file="meta",
            ) from exc
        if fmt not in READABLE_FORMATS:
            newer = "a newer" if fmt > FORMAT_VERSION else "an older"
            raise FormatVersionError(
                f"{where} uses stored format {fmt}, written by {newer} datasync; this "
                f"release reads formats {', '.join(map(str, READABLE_FORMATS))}. Nothing "
                "was changed: open it with a datasync release that reads that format."
            )
        return cls(
            fmt,
            int(raw["block_size"]),
            int(raw["version"]),
            int(raw["file_size"]),
            str(raw["db_id"]),
            float(raw["created"]),
            dict(raw.get("extra") or {}),
            int(raw.get("epoch") or 0),
        )


class Record(NamedTuple):
    """One stored block: the version that wrote it, its checksum, its payload."""

    version: int
    checksum: int
    payload: bytes


@dataclass(frozen=True)
class Flush:
    """What one atomic backend transaction writes.

    ``base_version`` is the version the writer believes is stored; a backend whose
    stored version differs refuses the flush (another writer got there first).
    ``blocks`` are the new records; every stored record at index
    ``>= meta.block_count`` is deleted. With ``retain > 0`` the records it replaces
    or deletes go to the store's history (see datasync.backends.history). A block below ``meta.block_count`` that the
    file lost to a truncation (or gained by growing) without being written is sent
    explicitly as zeros, so a backend never has to reason about truncation.
    """

    base_version: int
    meta: Meta
    blocks: dict[int, Record]
    file: str = MAIN
    #: Point-in-time restore: keep what this flush supersedes (records and the base
    #: metadata) so the last ``retain`` versions stay restorable; 0 keeps nothing.
    retain: int = 0
    #: For a backend that cannot read what it supersedes inside its transaction
    #: (``HistoryFromStore``): the stored records this flush replaces or drops,
    #: and ``history_sent`` set (see datasync.backends.history).
    history: dict[int, Record] = field(default_factory=dict)
    history_sent: bool = False


_HEADER = struct.Struct("<qq")


def version_map_of(meta: Meta) -> int | None:
    """The keyed version map ``meta`` carries (``extra.encryption.map``; None: none
    written yet). See :mod:`datasync.encryption`."""
    text = (meta.extra.get("encryption") or {}).get("map")
    return None if text is None else int(text, 16)


def with_version_map(meta: Meta, value: int) -> Meta:
    """``meta`` carrying version map ``value``."""
    scheme = dict(meta.extra.get("encryption") or {})
    scheme["map"] = f"{value:032x}"
    return replace(meta, extra={**meta.extra, "encryption": scheme})


def key_identity(meta: Meta) -> dict[str, Any] | None:
    """What changes when a store is rekeyed (scheme, salt, key check), and only
    then: its encryption scheme without the version map every flush updates."""
    scheme = meta.extra.get("encryption")
    return None if not scheme else {k: v for k, v in scheme.items() if k != "map"}


class Codec:
    """Turns block bytes into stored records and back, checking integrity.

    The checksum covers the file name, block index, version and data, so a record
    that is moved, replayed from another version or altered fails to decode.

    A codec may also *authenticate versions* (``tracks_versions``: an encrypted
    store's keyed version map, see :mod:`datasync.encryption`): then the block store
    tracks every block's stored version and asks the codec to check them
    (:meth:`versions_authentic`, :meth:`moves_authentic`) and to stamp the metadata
    of each flush (:meth:`meta_after`). This plain codec authenticates nothing.
    """

    #: False if only :meth:`decode_many` works (WebCrypto is asynchronous): the
    #: block store then keeps every block resident instead of reading on demand.
    decodes_sync = True

    #: True for a codec that authenticates which version each block must be at.
    tracks_versions = False

    def versions_authentic(self, versions: dict[int, int], meta: Meta) -> bool:
        """Whether ``versions`` (index -> stored version, every block) are the ones
        ``meta`` authenticates."""
        return True

    def moves_authentic(self, old: Meta, new: Meta, changes: dict[int, int | None],
                        tracked: dict[int, int]) -> bool:
        """Whether going from the ``tracked`` versions of ``old`` by ``changes``
        (index -> new version, None: dropped) yields what ``new`` authenticates."""
        return True

    def meta_after(self, base: Meta, new: Meta, changes: dict[int, int | None],
                   tracked: dict[int, int], *, full: bool) -> Meta:
        """``new`` (the metadata of a flush over ``base`` writing ``changes``) as
        stored: stamped with what it authenticates. ``full``: every block written."""
        return new

    def encode(self, file: str, index: int, version: int, data: bytes) -> Record:
        return Record(version, self._checksum(file, index, version, data), bytes(data))

    def decode(self, file: str, index: int, record: Record, *, where: str = "store") -> bytes:
        try:
            version, checksum, payload = record
            valid = self._checksum(file, index, version, payload) == checksum
        except (TypeError, ValueError, struct.error):
            version, valid = "?", False  # wrong types: damaged beyond reading
        if not valid:
            raise CorruptBlockError(
                f"block {index} of file {file!r} in {where} (written at version "
                f"{version}) failed its checksum: the stored data is damaged. Restore "
                "the store from a backup or export what is still readable.",
                file=file,
                index=index,
            )
        return payload

    async def encode_many(
        self, file: str, version: int, blocks: dict[int, bytes]
    ) -> dict[int, Record]:
        """:meth:`encode` for a batch (one awaitable: the browser's WebCrypto is
        asynchronous). Never suspends for this plain codec."""
        return {i: self.encode(file, i, version, d) for i, d in blocks.items()}

    async def decode_many(
        self, file: str, records: dict[int, Record], *, where: str = "store"
    ) -> dict[int, bytes]:
        """:meth:`decode` for a batch; raises ``CorruptBlockError`` naming the
        first damaged block."""
        return {i: self.decode(file, i, r, where=where) for i, r in records.items()}

    @staticmethod
    def _checksum(file: str, index: int, version: int, data: bytes) -> int:
        head = zlib.crc32(file.encode(), zlib.crc32(_HEADER.pack(index, version)))
        return zlib.crc32(data, head)


class Codecs(Protocol):
    """What gives a store its codec: without a key, or with one (encryption).

    Example: ``await BlockStore.open(backend, codecs=encryption.codecs(key))``"""

    def new_store_extra(self) -> dict[str, Any]:
        """The ``extra`` of a store being created with this key (or none)."""

    async def codec_for(self, meta: Meta, *, where: str = "store") -> tuple["Codec", Meta | None]:
        """The codec for a store just opened with ``meta`` (``where`` names it in
        messages), and, for a store just created, the metadata to flush once (its
        key check); raises WrongKeyError / InvalidOptionError before anything is
        written."""


class PlainCodecs:
    """:class:`Codecs` of a store opened without a key."""

    def new_store_extra(self) -> dict[str, Any]:
        return {}

    async def codec_for(self, meta: Meta, *, where: str = "store") -> tuple["Codec", Meta | None]:
        if key_identity(meta) is not None:
            raise WrongKeyError(
                f"{where} is encrypted: open it with encryption_key= (the raw key or "
                "passphrase it was created with)")
        return Codec(), None
