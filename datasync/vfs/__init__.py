"""The datasync SQLite VFS, registered through ctypes on the stdlib's SQLite.

Example::

    import sqlite3, datasync.vfs as vfs
    vfs.register()
    conn = sqlite3.connect(vfs.uri("/tmp/app.dsdb"), uri=True)   # natively: opens the store

See :mod:`datasync.vfs.shim` for the callbacks and :mod:`datasync.vfs.files` for the
file objects and the lock state machine.
"""
from .shim import (
    VFS_NAME,
    Connection,
    attach,
    attached,
    close_idle,
    detach,
    open_files,
    register,
    take_last_error,
    uri,
)

__all__ = ["VFS_NAME", "attach", "attached", "close_idle", "detach", "open_files", "register", "take_last_error",
           "uri", "Connection"]
