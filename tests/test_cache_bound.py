"""With a synchronously readable backend, memory stays bounded by cache_bytes."""
from __future__ import annotations

import datasync
from datasync.blockstore import BlockStore, CleanCache

CACHE = 64 * 1024


async def test_database_ten_times_the_cache_is_scanned_and_updated_within_the_bound(
    tmp_path, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    peak = {"cache": 0, "dirty": 0}
    original_put = CleanCache.put
    stores: list[BlockStore] = []

    def watched_put(self, idx, data):  # type: ignore[no-untyped-def]
        original_put(self, idx, data)
        peak["cache"] = max(peak["cache"], self.used)
        for store in stores:
            peak["dirty"] = max(peak["dirty"], store._committed.nbytes())

    monkeypatch.setattr(CleanCache, "put", watched_put)

    path = str(tmp_path / "big.dsdb")
    db = await datasync.open(path, backend="sqlitefile", cache_bytes=CACHE)
    stores.append(db._store)
    conn = db.connect(isolation_level=None)  # autocommit: each UPDATE commits
    conn.execute("PRAGMA cache_size=-16")  # keep SQLite's own page cache small too
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, n INTEGER, pad TEXT)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?, ?, ?)",
                     ((i, i, "p" * 200) for i in range(1, 4001)))
    conn.execute("COMMIT")
    size = db.stats()["file_size"]
    assert size >= 10 * CACHE
    for _ in range(2):  # full scans
        assert conn.execute("SELECT count(*), sum(n), sum(length(pad)) FROM t").fetchone() \
            == (4000, 4000 * 4001 // 2, 800_000)
    for lo in range(1, 4001, 250):  # updates, committed in chunks
        conn.execute("UPDATE t SET n = n * 2 WHERE id BETWEEN ? AND ?", (lo, lo + 249))
    assert conn.execute("SELECT sum(n) FROM t").fetchone() == (4000 * 4001,)
    conn.close()
    stats = db.stats()
    assert stats["cache_misses"] > 0 and stats["cache_bytes"] <= CACHE
    await db.close()
    db = await datasync.open(path, backend="sqlitefile", cache_bytes=CACHE)
    assert await db.query("SELECT sum(n) AS s FROM t") == [{"s": 4000 * 4001}]
    await db.close()
    assert 0 < peak["cache"] <= CACHE
    assert peak["dirty"] <= CACHE + 4096  # committed blocks are flushed past the bound
