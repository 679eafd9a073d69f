"""Change notices across processes: LISTEN to what every postgres backend's flush NOTIFYs.

Example::

    notices = ChangeNotices(dsn, lambda store, version: print(store, version))
    notices.start()            # a thread LISTENs on its own connection
    ...                        # every flush of any process: callback("notes", 8)
    notices.stop()

Each flush of a :class:`~.postgres.PostgresBackend` sends ``NOTIFY datasync_changes,
'<version> <store>'`` inside its transaction, so PostgreSQL delivers it once the flush
commits, to every listening session (PostgreSQL's LISTEN/NOTIFY). The callback runs
in the listening thread: hand the notice to your event loop
(``loop.call_soon_threadsafe``). When the connection drops (PostgreSQL restarted),
the thread connects again, backing off up to :data:`MAX_BACKOFF` seconds, and then
calls ``callback(None, None)``: notices sent meanwhile were lost, so a listener
should treat every store as changed.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .postgres import NOTICE_CHANNEL

_log = logging.getLogger("datasync.postgres")
#: Longest wait, in seconds, between two attempts to connect again.
MAX_BACKOFF = 2.0
#: Seconds a wait for notices lasts before the thread checks that it should go on.
_POLL = 0.5

#: ``callback(store, version)``; ``(None, None)``: notices may have been lost.
NoticeCallback = Callable[[str | None, int | None], None]


class ChangeNotices:
    """One listening thread (see the module docstring). ``dsn``: the PostgreSQL
    database the backends write; ``callback``: what runs for each notice."""

    def __init__(self, dsn: str, callback: NoticeCallback) -> None:
        self.dsn, self.callback = dsn, callback
        self.received = 0  # notices handed to the callback
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()  # set while LISTEN is in effect

    def start(self) -> None:
        """Start listening (returns at once; :attr:`listening` is set once it does)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="datasync-notices",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and wait for the thread (at most ``timeout`` s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        import psycopg

        backoff = 0.05
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTICE_CHANNEL}")
                    self.listening.set()
                    if not first:
                        self.reconnects += 1
                        self.callback(None, None)  # what was sent meanwhile is lost
                    first, backoff = False, 0.05
                    while not self._stop.is_set():
                        for notice in conn.notifies(timeout=_POLL):
                            self._deliver(notice.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                _log.warning("listening for change notices failed (%s); connecting again "
                             "in %.2f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self.listening.clear()

    def _deliver(self, payload: str) -> None:
        version, _, store = payload.partition(" ")
        if not version.isdigit() or not store:
            return  # not one of ours
        self.received += 1
        try:
            self.callback(store, int(version))
        except Exception:  # noqa: BLE001 - a callback's bug must not stop the notices
            _log.exception("a change notice callback failed")
