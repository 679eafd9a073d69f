"""What the multi-tab protocol needs from the browser, as two small interfaces,
with in-process fakes for native tests.

Example (native, many simulated tabs in one process)::

    locks, hub = FakeLocks(), FakeBroadcast(max_delay=0.005)
    tab = await SharedDatabase.open("app", backend="memory",
                                    locks=locks.for_tab("t1"), channel=hub.channel("t1"))

* :class:`LockService` is Web Locks: ``acquire(name)`` waits until the lock is
  granted and returns a :class:`Lease`; the lease is *lost* when another tab steals
  it or when the holder dies. The browser adapter is in :mod:`datasync.browser.tabs`.
* :class:`Channel` is BroadcastChannel: ``post(message)`` reaches every other tab
  (not the sender), asynchronously, in no guaranteed order across senders.
"""
from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

Message = dict[str, Any]


class Lease:
    """A held lock. ``lost`` is set once it is released, stolen or its tab died."""

    def __init__(self, name: str, owner: str) -> None:
        self.name = name
        self.owner = owner
        self.lost = asyncio.Event()


class LockService(Protocol):
    async def acquire(self, name: str, *, steal: bool = False) -> Lease:
        """Wait until ``name`` is granted (``steal``: take it from its holder now)."""

    def release(self, lease: Lease) -> None:
        """Give the lock back (the next waiter gets it)."""

    async def count(self, name: str) -> int:
        """How many tabs hold or wait for ``name`` now (Web Locks: ``query()``)."""


class Channel(Protocol):
    def post(self, message: Message) -> None:
        """Send ``message`` to every other tab."""

    def subscribe(self, callback: Callable[[Message], None]) -> Callable[[], None]:
        """Call ``callback(message)`` for each message; returns an unsubscriber."""

    def close(self) -> None:
        """Stop sending and receiving."""


class Outbox(Protocol):
    async def put(self, entry: Message) -> None:
        """Store ``entry`` (it has an ``id``) durably before returning."""

    async def entries(self) -> list[Message]:
        """Every stored entry, oldest first."""

    async def delete(self, entry_id: str) -> None:
        """Remove an entry (no error if it is gone)."""

    def close(self) -> None:
        """Release the outbox's resources (the entries stay)."""


class MemoryOutbox:
    """An :class:`Outbox` kept in this process (native use and tests): every
    ``MemoryOutbox`` of one name shares the entries, like the tabs of a browser."""

    _shared: dict[str, dict[str, Message]] = {}

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def _entries(self) -> dict[str, Message]:
        return self._shared.setdefault(self.name, {})

    async def put(self, entry: Message) -> None:
        await asyncio.sleep(0)  # I/O suspends in a real outbox
        self._entries[str(entry["id"])] = dict(entry)

    async def entries(self) -> list[Message]:
        await asyncio.sleep(0)
        return sorted((dict(e) for e in self._entries.values()), key=lambda e: e.get("at", 0))

    async def delete(self, entry_id: str) -> None:
        await asyncio.sleep(0)
        self._entries.pop(entry_id, None)

    def close(self) -> None:
        pass

    @classmethod
    def drop(cls, name: str) -> None:
        """Forget every entry of ``name`` (tests)."""
        cls._shared.pop(name, None)


# -- fakes -------------------------------------------------------------------------
class FakeLocks:
    """Web Locks for simulated tabs of one browser (one asyncio loop)."""

    def __init__(self) -> None:
        self._held: dict[str, Lease] = {}
        self._waiting: dict[str, deque[tuple[asyncio.Future[Lease], Lease]]] = {}

    def for_tab(self, owner: str) -> "_TabLocks":
        return _TabLocks(self, owner)

    def holder(self, name: str) -> str | None:
        lease = self._held.get(name)
        return None if lease is None else lease.owner

    def count(self, name: str) -> int:
        """Tabs holding or waiting for ``name``."""
        waiting = [f for f, _ in self._waiting.get(name, ()) if not f.done()]
        return (name in self._held) + len(waiting)

    async def _acquire(self, name: str, owner: str, steal: bool) -> Lease:
        lease = Lease(name, owner)
        if steal:
            old = self._held.pop(name, None)
            if old is not None:
                old.lost.set()
        if name not in self._held:
            self._held[name] = lease
            return lease
        fut: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(name, deque()).append((fut, lease))
        try:
            return await fut
        except asyncio.CancelledError:
            self._forget(name, fut, lease)
            raise

    def _forget(self, name: str, fut: asyncio.Future[Lease], lease: Lease) -> None:
        queue = self._waiting.get(name, deque())
        if (fut, lease) in queue:
            queue.remove((fut, lease))
        if self._held.get(name) is lease:  # granted while being cancelled
            self.release(lease)

    def release(self, lease: Lease) -> None:
        lease.lost.set()
        if self._held.get(lease.name) is not lease:
            return
        del self._held[lease.name]
        queue = self._waiting.get(lease.name, deque())
        while queue:
            fut, nxt = queue.popleft()
            if not fut.done():
                self._held[lease.name] = nxt
                fut.set_result(nxt)
                return

    def kill(self, owner: str) -> None:
        """The tab died: its locks are released and its waits dropped."""
        for name, lease in list(self._held.items()):
            if lease.owner == owner:
                self.release(lease)
        for queue in self._waiting.values():
            for fut, lease in list(queue):
                if lease.owner == owner:
                    queue.remove((fut, lease))
                    fut.cancel()


class _TabLocks:
    def __init__(self, hub: FakeLocks, owner: str) -> None:
        self.hub, self.owner = hub, owner

    async def acquire(self, name: str, *, steal: bool = False) -> Lease:
        return await self.hub._acquire(name, self.owner, steal)

    def release(self, lease: Lease) -> None:
        self.hub.release(lease)

    async def count(self, name: str) -> int:
        return self.hub.count(name)


class FakeBroadcast:
    """BroadcastChannel for simulated tabs: each message is delivered to every other
    open channel after a random delay up to ``max_delay`` seconds (so messages from
    different senders, and even from one sender, may arrive out of order)."""

    def __init__(self, max_delay: float = 0.0, seed: int | None = None) -> None:
        self.max_delay = max_delay
        self.rng = random.Random(seed)
        self._channels: dict[str, _FakeChannel] = {}
        self.sent = 0

    def channel(self, tab: str) -> "_FakeChannel":
        ch = _FakeChannel(self, tab)
        self._channels[tab] = ch
        return ch

    def kill(self, tab: str) -> None:
        ch = self._channels.pop(tab, None)
        if ch is not None:
            ch.closed = True

    def _deliver(self, sender: str, message: Message) -> None:
        self.sent += 1
        loop = asyncio.get_running_loop()
        for tab, ch in list(self._channels.items()):
            if tab == sender:
                continue
            delay = self.rng.uniform(0, self.max_delay) if self.max_delay else 0
            loop.call_later(delay, ch._receive, dict(message))


class _FakeChannel:
    def __init__(self, hub: FakeBroadcast, tab: str) -> None:
        self.hub, self.tab = hub, tab
        self.closed = False
        self._callbacks: list[Callable[[Message], None]] = []

    def post(self, message: Message) -> None:
        if not self.closed:
            self.hub._deliver(self.tab, message)

    def subscribe(self, callback: Callable[[Message], None]) -> Callable[[], None]:
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def _receive(self, message: Message) -> None:
        if self.closed:
            return
        for cb in list(self._callbacks):
            cb(message)

    def close(self) -> None:
        self.closed = True
        self.hub._channels.pop(self.tab, None)
