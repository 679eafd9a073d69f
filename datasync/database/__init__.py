"""The async database API.

Example::

    import datasync
    db = await datasync.open("app.dsdb")                 # created if missing
    await db.execute("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")
    await db.execute("INSERT INTO notes(body) VALUES (?)", ("hello",))
    rows = await db.query("SELECT * FROM notes")         # [{'id': 1, 'body': 'hello'}]
    async with db.transaction():
        await db.execute("UPDATE notes SET body = upper(body)")
    version = await db.sync()                            # durable up to here
    await db.close()

Modules: :mod:`.opening` (:func:`open`, the registry of open stores),
:mod:`.core` (connection, turn, closing: the internal API the others use),
:mod:`.statements`, :mod:`.durability` (the one flusher; strict waits),
:mod:`.capture` (change data capture), :mod:`.copies` (export, import, backup,
restore, rekey).
"""
from __future__ import annotations

from ..app import AppCalls
from .alone import GroupOfOne
from .capture import Capture
from .copies import Copies
from .core import DatabaseCore, Result
from .durability import Durability
from .expiry import StatementExpiry
from .opening import open
from .statements import Statements

__all__ = ["Database", "Result", "open"]


class Database(AppCalls, GroupOfOne, Copies, Capture, Durability, Statements, StatementExpiry,
               DatabaseCore):
    """An open datasync database. Create it with :func:`datasync.open`.

    It is the same whatever the store and wherever it runs; the multi-tab layer
    (:class:`datasync.tabs.SharedDatabase`) is built on it."""
