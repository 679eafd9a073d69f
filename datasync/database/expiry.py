"""Cached statements after another writer's image: prepared again when the schema moved.

Example::

    db.set_authorizer(session.authorize)   # the tabs layer's authorizer, remembered
    async with db.turn():
        await db.store.catch_up()          # another tab's commits, a schema change among them
        db.after_new_image()               # the next run of each statement prepares it again

SQLite notices a schema change when a statement opens its read transaction
(``OP_Transaction`` compares the schema cookie, header offset 40) and prepares the
statement again. A statement that opens none, ``EXPLAIN`` and ``EXPLAIN QUERY PLAN``,
never compares it: cached by the ``sqlite3`` module's statement cache, it went on
describing the schema this connection had before a follower tab caught up (a plan
without the index another tab created). ``sqlite3_set_authorizer`` expires every
prepared statement of the connection when it sets one (SQLite's ``main.c``; the sync
server relies on the same rule), so this sets the connection's authorizer again,
after ``PRAGMA writable_schema = RESET`` dropped the schema the connection had parsed
(else the statement would be prepared again on it).

A mixin of :class:`~datasync.Database` over the internal API of :mod:`.core`.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

#: Offset and size of the schema cookie in a SQLite database header.
_COOKIE = slice(40, 44)


def _allow(*_args: Any) -> int:
    return sqlite3.SQLITE_OK


class StatementExpiry:
    """set_authorizer, after_new_image (see the module docstring)."""

    _authorizer: Callable[..., int] | None = None
    _cookie: bytes | None = None
    _image_seq = -1

    def _check_image(self) -> None:
        """At the start of a turn: after any commit since the last turn (ours, or
        a ``db.connect()`` connection's, which may have changed the schema under
        this connection), see whether the schema cookie moved. One integer
        comparison while nothing committed."""
        seq = self._store.commit_seq
        if seq != self._image_seq:
            self._image_seq = seq
            self.after_new_image()

    def set_authorizer(self, callback: Callable[..., int] | None) -> None:
        """Set SQLite's authorizer on the database's connection and remember it, so
        that expiring the cached statements keeps it (the tabs layer classifies
        statements with one). Example: ``db.set_authorizer(session.authorize)``"""
        self._authorizer = callback
        self._conn.set_authorizer(callback)

    def after_new_image(self) -> None:
        """Inside :meth:`turn`, after the store took another writer's image (a
        follower tab's catch-up, a replica's pull): if the schema cookie moved,
        every cached statement is prepared again at its next run."""
        cookie = self._schema_cookie()
        if cookie is None or cookie != self._cookie:  # (None: cannot tell)
            self._cookie = cookie
            # The schema this connection parsed goes too: a statement prepared
            # again before any read transaction would still be built on it.
            sqlite3.Connection.execute(self._conn, "PRAGMA writable_schema = RESET")
            self.expire_statements()

    def expire_statements(self) -> None:
        """Make SQLite prepare every statement of the connection again at its next
        run (statements running now finish as prepared).
        Example: ``db.expire_statements()``"""
        if self._authorizer is not None:
            self._conn.set_authorizer(self._authorizer)
        else:  # setting None expires nothing: set one that allows all, then none
            self._conn.set_authorizer(_allow)
            self._conn.set_authorizer(None)

    def _schema_cookie(self) -> bytes | None:
        """The schema cookie if page 1 is in memory, else None. Never reads the
        backend: on a shared one (PostgreSQL) a block read here could belong to a
        later image (VersionConflictError) before the turn's catch-up runs."""
        store = self._store
        if store.size < _COOKIE.stop:
            return b""
        block = store.cached_block(0)
        return None if block is None else bytes(block[_COOKIE])
