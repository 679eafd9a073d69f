"""An encrypted store notices a block rolled back to an older record (its payload
and its own older version put back), on every backend."""
from __future__ import annotations

import pytest

import datasync
from datasync.format import MAIN, Flush

KEY = bytes(range(32))


async def _put_back(backend: datasync.backends.Backend, meta: datasync.format.Meta, index: int,
                    record: datasync.format.Record) -> None:
    """What someone with write access to the storage could do: store an older record
    of one block under the current metadata."""
    await backend.write(Flush(meta.version, meta, {index: record}))


async def test_a_block_rolled_back_to_an_older_record_is_refused_at_open(make_backend) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open("r", backend=make_backend("r"), encryption_key=KEY)
    await db.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, balance INTEGER)")
    await db.execute("INSERT INTO acct VALUES (1, 100)")
    await db.sync()
    backend = db._store.backend
    (index, old), = [(i, r) for i, r in (await backend.read_all(MAIN)).items() if i == 1]
    await db.execute("UPDATE acct SET balance = 0")
    await db.close()
    backend = make_backend("r")
    meta = await backend.open(datasync.format.Meta.new(), create=False)
    assert (await backend.read_all(MAIN))[index].version > old.version
    await _put_back(backend, meta, index, old)
    await backend.close()
    with pytest.raises(datasync.CorruptBlockError, match="rolled"):
        db = await datasync.open("r", backend=make_backend("r"), encryption_key=KEY)
        await db.execute("SELECT balance FROM acct")


async def test_the_version_map_follows_growth_truncation_and_rekey(make_backend) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open("m", backend=make_backend("m"), encryption_key="pass phrase")
    await db.execute("CREATE TABLE t(v BLOB)")
    await db.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60) "
                     "INSERT INTO t SELECT randomblob(3000) FROM n")
    await db.sync()
    await db.execute("DELETE FROM t WHERE rowid % 2 = 0")
    await db.execute("VACUUM")  # the file shrinks
    await db.sync()
    await db.rekey(bytes(range(32)))
    await db.execute("INSERT INTO t VALUES (randomblob(9000))")  # and grows again
    await db.close()
    db = await datasync.open("m", backend=make_backend("m"), encryption_key=bytes(range(32)))
    assert (await db.execute("SELECT count(*) FROM t")).rows == [(31,)]
    await db.close()


@pytest.mark.parametrize("cut", [0, 10, 40])
async def test_a_truncated_encrypted_record_is_refused_naming_its_block(make_backend, cut: int) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open("cut", backend=make_backend("cut"), encryption_key=KEY)
    await db.execute("CREATE TABLE t(x)")
    await db.execute("INSERT INTO t VALUES ('truncated marker')")
    await db.close()
    backend = make_backend("cut")
    meta = await backend.open(datasync.format.Meta.new(), create=False)
    record = (await backend.read_all(MAIN))[1]
    payload = record.payload[:cut]
    # a valid CRC, so only the decryption (or the length check) can refuse it
    forged = datasync.format.Record(record.version, datasync.format.Codec._checksum(
        MAIN, 1, record.version, payload), payload)
    await _put_back(backend, meta, 1, forged)
    await backend.close()
    with pytest.raises(datasync.CorruptBlockError) as caught:
        db = await datasync.open("cut", backend=make_backend("cut"), encryption_key=KEY)
        await db.execute("SELECT * FROM t")
    assert caught.value.index == 1 and "block 1" in str(caught.value)
