"""What differs between native Python and Pyodide, chosen in this one place.

Example::

    from datasync import runtime
    kind = runtime.default_backend()      # "sqlitefile" natively, "indexeddb" in Pyodide
    runtime.install()                      # done by `import datasync`

Every other module asks here (or is handed what it needs) instead of testing the
platform itself; only :mod:`datasync.platform` (the flag) and the C library loader
(:mod:`datasync.vfs.capi`) look at it too.
"""
from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from . import vfs
from .platform import IN_PYODIDE

__all__ = ["IN_PYODIDE", "SINGLE_THREAD", "SqliteFileOpener", "default_backend", "derive_key", "install",
           "lifecycle_flush", "make_cipher"]

#: ``PRAGMA application_id`` of a sqlitefile store, as the SQLite header holds it.
_STORE_HEADER_ID = (0x4453796E).to_bytes(4, "big")


#: True where no other thread can use a connection (Pyodide runs one thread).
SINGLE_THREAD = IN_PYODIDE


def default_backend() -> str:
    """The backend a database name means when none is given."""
    return "indexeddb" if IN_PYODIDE else "sqlitefile"


class SqliteFileOpener:
    """:class:`~datasync.vfs.StoreOpener` natively: a name is a store file's path.

    Example: ``vfs.set_store_opener(SqliteFileOpener())`` (what :func:`install` does)
    """

    def recognizes(self, name: str) -> bool:
        """True if ``name`` is an existing store file (its SQLite header says so)."""
        try:
            with open(name, "rb") as fh:
                header = fh.read(72)
        except OSError:
            return False
        return header[:16] == b"SQLite format 3\0" and header[68:72] == _STORE_HEADER_ID

    def open(self, name: str, params: dict[str, str]) -> Any:
        """Open (or create) the store at path ``name``, synchronously, with the URI
        parameters ``block_size`` and ``cache_bytes``."""
        from .backends.sqlitefile import SqliteFileBackend
        from .blockstore import DEFAULT_CACHE_BYTES, BlockStore
        from .errors import InvalidOptionError
        from .format import DEFAULT_BLOCK_SIZE

        try:
            block_size = int(params.get("block_size", DEFAULT_BLOCK_SIZE))
            cache_bytes = int(params.get("cache_bytes", DEFAULT_CACHE_BYTES))
        except ValueError as exc:
            raise InvalidOptionError(f"bad URI parameter for {name!r}: {exc}") from exc
        return BlockStore.open_sync(SqliteFileBackend(os.fspath(name)), block_size=block_size,
                                    cache_bytes=cache_bytes)


async def make_cipher(key: bytes) -> Any:
    """AES-256-GCM under ``key``: ``cryptography`` natively, WebCrypto in Pyodide."""
    if IN_PYODIDE:
        from .browser.webcrypto import WebCipher

        return await WebCipher.create(key)
    from .cipher import NativeCipher

    return NativeCipher(key)


async def derive_key(passphrase: str, salt: bytes, iterations: int) -> bytes:
    """PBKDF2-HMAC-SHA256 of the UTF-8 passphrase -> 32 bytes."""
    if IN_PYODIDE:
        from .browser.webcrypto import derive_key as web_derive_key

        return await web_derive_key(passphrase, salt, iterations)
    import hashlib

    return hashlib.pbkdf2_hmac("sha256", passphrase.encode("utf-8"), salt, iterations, 32)


def make_transport(base_url: str, token: str | None) -> Any:
    """A replica's HTTP client (:class:`datasync.sync.transport.Transport`): httpx
    natively, ``fetch()`` in Pyodide."""
    if IN_PYODIDE:
        from .browser.fetch import FetchTransport

        return FetchTransport(base_url, token)
    from .sync.transport import HttpxTransport

    return HttpxTransport(base_url, token)


def make_replica_outboxes(name: str, store_key: str, backend: str) -> tuple[Any, Any]:
    """A replica's durable outbox and conflict log: IndexedDB in Pyodide, a SQLite
    file beside the store natively (kept in memory for a ``memory`` store)."""
    if IN_PYODIDE:
        from .browser.outbox import IndexedDBOutbox

        return IndexedDBOutbox(f"replica:{name}"), IndexedDBOutbox(f"replica-conflicts:{name}")
    if backend == "memory":
        from .tabs.services import MemoryOutbox

        return MemoryOutbox(f"replica:{store_key}"), MemoryOutbox(f"replica-conflicts:{store_key}")
    from .sync.outbox_file import FileOutbox

    return FileOutbox(store_key + ".outbox"), FileOutbox(store_key + ".outbox", "conflicts")


def lifecycle_flush(flush: Callable[[], Awaitable[Any]]) -> Callable[[], None]:
    """Start ``flush()`` when the page is hidden or unloaded (Pyodide with a
    document); returns a remover. Natively: nothing to do."""
    if not IN_PYODIDE:
        return lambda: None
    from .browser.lifecycle import install_lifecycle_flush

    return install_lifecycle_flush(flush)


def install() -> None:
    """Wire the runtime's pieces: natively the VFS opens stores by path on demand
    (plain ``sqlite3.connect(vfs.uri(path))``); in Pyodide it serves only stores
    opened with ``datasync.open``."""
    vfs.set_store_opener(None if IN_PYODIDE else SqliteFileOpener())
