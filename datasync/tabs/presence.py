"""How many tabs have a shared database open: a figure for ``db.metrics()``.

Example::

    tab.tab_count()          # None: the first look has not ended yet
    await asyncio.sleep(0)   # ...a look runs in the background...
    tab.tab_count()          # 3: the tabs holding or waiting for the leader lock

Every tab of a database holds its leader lock or waits for it (:mod:`.election`),
so the lock service's count of holders and waiters (``navigator.locks.query()`` in
the browser: :class:`datasync.browser.tabs.WebLocks`) is the number of tabs that
have it open. ``metrics()`` is synchronous and the query is not, so each call
answers the last look and starts the next. A mixin of
:class:`~datasync.tabs.SharedDatabase` over :mod:`.core`.
"""
from __future__ import annotations

import asyncio
from typing import Any


class TabPresence:
    """tab_count (see the module docstring)."""

    _tabs_seen: int | None = None
    _counting: "asyncio.Future[None] | None" = None
    _closed: bool
    _locks: Any
    _lock_name: str

    def tab_count(self) -> int | None:
        """How many tabs have this database open, as of the last look (every tab holds
        or waits for its leader lock); each call looks again in the background, at
        most one look at a time. None until a look has ended, or if the lock
        service cannot count. Example: ``db.tab_count()  # 3``"""
        if self._counting is None and not self._closed:
            self._counting = asyncio.ensure_future(self._count_tabs())
        return self._tabs_seen

    async def _count_tabs(self) -> None:
        try:
            count = getattr(self._locks, "count", None)
            if count is not None:
                self._tabs_seen = int(await count(self._lock_name))
        except Exception:  # noqa: BLE001 (a figure for metrics: keep the last one)
            pass
        finally:
            self._counting = None
