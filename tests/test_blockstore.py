"""The block store: tiers, commit points, atomic flushes, the LRU bound."""
from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import datasync
from helpers import EXAMPLES, native_only, run
from datasync.blockstore import BlockStore
from datasync.backends import SyncReads
from datasync.backends.sqlitefile import SqliteFileBackend
from datasync.errors import BackendError, CorruptBlockError, StorageFullError
from datasync.format import MAIN

BLOCK_SIZES = [512, 4096]
_counter = itertools.count()


def open_store(backend, **options):  # type: ignore[no-untyped-def]
    return run(BlockStore.open(backend, **options))


ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.integers(0, 40_000),
            st.binary(min_size=1, max_size=9000),
        ),
        st.tuples(st.just("truncate"), st.integers(0, 45_000)),
        st.tuples(st.just("commit")),
        st.tuples(st.just("flush")),
        st.tuples(st.just("reopen")),
    ),
    max_size=30,
)


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops)
def test_random_writes_truncates_and_reopens_match_a_byte_array(
    make_backend, block_size: int, script  # type: ignore[no-untyped-def]
) -> None:
    """Committed data survives flush + reopen; uncommitted data is dropped by reopen."""
    name = f"h{next(_counter)}"
    store = open_store(make_backend(name), block_size=block_size, cache_bytes=3 * block_size)
    model = bytearray()  # what the file holds now
    committed = bytearray()
    for op in script:
        if op[0] == "write":
            _, offset, data = op
            store.write(offset, data)
            if offset > len(model):
                model.extend(bytes(offset - len(model)))
            model[offset : offset + len(data)] = data
        elif op[0] == "truncate":
            store.truncate(op[1])
            if op[1] < len(model):
                del model[op[1] :]
            else:
                model.extend(bytes(op[1] - len(model)))
        elif op[0] == "commit":
            store.commit()
            committed = bytearray(model)
        elif op[0] == "flush":
            run(store.flush())
            pass
        else:
            store.commit()
            run(store.close())
            committed = bytearray(model)
            store = open_store(make_backend(name), cache_bytes=3 * block_size)
        assert store.size == len(model)
        assert store.read(0, len(model) + 10) == bytes(model)
    run(store.close())  # flushes what is committed; pending writes are dropped
    reopened = open_store(make_backend(name))
    assert reopened.read(0, reopened.size + 1) == bytes(committed)
    run(reopened.close())


def test_reads_at_random_offsets_and_lengths_span_blocks(make_backend) -> None:  # type: ignore[no-untyped-def]
    store = open_store(make_backend(), block_size=512)
    data = bytes(range(256)) * 20
    store.write(100, data)
    assert store.read(0, 100) == bytes(100)
    assert store.read(100, len(data)) == data
    assert store.read(611, 1500) == data[511:2011]
    assert store.read(len(data) + 90, 50) == data[-10:]  # short at end of file
    assert store.read(len(data) + 200, 10) == b""


def test_open_transaction_blocks_are_never_flushed(make_backend) -> None:  # type: ignore[no-untyped-def]
    store = open_store(make_backend())
    store.write(0, b"a" * 4096)
    store.commit()
    store.write(4096, b"b" * 4096)  # still pending: no commit point yet
    version = run(store.flush())
    assert version == 1
    assert store.stats()["dirty_blocks"] == 1
    reopened_meta = run(store.backend.changed_since(MAIN, 0))[0]
    assert reopened_meta.file_size == 4096


def test_flush_is_atomic_when_backend_fails_midway(make_backend) -> None:  # type: ignore[no-untyped-def]
    store = open_store(make_backend())
    for i in range(4):
        store.write(i * 4096, bytes([i + 1]) * 4096)
    store.commit()
    assert run(store.flush()) == 1

    for i in range(6):
        store.write(i * 4096, bytes([i + 10]) * 4096)
    store.commit()
    seen: list[int] = []

    def fail_on_third(stage: str, detail: int) -> None:
        seen.append(detail)
        if len(seen) == 3:
            raise StorageFullError("injected: disk full after two blocks")

    store.backend.fault_hook = fail_on_third
    with pytest.raises(StorageFullError):
        run(store.flush())
    assert store.version == 1
    assert store.stats()["dirty_blocks"] == 6  # none lost
    assert store.stats()["last_flush_error"].startswith("StorageFullError")
    meta, records = run(store.backend.changed_since(MAIN, 0))
    assert meta.version == 1 and meta.file_size == 4 * 4096  # previous version intact
    assert all(r.payload[0] == i + 1 for i, r in records.items())

    store.backend.fault_hook = None
    assert run(store.flush()) == 2
    assert store.stats()["dirty_blocks"] == 0
    run(store.close())
    again = open_store(store.backend.__class__(*_reopen_args(store.backend)))
    assert [again.read(i * 4096, 1)[0] for i in range(6)] == [10, 11, 12, 13, 14, 15]


def _reopen_args(backend):  # type: ignore[no-untyped-def]
    return (backend.name,) if hasattr(backend, "name") else (backend.path,)


@native_only
def test_a_full_disk_is_reported_as_storage_full_and_the_next_flush_succeeds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = BlockStore.open_sync(SqliteFileBackend(tmp_path / "f.dsdb"))
    store.write(0, b"x" * 4096)
    store.commit()
    store.flush_sync()
    conn = store.backend._conn
    conn.execute(f"PRAGMA max_page_count={conn.execute('PRAGMA page_count').fetchone()[0] + 1}")
    for i in range(1, 40):
        store.write(i * 4096, os.urandom(4096))
    store.commit()
    with pytest.raises(datasync.StorageFullError):
        store.flush_sync()
    assert store.has_unflushed
    conn.execute("PRAGMA max_page_count=1073741823")
    version = store.flush_sync()
    data = store.read(0, store.size)
    store.close_sync()
    again = BlockStore.open_sync(SqliteFileBackend(tmp_path / "f.dsdb"))
    assert again.version == version and again.read(0, again.size) == data
    again.close_sync()


def test_commits_made_during_a_failed_flush_are_kept_over_it(make_backend) -> None:  # type: ignore[no-untyped-def]
    store = open_store(make_backend(), block_size=512)
    store.write(0, b"a" * 1024)
    store.commit()

    def commit_more_then_fail(stage: str, detail: int) -> None:
        store.write(0, b"z" * 512)
        store.truncate(512)
        store.commit()
        raise BackendError("injected")

    store.backend.fault_hook = commit_more_then_fail
    with pytest.raises(BackendError):
        run(store.flush())
    store.backend.fault_hook = None
    assert store.read(0, 2048) == b"z" * 512
    run(store.flush())
    assert store.read(0, 2048) == b"z" * 512


def test_a_stale_writer_is_refused(make_backend) -> None:  # type: ignore[no-untyped-def]
    a = open_store(make_backend())
    a.write(0, b"x" * 4096)
    a.commit()
    run(a.flush())
    a.meta = a.meta.__class__(**{**a.meta.__dict__, "version": 0})  # pretend it missed v1
    a.write(0, b"y" * 4096)
    a.commit()
    with pytest.raises(BackendError, match="another writer"):
        run(a.flush())


def test_lru_cache_never_exceeds_its_bound(make_backend) -> None:  # type: ignore[no-untyped-def]
    store = open_store(make_backend(), block_size=512, cache_bytes=8 * 512)
    for i in range(100):
        store.write(i * 512, bytes([i]) * 512)
    store.commit()
    run(store.flush())
    for _ in range(3):
        for i in range(100):
            assert store.read(i * 512, 512) == bytes([i]) * 512
            assert store.stats()["cache_bytes"] <= 8 * 512
    if isinstance(store.backend, SyncReads):
        assert store.stats()["cache_misses"] >= 200


def test_corrupt_stored_block_raises_naming_it(make_backend, backend_kind) -> None:  # type: ignore[no-untyped-def]
    if backend_kind == "indexeddb":
        pytest.skip("damaged IndexedDB records are tested in tests/browser")
    backend = make_backend()
    store = open_store(backend, cache_bytes=0)
    store.write(0, b"a" * 8192)
    store.commit()
    run(store.flush())
    run(store.close())
    _damage_block(backend, backend_kind, 1)
    store = open_store(make_backend(), cache_bytes=0)
    assert store.read(0, 10) == b"a" * 10
    with pytest.raises(CorruptBlockError, match="block 1 ") as info:
        store.read(4096, 10)
    assert info.value.index == 1


def _damage_block(backend, kind: str, index: int) -> None:  # type: ignore[no-untyped-def]
    if kind == "memory":
        from datasync.backends.memory import _STORES

        blocks = _STORES[backend.name].blocks
        rec = blocks[(MAIN, index)]
        blocks[(MAIN, index)] = rec._replace(payload=b"X" + rec.payload[1:])
    else:
        import sqlite3

        conn = sqlite3.connect(backend.path)
        conn.execute(
            "UPDATE blocks SET data = X'58' || substr(data, 2) WHERE idx = ?", (index,)
        )
        conn.commit()
        conn.close()


class _FlushedMeanwhile(datasync.backends.MemoryBackend):
    """A memory store another writer flushes to between each of this backend's
    reads: ``times`` flushes, one just before each read after ``open()``."""

    def __init__(self, name: str, writer: BlockStore, times: int,
                 truncate_to: int | None = None) -> None:
        super().__init__(name, instance="opening")
        self.writer, self.times, self.truncate_to = writer, times, truncate_to

    async def _another_flush(self) -> None:
        if self.times:
            self.times -= 1
            if self.truncate_to is None:
                self.writer.write(0, os.urandom(16))
            else:
                self.writer.truncate(self.truncate_to)
            self.writer.commit()
            await self.writer.flush()

    async def read_versions(self, file: str = MAIN) -> dict[int, int]:
        await self._another_flush()
        return await super().read_versions(file)

    async def read_all(self, file: str = MAIN):  # type: ignore[no-untyped-def]
        await self._another_flush()
        return await super().read_all(file)

    async def changed_since(self, file, version):  # type: ignore[no-untyped-def]
        await self._another_flush()
        return await super().changed_since(file, version)


@pytest.mark.parametrize(("resident", "key"), [(True, None), (True, b"k" * 32), (False, b"k" * 32)],
                         ids=["resident-plain", "resident-encrypted", "on-demand-encrypted"])
@pytest.mark.parametrize("times", [1, 3])
async def test_opening_while_another_writer_flushes_reads_one_consistent_version(
        resident: bool, key: bytes | None, times: int) -> None:
    """Metadata and blocks read at two moments with another writer's flush between
    them are not damage: a resident open uses its one snapshot, an on-demand one
    starts again from the newer metadata; each ends with the writer's last version
    (was: CorruptBlockError for an encrypted store, a mix of versions for a plain
    one). (A plain on-demand open reads no versions: nothing to race.)"""
    from datasync.encryption import codecs

    name = f"raced-{next(_counter)}"
    writer = await BlockStore.open(datasync.backends.MemoryBackend(name), codecs=codecs(key))
    writer.write(0, b"\x01" * 5000)
    writer.commit()
    await writer.flush()
    raced = _FlushedMeanwhile(name, writer, times)
    store = await BlockStore.open(raced, codecs=codecs(key), resident=resident)
    assert raced.times < times, "no flush landed during the open: nothing was tested"
    assert store.version == writer.version
    assert store.read(0, 5000) == writer.read(0, 5000)
    await store.close()
    await writer.close()
    await writer.backend.destroy()


@pytest.mark.parametrize("resident", [True, False])
async def test_opening_while_another_writer_truncates_reads_the_shorter_file(resident: bool) -> None:
    """The blocks past the new end are gone when the blocks are read: not a missing
    block (damage) but a newer version to open from."""
    from datasync.encryption import codecs

    name = f"raced-{next(_counter)}"
    key = codecs(b"k" * 32)
    writer = await BlockStore.open(datasync.backends.MemoryBackend(name), codecs=key)
    writer.write(0, b"\x01" * (4096 * 8))
    writer.commit()
    await writer.flush()
    raced = _FlushedMeanwhile(name, writer, 1, truncate_to=4096)
    store = await BlockStore.open(raced, codecs=key, resident=resident)
    assert raced.times == 0 and store.version == writer.version and store.size == 4096
    assert store.read(0, 4096) == b"\x01" * 4096
    await store.close()
    await writer.close()
    await writer.backend.destroy()


@native_only  # in Pyodide every encrypted store is resident (WebCrypto decodes async)
async def test_opening_a_store_that_never_stops_changing_raises_store_busy() -> None:
    """Reading versions on demand, each check finds a newer version: after
    OPEN_ATTEMPTS tries, StoreBusyError."""
    from datasync.blockstore.store import OPEN_ATTEMPTS
    from datasync.encryption import codecs

    name = f"raced-{next(_counter)}"
    key = codecs(b"k" * 32)
    writer = await BlockStore.open(datasync.backends.MemoryBackend(name), codecs=key)
    writer.write(0, b"\x01" * 100)
    writer.commit()
    await writer.flush()
    forever = _FlushedMeanwhile(name, writer, 1000)
    with pytest.raises(datasync.StoreBusyError, match="open it again"):
        await BlockStore.open(forever, codecs=key)
    assert 1000 - forever.times >= OPEN_ATTEMPTS  # it did try again each time
    await writer.close()
    await writer.backend.destroy()


async def test_a_resident_open_under_steady_flushes_uses_its_snapshot() -> None:
    """A resident open reads metadata and blocks in one snapshot: however often
    another writer flushes, it opens (at the snapshot's version) without retrying."""
    from datasync.encryption import codecs

    name = f"raced-{next(_counter)}"
    key = codecs(b"k" * 32)
    writer = await BlockStore.open(datasync.backends.MemoryBackend(name), codecs=key)
    steady = _FlushedMeanwhile(name, writer, 1000)
    store = await BlockStore.open(steady, codecs=key, resident=True)
    assert store.version == writer.version and 1000 - steady.times == 1
    await store.close()
    await writer.close()
    await writer.backend.destroy()
