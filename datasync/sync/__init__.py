"""Embedded replicas: a local database kept in sync with a primary on a server.

Example::

    db = await datasync.open("notes.dsdb", sync_url="http://127.0.0.1:8765/",
                             auth_token=token, sync_interval=5.0)
    await db.execute("INSERT INTO notes(body) VALUES (?)", ("hi",))  # on the primary
    rows = await db.query("SELECT * FROM notes")                      # local
    print(db.sync_status())

The layer's contract is :mod:`.protocol` (what travels); :mod:`.transport` is how it
travels (httpx natively, ``fetch()`` in a browser). The server is
:mod:`datasync.server` (native only).
"""
