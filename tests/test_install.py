"""BlockStore.install: another writer's image replaces the file (a replica's pull)."""
from __future__ import annotations

import datasync


async def _install(db, image: bytes) -> None:
    store = db.store
    bs = store.block_size
    padded = image + bytes(-len(image) % bs)
    blocks = {i: padded[i * bs:(i + 1) * bs] for i in range(len(padded) // bs)}
    await db.sync()
    async with db.turn():
        store.install(blocks, len(image))
        db.reload_after_install()
        await store.flush()


async def test_a_connection_drops_its_cached_pages_even_when_the_header_is_unchanged(tmp_path):
    """Same change counter, page count and freelist (bytes 24..39), other content:
    SQLite's own check would keep the stale page; the install's fork must not."""
    db = await datasync.open(str(tmp_path / "a.dsdb"))
    await db.execute("CREATE TABLE t(v TEXT)")
    await db.execute("INSERT INTO t VALUES ('aaaaaaaa')")
    conn = db.connect()
    assert conn.execute("SELECT v FROM t").fetchall() == [("aaaaaaaa",)]  # cached now
    image = await db.export()
    other = image.replace(b"aaaaaaaa", b"bbbbbbbb")
    assert other != image and other[24:40] == image[24:40]
    await _install(db, other)
    assert conn.execute("SELECT v FROM t").fetchall() == [("bbbbbbbb",)]
    assert await db.query("SELECT v FROM t") == [{"v": "bbbbbbbb"}]
    conn.close()
    await db.close()
    db = await datasync.open(str(tmp_path / "a.dsdb"))       # and it is what was stored
    assert await db.query("SELECT v FROM t") == [{"v": "bbbbbbbb"}]
    await db.close()


async def test_an_install_shrinks_and_grows_the_file_and_its_schema_is_reloaded(tmp_path):
    db = await datasync.open(str(tmp_path / "a.dsdb"))
    await db.execute("CREATE TABLE big(v BLOB)")
    await db.execute("INSERT INTO big VALUES (zeroblob(100000))")
    small = await datasync.open(str(tmp_path / "s.dsdb"))
    await small.execute("CREATE TABLE other(x)")
    await small.execute("INSERT INTO other VALUES (42)")
    image = await small.export()
    await small.close()
    await _install(db, image)
    assert db.store.size == len(image)
    assert await db.query("SELECT name FROM sqlite_master") == [{"name": "other"}]
    assert await db.query("SELECT x FROM other") == [{"x": 42}]
    await db.close()
