"""The multi-tab harness: simulated tabs of one browser, natively. Tabs talk through
in-process fakes of Web Locks and BroadcastChannel (with message delays), share one
memory store (optionally with I/O that suspends, as IndexedDB's does), and can be
killed at any moment."""
from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import strategies as st

import datasync
from datasync.backends import MemoryBackend
from datasync.backends.memory import _STORES
from datasync.tabs import FakeBroadcast, FakeLocks, MemoryOutbox, SharedDatabase
from helpers import AsyncWithHistory

_names = itertools.count()


def SuspendingMemoryBackend(name: str, *, instance: str, rng: random.Random) -> AsyncWithHistory:  # noqa: N802
    """A memory store whose I/O suspends like IndexedDB's: a flush's check and
    write are atomic (one transaction) but happen a random moment after the call,
    and the call returns a random moment after that."""
    async def pause() -> None:
        await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002]))

    return AsyncWithHistory(MemoryBackend(name, instance=instance), pause)


def crash(tab: SharedDatabase) -> None:
    """Simulate the tab dying: stop at once and write nothing more (the lock service
    and channel hub drop the tab too, in Browser.kill)."""
    from datasync.database import opening

    tab._closed = True
    tab._session.close()
    for task in [*tab._tasks, *tab._background]:
        task.cancel()
    tab._fail_pending()  # the page's own awaits end with it
    tab._unsubscribe()
    tab._outbox.close()
    db = tab.db
    db._closed = True
    db._remove_listener()
    for conn in [*(c for c, _, _ in db._handed_out), db._conn]:
        conn.close()
    opening._shared.pop(db._shared.key, None)
    datasync.vfs.detach(db._shared.key)


class Browser:
    """Simulated tabs of one browser sharing one database (``suspending``: with
    I/O that suspends, as IndexedDB's does)."""

    def __init__(self, max_delay: float = 0.002, seed: int = 0, suspending: bool = False) -> None:
        self.name = f"tabs-{next(_names)}"
        self.suspending = suspending
        self.rng = random.Random(seed)
        self.locks = FakeLocks()
        self.hub = FakeBroadcast(max_delay=max_delay, seed=seed)
        self.tabs: dict[str, SharedDatabase] = {}
        self.dead: list[SharedDatabase] = []

    async def open(self, tab: str, *, backend: Any = None, **options: Any) -> SharedDatabase:
        """Open tab ``tab``; ``options`` go to :func:`datasync.open` (a key, cdc...)."""
        if backend is None:
            backend = (SuspendingMemoryBackend(self.name, instance=tab, rng=self.rng)
                       if self.suspending else MemoryBackend(self.name, instance=tab))
        db = await SharedDatabase.open(
            self.name, backend=backend, tab_id=tab, locks=self.locks.for_tab(tab),
            channel=self.hub.channel(tab), write_timeout=20, **options)
        self.tabs[tab] = db
        return db

    async def leader_and_follower(self) -> tuple[SharedDatabase, SharedDatabase]:
        """Tab "a", once it leads, and tab "f" following it."""
        a = await self.open("a")
        await a.wait_for_leadership()
        return a, await self.open("f")

    def kill(self, tab: str) -> None:
        db = self.tabs.pop(tab)
        crash(db)
        self.locks.kill(tab)
        self.hub.kill(tab)
        self.dead.append(db)

    async def leader(self) -> SharedDatabase:
        for _ in range(2000):
            leaders = [t for t in self.tabs.values() if t.is_leader]
            if leaders:
                return leaders[0]
            await asyncio.sleep(0.002)
        raise AssertionError("no leader was elected")

    async def close(self) -> None:
        for db in list(self.tabs.values()):
            await db.close()
        _STORES.pop(self.name, None)
        MemoryOutbox.drop(self.name)

    def queued(self) -> list[dict[str, Any]]:
        return list(MemoryOutbox._shared.get(self.name, {}).values())

    async def drained(self) -> None:
        for _ in range(5000):
            if not self.queued():
                return
            await asyncio.sleep(0.002)
        raise AssertionError(f"the outbox was never drained: {self.queued()}")

    def all_tabs(self) -> list[SharedDatabase]:
        return [*self.tabs.values(), *self.dead]

    def stored_bytes(self) -> bytes:
        """Every block's payload as the store holds it (ciphertext when encrypted)."""
        return b"".join(r.payload for r in _STORES[self.name].blocks.values())


async def until(check: Any, what: str) -> None:
    """Wait until ``await check()`` is true (about 5 s at most)."""
    for _ in range(2500):
        if await check():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"never: {what}")


async def count_is(tab: SharedDatabase, n: int, table: str = "t") -> bool:
    """Whether ``tab`` reads ``n`` rows in ``table`` (False while it lacks the key)."""
    try:
        return await tab.query(f"SELECT count(*) AS n FROM {table}") == [{"n": n}]
    except datasync.WrongKeyError:
        return False


def tab_ops(kinds: list[str], tabs: int, max_size: int) -> Any:
    """Scripts of (kind, tab number) steps, plus ("sleep", milliseconds)."""
    steps = [st.tuples(st.just(kind), st.integers(0, tabs - 1)) for kind in kinds]
    return st.lists(st.one_of(*steps, st.tuples(st.just("sleep"), st.integers(0, 10))),
                    min_size=5, max_size=max_size)


async def open_writing_tabs(b: Browser, n: int, **options: Any) -> None:
    """Tabs "t0" (once it leads, with a table ``w(k TEXT)``) to "t{n-1}"."""
    first = await b.open("t0", **options)
    await first.wait_for_leadership()
    await first.execute("CREATE TABLE w(k TEXT)")
    for i in range(1, n):
        await b.open(f"t{i}", **options)


async def play(b: Browser, script: list[tuple[str, int]], rng: random.Random,
               start: dict[str, Callable[[SharedDatabase], Awaitable[None]]],
               restart: Callable[[str], Awaitable[Any]] | None = None) -> list[asyncio.Task[None]]:
    """Run a :func:`tab_ops` script on tabs "t0"...: a kind in ``start`` starts
    ``start[kind](tab)`` as a task on a live tab; "kill" kills a live tab unless it is
    the last; "restart" reopens a dead one (``restart(tab_id)``, else ``b.open``);
    "steal" takes the lead; "sleep" waits. After each step, three times in ten, the
    loop runs other tasks. Returns the tasks started."""
    tasks: list[asyncio.Task[None]] = []
    for op, arg in script:
        tab_id = f"t{arg}"
        if op in start and tab_id in b.tabs:
            tasks.append(asyncio.ensure_future(start[op](b.tabs[tab_id])))
        elif op == "kill" and tab_id in b.tabs and len(b.tabs) > 1:
            b.kill(tab_id)
        elif op == "restart" and tab_id not in b.tabs:
            await (restart or b.open)(tab_id)
        elif op == "steal" and tab_id in b.tabs:
            await asyncio.wait_for(b.tabs[tab_id].request_leadership(), 10)
        elif op == "sleep":
            await asyncio.sleep(arg / 1000)
        if rng.random() < 0.3:
            await asyncio.sleep(0)
    return tasks


def acked_writer(acked: list[str], serial: Any) -> Any:
    """``write(tab)``: one INSERT into ``w``, its key added to ``acked`` once the
    call resolves (a write whose tab died is not acknowledged)."""
    async def write(tab: SharedDatabase) -> None:
        key = f"{tab.tab_id}-{next(serial)}"
        try:
            await tab.execute("INSERT INTO w VALUES (?)", (key,))
            acked.append(key)
        except datasync.DatasyncError:
            pass

    return write

