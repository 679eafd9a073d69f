"""Every block below the file size is accounted for: a stored record removed outside
datasync raises CorruptBlockError naming the block (zeros are only for blocks the
file never had), on the read-on-demand path and when a store is loaded whole."""
from __future__ import annotations

import sqlite3

import pytest

import datasync
from datasync.format import MAIN

from helpers import native_only

BLOB = 51_200  # the input: a BLOB whose tail sits in a block of its own


def remove_record(kind: str, where: str, index: int) -> None:
    if kind == "memory":
        from datasync.backends.memory import _STORES

        del _STORES[where].blocks[(MAIN, index)]
    else:
        raw = sqlite3.connect(where)
        assert raw.execute("DELETE FROM blocks WHERE idx = ?", (index,)).rowcount == 1
        raw.commit()
        raw.close()


async def store_with_blob(name: str, kind: str) -> tuple[int, int]:
    """A database holding one 51,200-byte BLOB; returns (its last block, block count)."""
    db = await datasync.open(name, backend=kind)
    await db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
    await db.execute("INSERT INTO t VALUES (1, randomblob(?))", (BLOB,))
    await db.close()
    db = await datasync.open(name, backend=kind, cache_bytes=0)
    count = db.stats()["blocks"]
    await db.close()
    return count - 1, count


@native_only
@pytest.mark.parametrize("kind", ["memory", "sqlitefile"])
@pytest.mark.parametrize("resident", [False, True])
async def test_a_deleted_block_record_raises_corrupt_block_error_naming_it(
        tmp_path, kind: str, resident: bool) -> None:  # type: ignore[no-untyped-def]
    name = str(tmp_path / "m.dsdb") if kind == "sqlitefile" else f"missing-{resident}-{id(tmp_path)}"
    where = name if kind == "sqlitefile" else f"{name}"

    last, count = await store_with_blob(name, kind)
    remove_record(kind, where, last)  # the record holding the BLOB's tail
    if resident:  # loaded whole (as IndexedDB always is): refused at open
        with pytest.raises(datasync.CorruptBlockError, match=f"block {last} ") as err:
            await datasync.open(name, backend=kind, resident=True)
        assert err.value.index == last
        return
    db = await datasync.open(name, backend=kind, cache_bytes=0)
    with pytest.raises(datasync.CorruptBlockError, match=f"block {last} .*no stored record"):
        await db.query("SELECT length(b), hex(substr(b, -8)) FROM t")
    # integrity_check reports a page it cannot read (it said "ok" over zeros)
    check = (await db.query("PRAGMA integrity_check"))[0]["integrity_check"]
    assert check != "ok" and f"page {last + 1}" in check
    await db.close()


@native_only
async def test_any_missing_block_of_a_larger_store_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "big.dsdb")

    db = await datasync.open(path)
    await db.execute("CREATE TABLE t(x)")
    await db.executemany("INSERT INTO t VALUES (randomblob(700))", [()] * 300)
    count = db.stats()["blocks"]
    await db.close()
    for index in (0, count // 2, count - 1):
        raw = sqlite3.connect(path)
        row = raw.execute("SELECT version, checksum, data FROM blocks WHERE idx = ?",
                          (index,)).fetchone()
        raw.execute("DELETE FROM blocks WHERE idx = ?", (index,))
        raw.commit()
        raw.close()
        with pytest.raises(datasync.CorruptBlockError, match=f"block {index} "):
            db = await datasync.open(path, cache_bytes=0)  # block 0: raises here
            try:
                await db.query("SELECT count(*), sum(length(x)) FROM t")
            finally:
                await db.close()
        raw = sqlite3.connect(path)
        raw.execute("INSERT INTO blocks(file, idx, version, checksum, data) "
                    "VALUES ('main', ?, ?, ?, ?)", (index, *row))  # put it back
        raw.commit()
        raw.close()
    db = await datasync.open(path, cache_bytes=0)
    assert (await db.query("SELECT count(*) AS n FROM t")) == [{"n": 300}]
    await db.close()


@native_only
async def test_blocks_past_the_end_still_read_as_zeros_and_truncation_keeps_working(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Not every absent record is damage: a file that shrank and grew again."""
    path = str(tmp_path / "z.dsdb")

    db = await datasync.open(path)
    await db.execute("CREATE TABLE t(x)")
    await db.executemany("INSERT INTO t VALUES (randomblob(3000))", [()] * 50)
    await db.execute("DELETE FROM t")
    await db.execute("VACUUM")  # the file shrinks
    await db.executemany("INSERT INTO t VALUES (zeroblob(3000))", [()] * 20)
    await db.close()
    db = await datasync.open(path, cache_bytes=0)
    assert (await db.query("PRAGMA integrity_check")) == [{"integrity_check": "ok"}]
    assert (await db.query("SELECT count(*) AS n FROM t")) == [{"n": 20}]
    await db.close()


@native_only
async def test_a_missing_block_of_an_encrypted_store_is_named_at_open(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("cryptography")
    path = str(tmp_path / "enc.dsdb")

    db = await datasync.open(path, encryption_key=b"k" * 32)
    await db.execute("CREATE TABLE t(b)")
    await db.execute("INSERT INTO t VALUES (randomblob(?))", (BLOB,))
    last = db.stats()["blocks"] - 1
    await db.close()
    remove_record("sqlitefile", path, last)
    with pytest.raises(datasync.CorruptBlockError, match=f"block {last} .*no stored record"):
        await datasync.open(path, encryption_key=b"k" * 32)


@native_only
async def test_two_spellings_of_one_path_are_one_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)

    a = await datasync.open(str(real / "s.dsdb"))
    b = await datasync.open(str(tmp_path / "alias" / "s.dsdb"))  # shares a's store
    assert b._store is a._store
    await a.execute("CREATE TABLE t(x)")
    await b.execute("INSERT INTO t VALUES (1)")
    rows = await a.query("SELECT x FROM t")
    await b.close()
    await a.close()
    assert rows == [{"x": 1}]


@native_only
@pytest.mark.parametrize("how", ["export", "backup"])
async def test_export_and_backup_of_a_store_missing_a_block_raise_instead_of_copying_zeros(
        tmp_path, how: str) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "src.dsdb")

    last, _ = await store_with_blob(path, "sqlitefile")
    remove_record("sqlitefile", path, last)
    db = await datasync.open(path, cache_bytes=0)
    with pytest.raises(datasync.CorruptBlockError, match=f"block {last} "):
        if how == "export":
            await db.export()
        else:
            await db.backup(str(tmp_path / "copy.dsdb"))
    await db.close()
