"""Encryption across tabs: one encrypted store shared by every tab, and rekeys from
any tab that every tab follows (or says it cannot), whatever the timing."""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

import datasync
from datasync.tabs import SharedDatabase
from tabs.harness import Browser, count_is, until


@pytest.mark.parametrize("suspending", [False, True])
async def test_tabs_share_an_encrypted_store_and_followers_decode_what_they_catch_up(suspending: bool) -> None:
    b = Browser(max_delay=0, suspending=suspending)
    a = await b.open("a", encryption_key="tab secret")
    await a.wait_for_leadership()
    f = await b.open("f", encryption_key="tab secret")
    await f.execute("CREATE TABLE t(x)")
    await f.execute("INSERT INTO t VALUES ('sealed marker')")  # forwarded
    await a.execute("INSERT INTO t VALUES ('from the leader')")
    for _ in range(500):
        if len(await f.query("SELECT x FROM t")) == 2:
            break
        await asyncio.sleep(0.002)
    assert await f.query("SELECT x FROM t") == [{"x": "sealed marker"}, {"x": "from the leader"}]
    raw = b.stored_bytes()
    assert b"sealed marker" not in raw
    with pytest.raises(datasync.WrongKeyError):
        await b.open("g", encryption_key="not the key")
    await b.close()


async def _keyed_pair(b: Browser) -> tuple[SharedDatabase, SharedDatabase]:
    """Tab "a" leading and tab "f" following, on a store under "old secret" that
    has a table ``t(x)``."""
    a = await b.open("a", encryption_key="old secret")
    await a.wait_for_leadership()
    f = await b.open("f", encryption_key="old secret")
    await f.execute("CREATE TABLE t(x)")
    return a, f


@pytest.mark.parametrize("suspending", [False, True])
async def test_a_rekey_in_any_tab_reaches_every_tab_and_the_old_key_stops_opening(suspending: bool) -> None:
    b = Browser(max_delay=0.001, suspending=suspending)
    a = await b.open("a", encryption_key="old secret")
    await a.wait_for_leadership()
    f = await b.open("f", encryption_key="old secret")
    g = await b.open("g", encryption_key="old secret")
    await g.execute("CREATE TABLE t(x)")
    await g.execute("INSERT INTO t VALUES ('before')")
    new_key = bytes(range(100, 132))
    version = await f.rekey(new_key)  # a follower asks: it takes the lead to do it
    assert f.is_leader and not a.is_leader
    await g.execute("INSERT INTO t VALUES ('after marker')")  # forwarded to f
    for tab in (a, f, g):
        await until(lambda: _rows_are(tab, ["before", "after marker"]), "every tab reads")
        assert tab._store.version > version
    raw = b.stored_bytes()
    assert b"after marker" not in raw and b"before" not in raw
    with pytest.raises(datasync.WrongKeyError):
        await b.open("h", encryption_key="old secret")
    h = await b.open("h", encryption_key=new_key)
    assert await _rows_are(h, ["before", "after marker"])
    await a.rekey(None)  # decrypt, from the tab that led first
    await h.execute("INSERT INTO t VALUES ('plain marker')")
    for tab in (a, f, g, h):
        await until(lambda: _rows_are(tab, ["before", "after marker", "plain marker"]),
                     "every tab reads the decrypted store")
    raw = b.stored_bytes()
    assert b"plain marker" in raw
    await b.close()


async def _rows_are(tab: SharedDatabase, expected: list[str]) -> bool:
    return [r["x"] for r in await tab.query("SELECT x FROM t ORDER BY rowid")] == expected


async def test_a_tab_that_missed_a_rekey_says_so_and_never_leads(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datasync.tabs import wire

    monkeypatch.setattr(wire, "KEY_WAIT", 0.05)

    b = Browser(max_delay=0)
    a, f = await _keyed_pair(b)
    heard = f._on_message
    f._unsubscribe()  # f is asleep when the key goes round...
    f._unsubscribe = b.hub.channel("f-awake").subscribe(
        lambda m: None if m.get("t") == "rekeyed" else heard(m))  # ...and hears the rest
    await a.rekey("new secret")
    await a.execute("INSERT INTO t VALUES (1)")

    async def refused() -> bool:
        try:
            await f.query("SELECT count(*) AS n FROM t")
        except datasync.WrongKeyError as exc:
            return "open it again with the new key" in str(exc)
        return False

    await until(refused, "the tab without the key says so")
    with pytest.raises(datasync.WrongKeyError):
        await f.execute("INSERT INTO t VALUES (2)")
    b.kill("a")  # the only tab with the key dies: f must not take the lead
    await asyncio.sleep(0.3)
    assert not f.is_leader
    g = await b.open("g", encryption_key="new secret")
    await g.wait_for_leadership()  # the lock was not kept by f
    assert await g.query("SELECT count(*) AS n FROM t") == [{"n": 1}]
    await b.close()


async def test_a_tab_that_missed_the_key_asks_the_leader_for_it_and_follows() -> None:
    b = Browser(max_delay=0)
    a, f = await _keyed_pair(b)
    heard, dropped = f._on_message, []

    def drop_the_first_key(m: Any) -> None:
        if m.get("t") == "rekeyed" and not dropped:
            dropped.append(m)
            return
        heard(m)

    f._unsubscribe()
    f._unsubscribe = b.hub.channel("f-awake").subscribe(drop_the_first_key)
    await a.rekey(bytes(32))
    await a.execute("INSERT INTO t VALUES (1)")
    await until(lambda: count_is(f, 1), "f reads after asking for the key")
    assert dropped and f._key_error is None
    await b.close()


async def test_a_leader_deposed_by_a_rekey_while_busy_follows_and_can_lead_again() -> None:
    b = Browser(max_delay=0.001, suspending=True)
    a, f = await _keyed_pair(b)
    await f.execute("INSERT INTO t VALUES (1)")

    async def busy() -> None:  # a long statement in the leader tab meanwhile
        async with a.db._lock:
            await asyncio.sleep(0.3)

    busy_task = asyncio.ensure_future(busy())
    await asyncio.sleep(0)
    await f.rekey("new secret")
    await busy_task
    await until(lambda: count_is(a, 1), "the deposed leader reads under the new key")
    assert not [t for t in a._tasks if t.done()], "a tab task died"
    await f.close()
    b.tabs.pop("f")
    await a.wait_for_leadership()
    await a.execute("INSERT INTO t VALUES (2)")
    assert await count_is(a, 2)
    await b.close()


async def test_two_tabs_rekeying_at_once_end_with_one_key_and_a_clear_error_for_the_other() -> None:
    b = Browser(max_delay=0.001, suspending=True)
    a = await b.open("a", encryption_key="old secret")
    await a.wait_for_leadership()
    f = await b.open("f", encryption_key="old secret")
    g = await b.open("g", encryption_key="old secret")
    await f.execute("CREATE TABLE t(x)")
    results = await asyncio.wait_for(asyncio.gather(
        f.rekey("key f"), g.rekey("key g"), return_exceptions=True), 15)
    won = {r: k for k, r in zip(("key f", "key g"), results) if isinstance(r, int)}
    lost = [r for r in results if not isinstance(r, int)]
    assert won, results
    assert all(isinstance(e, datasync.DatasyncError) for e in lost), lost
    for tab in (a, f, g):
        await until(lambda: count_is(tab, 0), "every tab reads after the rekeys")
    h = await b.open("h", encryption_key=won[max(won)])  # the last rekey's key opens it
    assert await count_is(h, 0)
    await b.close()


async def test_the_other_tabs_follow_a_rekey_whose_scrub_failed() -> None:
    b = Browser(max_delay=0)
    a, f = await _keyed_pair(b)

    async def broken_scrub() -> None:
        raise datasync.BackendError("the disk went away")

    a._store.backend.scrub = broken_scrub  # type: ignore[method-assign]
    with pytest.raises(datasync.BackendError, match="the rekey is done"):
        await a.rekey("new secret")
    await a.execute("INSERT INTO t VALUES (1)")
    await until(lambda: count_is(f, 1), "the follower reads under the new key")
    await b.close()

