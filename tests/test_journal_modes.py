"""Journals and temporary files: what the VFS advertises is true of its memory files.

SQLite trusts ``xDeviceCharacteristics``: with UNDELETABLE_WHEN_OPEN it keeps a
PERSIST or TRUNCATE journal open across transactions, assuming nobody can delete it
meanwhile. Every input here runs on plain sqlite3 over an ordinary file too, and
datasync must give the same values (the right ones).
"""
from __future__ import annotations

import os
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import EXAMPLES, native_only
from datasync import vfs
from datasync.vfs import callbacks, capi

MODES = ["DELETE", "TRUNCATE", "PERSIST", "MEMORY", "OFF"]


class Pair:
    """Two connections to one database: an ordinary file, or a datasync store."""

    def __init__(self, path: str, on_datasync: bool) -> None:
        self.path, self.on_datasync = path, on_datasync
        self.conns = [self.connect(), self.connect()]

    def connect(self) -> sqlite3.Connection:
        if self.on_datasync:
            vfs.register()
            return sqlite3.connect(vfs.uri(self.path), uri=True, isolation_level=None,
                                   timeout=0)
        return sqlite3.connect(self.path, isolation_level=None, timeout=0)

    def run(self, who: int, sql: str) -> object:
        try:
            return self.conns[who].execute(sql).fetchall()
        except sqlite3.Error as exc:
            return type(exc).__name__

    def reopen_and_read(self) -> object:
        for conn in self.conns:
            conn.close()
        conn = self.connect()
        try:
            return conn.execute("SELECT group_concat(x) FROM t").fetchall()
        finally:
            conn.close()


def both(tmp_path, name: str) -> tuple[Pair, Pair]:  # type: ignore[no-untyped-def]
    return Pair(str(tmp_path / f"{name}.sqlite"), False), Pair(str(tmp_path / f"{name}.dsdb"), True)


@native_only
@pytest.mark.parametrize("mode", MODES)
def test_a_commit_from_another_connection_survives_any_journal_mode(tmp_path, mode: str) -> None:  # type: ignore[no-untyped-def]
    results = []
    for pair in both(tmp_path, mode):
        steps = [(0, f"PRAGMA journal_mode={mode}"), (0, "CREATE TABLE t(x)"),
                 (0, "INSERT INTO t VALUES ('by a')"), (1, "INSERT INTO t VALUES ('by b')"),
                 (0, "SELECT group_concat(x) FROM t"), (1, "SELECT group_concat(x) FROM t")]
        out = [pair.run(who, sql) for who, sql in steps]
        out.append(pair.reopen_and_read())
        results.append(out)
    plain, datasync_ = results
    assert plain[4:] == [[("by a,by b",)]] * 3
    assert datasync_[1:] == plain[1:]


@native_only
@pytest.mark.parametrize("limit", [0, 1024, -1])
def test_journal_size_limit_with_persist_keeps_every_commit(tmp_path, limit: int) -> None:  # type: ignore[no-untyped-def]
    results = []
    for pair in both(tmp_path, f"limit{limit}"):
        pair.run(0, "PRAGMA journal_mode=PERSIST")
        pair.run(0, f"PRAGMA journal_size_limit={limit}")
        pair.run(1, "PRAGMA journal_mode=TRUNCATE")
        pair.run(0, "CREATE TABLE t(x)")
        for i in range(30):
            pair.run(i % 2, f"INSERT INTO t VALUES ('{i}:' || hex(randomblob({i * 50})))")
            pair.run((i + 1) % 2, "SELECT count(*) FROM t")
        count = pair.run(0, "SELECT count(*) FROM t")
        pair.reopen_and_read()
        again = pair.connect()
        results.append((count, again.execute("SELECT count(*) FROM t").fetchall()))
        again.close()
    assert results[0] == results[1] == ([(30,)], [(30,)])


STEP = st.one_of(
    st.tuples(st.integers(0, 1), st.sampled_from([f"PRAGMA journal_mode={m}" for m in MODES])),
    st.tuples(st.integers(0, 1), st.sampled_from(["BEGIN", "COMMIT", "ROLLBACK"])),
    st.tuples(st.integers(0, 1), st.integers(0, 99).map(lambda i: f"INSERT INTO t VALUES ({i})")),
    st.tuples(st.integers(0, 1), st.just("DELETE FROM t WHERE x % 3 = 0")),
    st.tuples(st.integers(0, 1), st.just("SELECT group_concat(x) FROM t")),
    st.tuples(st.integers(0, 1), st.just("PRAGMA journal_size_limit=0")),
)


@native_only
@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=25))
def test_two_connections_interleaving_in_any_journal_modes_match_sqlite(tmp_path, steps) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / f"case{len(os.listdir(tmp_path))}"
    folder.mkdir()
    outcomes = []
    for pair in both(folder, "db"):
        pair.run(0, "CREATE TABLE t(x)")
        trace = [pair.run(who, sql) for who, sql in steps]
        for conn in pair.conns:  # an open transaction is rolled back by closing
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        trace.append(pair.reopen_and_read())
        outcomes.append(trace)
    assert outcomes[1] == outcomes[0]


def test_the_vfs_advertises_only_what_its_memory_files_do() -> None:
    """SAFE_APPEND, SEQUENTIAL and POWERSAFE_OVERWRITE hold for bytes in memory; a
    file deleted while open is not kept (UNDELETABLE_WHEN_OPEN is not claimed)."""
    claimed = callbacks._x_device_characteristics(0)
    assert not claimed & capi.SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN
    allowed = (capi.SQLITE_IOCAP_SAFE_APPEND | capi.SQLITE_IOCAP_SEQUENTIAL
               | capi.SQLITE_IOCAP_POWERSAFE_OVERWRITE)
    assert claimed & ~allowed == 0


def test_a_journal_deleted_while_open_is_recreated_empty_for_the_next_open() -> None:
    """Deleting a memory file that a handle holds: the holder keeps its bytes, the
    name starts afresh (what SQLite expects without UNDELETABLE_WHEN_OPEN)."""
    name = "/nowhere/deleted-while-open.dsdb-journal"
    callbacks.VFS.registry.memfiles[name] = held = bytearray(b"old journal")
    assert callbacks._x_delete(0, name.encode(), 0) == capi.SQLITE_OK
    assert name not in callbacks.VFS.registry.memfiles and held == bytearray(b"old journal")
    out = (ctypes_int := __import__("ctypes").c_int * 1)()
    assert callbacks._x_access(0, name.encode(), 0, out) == capi.SQLITE_OK and out[0] == 0
    del ctypes_int
