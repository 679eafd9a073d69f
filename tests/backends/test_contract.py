"""The backend contract (datasync/backends/contract.py), clause by clause, over every
backend this runtime has (memory and sqlitefile natively, IndexedDB too in Pyodide:
tests/browser/test_suites_in_pyodide.py) and over the wrapped variants that take
another path through a capability (conftest.py). A new backend is done when it
passes.

A test of a capability a backend lacks (SyncReads, KeepsHistory) skips, saying so.
The flushes are made here as the block store makes them (:class:`Writer`): growth
sends the blocks gained, a HistoryFromStore backend gets the records it supersedes.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import EXAMPLES, BackendFactory, run
from datasync.backends import (
    EVERYTHING,
    Backend,
    HistoryFromStore,
    KeepsHistory,
    SyncReads,
    run_now,
)
from datasync.errors import (
    BackendError,
    DeposedLeaderError,
    StorageFullError,
    StoreNotFoundError,
    VersionNotRetainedError,
)
from datasync.format import MAIN, Codec, Flush, Meta, Record

BS = 512  # the block size of every store here: small records, many blocks
C = TypeVar("C", bound=Backend)
V = TypeVar("V")


def record(index: int, version: int) -> Record:
    """The record of block ``index`` written at ``version`` (its payload names both)."""
    payload = f"block {index} at version {version};".encode().ljust(BS, b".")
    return Codec().encode(MAIN, index, version, payload)


def needs(backend: Backend, capability: type[C]) -> C:
    """``backend`` as a ``capability`` backend; the test skips if it is not one."""
    if not isinstance(backend, capability):
        pytest.skip(f"{type(backend).__name__} is not {capability.__name__}")
    return backend


class Writer:
    """Makes flushes as the block store does and remembers what the store must hold:
    its metadata, its live records, the image of every version written, and which
    versions :meth:`~KeepsHistory.retained` must list (the rule of history.py)."""

    def __init__(self, backend: Backend, meta: Meta) -> None:
        self.backend = backend
        self.meta = meta
        self.records: dict[int, Record] = {}
        self.images: dict[int, tuple[Meta, dict[int, Record]]] = {meta.version: (meta, {})}
        self.kept = [meta.version]
        self.written: set[tuple[int, int]] = set()  # (index, version) of every record written

    def flush(self, written: Iterable[int] = (), blocks: int | None = None, *, retain: int = 0,
              epoch: int | None = None, base: int | None = None) -> Flush:
        """The flush writing blocks ``written`` of a file of ``blocks`` blocks (the
        same size by default) over the current version (or ``base``)."""
        old_count = self.meta.block_count
        count = old_count if blocks is None else blocks
        meta = self.meta.next(count * BS, epoch)
        # Blocks the file gained without a write are sent too (Flush's rule).
        indices = {i for i in written if i < count} | set(range(old_count, count))
        records = {i: record(i, meta.version) for i in sorted(indices)}
        sent = isinstance(self.backend, HistoryFromStore)
        history = {i: r for i, r in self.records.items() if i in records or i >= count} \
            if sent and retain > 0 else {}
        return Flush(self.meta.version if base is None else base, meta, records,
                     retain=retain, history=history, history_sent=sent)

    async def write(self, written: Iterable[int] = (), blocks: int | None = None, *,
                    retain: int = 0, epoch: int | None = None) -> Flush:
        flush = self.flush(written, blocks, retain=retain, epoch=epoch)
        await self.backend.write(flush)
        self.applied(flush)
        return flush

    def applied(self, flush: Flush) -> None:
        count, version = flush.meta.block_count, flush.meta.version
        self.records = {i: r for i, r in {**self.records, **flush.blocks}.items() if i < count}
        self.written |= {(i, version) for i in flush.blocks}
        self.meta = flush.meta
        self.images[version] = (flush.meta, dict(self.records))
        # The base version's metadata is kept, then every version older than
        # ``version - retain`` dropped; retain 0 keeps nothing but the current one.
        window = version - flush.retain
        self.kept = [v for v in self.kept if v >= window] + [version] if flush.retain > 0 \
            else [version]

    async def reopen(self, backend: Backend) -> None:
        """Continue on ``backend``, a new backend of the same store."""
        await self.backend.close()
        self.backend = backend
        assert await backend.open(Meta.new(BS), create=False) == self.meta


async def created(new_backend: BackendFactory, name: str = "db") -> Writer:
    backend = new_backend(name)
    return Writer(backend, await backend.open(Meta.new(BS)))


def live(records: dict[int, V], meta: Meta) -> dict[int, V]:
    """What a caller takes of ``read_all``: records past the end are ignored."""
    return {i: r for i, r in records.items() if i < meta.block_count}


def only_written(w: Writer, records: dict[int, Record]) -> None:
    """Past the end a backend may still return records (read_all allows it), but
    only ones a flush wrote there: never a record nobody stored."""
    assert {(i, r.version) for i, r in records.items()} <= w.written
    assert all(r == record(i, r.version) for i, r in records.items())


async def expect_stored(w: Writer) -> None:
    """Every read of the current state gives the writer's metadata and records."""
    backend, meta = w.backend, w.meta
    everything = await backend.read_all(MAIN)
    only_written(w, everything)
    assert live(everything, meta) == w.records
    versions = await backend.read_versions(MAIN)
    assert {(i, v) for i, v in versions.items()} <= w.written
    assert live(versions, meta) == {i: r.version for i, r in w.records.items()}
    meta_now, changed = await backend.changed_since(MAIN, EVERYTHING)
    only_written(w, changed)
    assert meta_now == meta and live(changed, meta) == w.records
    if isinstance(backend, SyncReads):
        for i in range(meta.block_count):
            assert backend.read_block(MAIN, i) == w.records.get(i)
    if isinstance(backend, KeepsHistory):
        await expect_history(w)


async def expect_history(w: Writer) -> None:
    """retained() lists the versions the window keeps; read_as_of returns each one's
    exact image and refuses every other version, older or not written yet."""
    backend = w.backend
    assert isinstance(backend, KeepsHistory)
    assert await backend.retained(MAIN) == [w.images[v][0] for v in w.kept]
    for version in range(w.meta.version + 2):
        if version in w.kept:
            assert await backend.read_as_of(MAIN, version) == w.images[version]
        else:
            with pytest.raises(VersionNotRetainedError):
                await backend.read_as_of(MAIN, version)


# -- open ----------------------------------------------------------------------


def test_open_creates_a_missing_store_with_the_initial_metadata(
        new_backend: BackendFactory) -> None:
    async def go() -> None:
        backend, initial = new_backend(), Meta.new(BS)
        assert await backend.open(initial) == initial
        assert await backend.read_all(MAIN) == {}
        assert await backend.read_versions(MAIN) == {}
        assert await backend.changed_since(MAIN, EVERYTHING) == (initial, {})
        if isinstance(backend, KeepsHistory):
            assert await backend.retained(MAIN) == [initial]
            assert await backend.read_as_of(MAIN, 0) == (initial, {})

    run(go())


def test_open_without_create_refuses_a_missing_store_and_creates_nothing(
        new_backend: BackendFactory) -> None:
    async def go() -> None:
        with pytest.raises(StoreNotFoundError):
            await new_backend("missing").open(Meta.new(BS), create=False)
        with pytest.raises(StoreNotFoundError):  # the refusal left nothing behind
            await new_backend("missing").open(Meta.new(BS), create=False)
        initial = Meta.new(BS)
        assert await new_backend("missing").open(initial) == initial

    run(go())


def test_reopening_returns_the_stored_metadata_not_the_initial_one(
        new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(3), 3)
        await w.backend.close()
        for create in (True, False):
            backend = new_backend()
            assert await backend.open(Meta.new(BS), create=create) == w.meta
            assert live(await backend.read_all(MAIN), w.meta) == w.records
            await backend.close()

    run(go())


def test_two_backends_of_one_store_share_a_key_and_other_stores_do_not(
        new_backend: BackendFactory) -> None:
    one, same, other = new_backend("one"), new_backend("one"), new_backend("other")
    assert one.key == same.key != other.key
    assert isinstance(one.location, str) and one.location


# -- write ---------------------------------------------------------------------


def test_a_flush_stores_its_blocks_and_metadata_and_newer_records_win(
        new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(4), 4)
        await expect_stored(w)
        await w.write([1, 3])  # overwrites: the records of version 2 replace those of 1
        await w.write([], 4)  # metadata only
        await expect_stored(w)
        assert (await w.backend.read_versions(MAIN)) == {0: 1, 1: 2, 2: 1, 3: 2}

    run(go())


@pytest.mark.parametrize("stage", ["block", "meta"])
def test_a_flush_failing_midway_leaves_nothing_of_it_written(
        new_backend: BackendFactory, stage: str) -> None:
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(6), 6, retain=3)
        await w.write([0, 1], retain=3)
        seen: list[str] = []

        def fail(at: str, detail: int) -> None:
            seen.append(at)
            if at == stage and (at == "meta" or len(seen) == 2):  # "block": the second
                raise StorageFullError(f"injected at {at} {detail}")

        # It would shrink the file, write blocks and drop the history (retain 0).
        flush = w.flush([0, 1, 2], 3, retain=0)
        w.backend.fault_hook = fail
        with pytest.raises(StorageFullError, match="injected"):
            await w.backend.write(flush)
        w.backend.fault_hook = None
        assert seen[-1] == stage
        await expect_stored(w)
        # The store is where it was: the same flush, retried, goes through.
        await w.backend.write(flush)
        w.applied(flush)
        await expect_stored(w)

    run(go())


def test_a_flush_from_a_deposed_leader_is_refused_with_nothing_written(
        new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(4), 4, retain=2, epoch=2)
        for epoch in (0, 1):
            with pytest.raises(DeposedLeaderError):
                await w.backend.write(w.flush([0, 5], 6, retain=2, epoch=epoch))
            await expect_stored(w)
        await w.write([0], 2, retain=2, epoch=2)  # the same epoch writes on
        await w.write([1], retain=2, epoch=3)  # and a new leader after it
        await expect_stored(w)

    run(go())


@pytest.mark.parametrize("off", [-1, 1, 5])
def test_a_flush_built_on_another_version_is_refused_with_nothing_written(
        new_backend: BackendFactory, off: int) -> None:
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(4), 4, retain=2)
        await w.write([1], retain=2)
        stale = w.flush([0, 2], 2, retain=2, base=w.meta.version + off)
        with pytest.raises(BackendError) as refused:
            await w.backend.write(stale)
        assert not isinstance(refused.value, DeposedLeaderError)
        await expect_stored(w)

    run(go())


@pytest.mark.parametrize("reopened", [False, True], ids=["just-written", "reopened"])
def test_a_truncating_flush_deletes_the_records_past_the_new_end(
        new_backend: BackendFactory, reopened: bool) -> None:
    """Also records stored before a reopen (which a backend may have packed since)."""
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(20), 20)
        if reopened:
            await w.reopen(new_backend())
        await w.write([0], 3)
        for records in (await w.backend.read_all(MAIN),
                        (await w.backend.changed_since(MAIN, EVERYTHING))[1]):
            assert records == w.records
        assert await w.backend.read_versions(MAIN) == {0: 2, 1: 1, 2: 1}
        if isinstance(w.backend, SyncReads):
            assert [w.backend.read_block(MAIN, i) for i in range(3, 21)] == [None] * 18
        await w.write([], 0)  # to nothing at all
        assert await w.backend.read_all(MAIN) == {}
        # Grown again, the file holds what the growing flush sent, never a
        # truncated record.
        await w.write([1], 2)
        assert await w.backend.read_all(MAIN) == {0: record(0, 4), 1: record(1, 4)}

    run(go())


# -- changed_since and read_versions ---------------------------------------------


def test_changed_since_returns_the_current_metadata_and_only_later_records(
        new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(5), 5)  # 1
        await w.write([1, 2])  # 2
        await w.write([2, 4])  # 3
        await w.write([], 5)  # 4: metadata only
        # block -> the version of its record, for each version asked about
        expected = {0: {0: 1, 1: 2, 2: 3, 3: 1, 4: 3}, 1: {1: 2, 2: 3, 4: 3}, 2: {2: 3, 4: 3},
                    3: {}, 4: {}, 5: {}}
        for version, versions in expected.items():
            meta, records = await w.backend.changed_since(MAIN, version)
            assert meta == w.meta
            assert records == {i: record(i, v) for i, v in versions.items()}

    run(go())


def test_changed_since_everything_returns_every_record(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(4), 4)
        await w.write([3])
        meta, records = await w.backend.changed_since(MAIN, EVERYTHING)
        assert meta == w.meta and records == w.records
        assert {r.version for r in records.values()} == {1, 2}

    run(go())


def test_read_versions_matches_read_all(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        for written, blocks in [(range(7), 7), ([2, 6], None), ([0], 4), ([5], 9)]:
            await w.write(written, blocks)
            assert await w.backend.read_versions(MAIN) == {
                i: r.version for i, r in (await w.backend.read_all(MAIN)).items()}

    run(go())


# -- SyncReads ---------------------------------------------------------------------


def test_a_sync_reads_backend_completes_every_coroutine_without_suspending(
        new_backend: BackendFactory) -> None:
    backend = new_backend()
    needs(backend, SyncReads)
    w = Writer(backend, run_now(backend.open(Meta.new(BS))))
    for written, blocks in [(range(3), 3), ([1], 2)]:
        flush = w.flush(written, blocks, retain=2)
        run_now(backend.write(flush))
        w.applied(flush)
    assert run_now(backend.read_all(MAIN)) == w.records
    assert run_now(backend.read_versions(MAIN)) == {0: 1, 1: 2}
    assert run_now(backend.changed_since(MAIN, 1)) == (w.meta, {1: w.records[1]})
    if isinstance(backend, KeepsHistory):
        assert run_now(backend.retained(MAIN)) == [w.images[v][0] for v in (0, 1, 2)]
        assert run_now(backend.read_as_of(MAIN, 1)) == w.images[1]
    run_now(backend.scrub())
    run_now(backend.close())
    again = new_backend()
    assert run_now(again.open(Meta.new(BS), create=False)) == w.meta
    run_now(again.destroy())
    with pytest.raises(StoreNotFoundError):
        run_now(new_backend().open(Meta.new(BS), create=False))


def test_read_block_agrees_with_read_all(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        sync = needs(w.backend, SyncReads)
        for written, blocks in [(range(6), 6), ([1, 4], None), ([0], 3), ([], 5)]:
            await w.write(written, blocks)
            stored = await w.backend.read_all(MAIN)
            for i in range(w.meta.block_count + 3):
                assert sync.read_block(MAIN, i) == stored.get(i) == w.records.get(i)

    run(go())


# -- KeepsHistory --------------------------------------------------------------------


def test_the_retained_versions_follow_the_retain_of_each_flush(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        history = needs(w.backend, KeepsHistory)
        await w.write(range(3), 3, retain=2)
        # Each flush keeps the version it replaces, then drops those older than
        # (its version - retain): a larger retain widens the window as flushes come.
        for retain, window in [(2, [0, 1, 2]), (2, [1, 2, 3]), (2, [2, 3, 4]),
                               (4, [2, 3, 4, 5]), (4, [2, 3, 4, 5, 6]), (4, [3, 4, 5, 6, 7]),
                               (1, [7, 8]), (1, [8, 9]), (3, [8, 9, 10])]:
            await w.write([w.meta.version % 3], retain=retain)
            assert [m.version for m in await history.retained(MAIN)] == window == w.kept
        await expect_history(w)

    run(go())


def test_read_as_of_returns_every_retained_version_exactly(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        needs(w.backend, KeepsHistory)
        # Overwrites, a truncation, growth, a metadata-only flush and a flush to nothing.
        for written, blocks in [(range(5), 5), ([1], None), ([0], 2), ([], 6), ([3], None),
                                ([], None), ([], 0), ([0], 1), ([0, 2], 4)]:
            await w.write(written, blocks, retain=20)
        assert w.kept == list(range(10))
        await expect_history(w)

    run(go())


def test_versions_outside_the_window_are_not_retained(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        history = needs(w.backend, KeepsHistory)
        for i in range(6):
            await w.write([i % 2], 2, retain=2)
        assert [m.version for m in await history.retained(MAIN)] == [4, 5, 6]
        for version in (0, 3, 7, 100):  # dropped, dropped, not written yet
            with pytest.raises(VersionNotRetainedError):
                await history.read_as_of(MAIN, version)
        await expect_history(w)

    run(go())


def test_a_flush_that_retains_nothing_drops_all_history(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        history = needs(w.backend, KeepsHistory)
        for i in range(4):
            await w.write([i], 4, retain=5)
        await w.write([0], retain=0)
        assert await history.retained(MAIN) == [w.meta]
        await expect_history(w)
        await w.write([1], retain=5)  # history starts again from there
        await w.write([2], 3, retain=5)
        assert w.kept == [5, 6, 7]
        await expect_history(w)
        await w.reopen(new_backend())  # and a new opening drops it again
        await w.write([0], retain=0)
        await expect_history(w)

    run(go())


def test_the_retained_versions_survive_close_and_reopen(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        needs(w.backend, KeepsHistory)
        for written, blocks in [(range(4), 4), ([2], None), ([0], 2), ([], 3)]:
            await w.write(written, blocks, retain=3)
        await w.reopen(new_backend())
        await expect_history(w)
        await w.write([1], retain=3)
        await expect_history(w)

    run(go())


# -- close, destroy, scrub -------------------------------------------------------------


def test_a_closed_store_reopens_with_everything_it_stored(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(40), 40, retain=1)
        await w.write(range(0, 40, 3), 30, retain=1)
        await w.reopen(new_backend())
        await expect_stored(w)
        await w.write([0, 29, 30], 31, retain=1)  # and writes on
        await w.reopen(new_backend())
        await expect_stored(w)

    run(go())


def test_a_destroyed_store_is_gone_and_can_be_created_afresh(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(4), 4, retain=3)
        await w.write([1], retain=3)
        await w.backend.destroy()
        with pytest.raises(StoreNotFoundError):
            await new_backend().open(Meta.new(BS), create=False)
        fresh = await created(new_backend)  # nothing of the old store comes back
        assert fresh.meta.db_id != w.meta.db_id
        await expect_stored(fresh)

    run(go())


def test_scrub_keeps_every_live_record_and_retained_version(new_backend: BackendFactory) -> None:
    async def go() -> None:
        w = await created(new_backend)
        for written, blocks in [(range(50), 50), (range(0, 50, 4), None), ([3], 20), ([], 25)]:
            await w.write(written, blocks, retain=2)
        await w.backend.scrub()
        await expect_stored(w)
        await w.write([0, 24], retain=2)  # newer records win over scrubbed ones
        await w.backend.scrub()
        await expect_stored(w)
        await w.reopen(new_backend())
        await expect_stored(w)

    run(go())


def test_scrub_leaves_no_record_past_the_end(new_backend: BackendFactory) -> None:
    """Scrub leaves no bytes that no live record uses: after it, no record of a
    block a truncation dropped can be read back."""
    async def go() -> None:
        w = await created(new_backend)
        await w.write(range(6), 6)
        await w.backend.scrub()  # a backend that packs records has packed these
        await w.write([0], 3)
        await w.backend.scrub()
        assert await w.backend.read_all(MAIN) == w.records
        assert (await w.backend.changed_since(MAIN, EVERYTHING))[1] == w.records

    run(go())


# -- everything at once ------------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("flush"), st.sets(st.integers(0, 11), max_size=5),
                  st.integers(0, 12), st.sampled_from([0, 1, 3])),
        st.tuples(st.just("refused"), st.integers(0, 12)),
        st.tuples(st.just("scrub")),
        st.tuples(st.just("reopen")),
    ),
    min_size=1,
    max_size=10,
)
_examples = itertools.count()


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=_ops)
def test_random_flushes_refusals_scrubs_and_reopens_keep_to_the_model(
        new_backend: BackendFactory, script: list[tuple[Any, ...]]) -> None:
    async def go() -> None:
        name = f"h{next(_examples)}"
        w = await created(new_backend, name)
        for op in script:
            if op[0] == "flush":
                await w.write(op[1], op[2], retain=op[3])
            elif op[0] == "refused":
                with pytest.raises(BackendError):
                    await w.backend.write(w.flush([0], op[1], base=w.meta.version + 1))
            elif op[0] == "scrub":
                await w.backend.scrub()
            else:
                await w.reopen(new_backend(name))
            await expect_stored(w)
            for version in range(w.meta.version + 1):
                meta, records = await w.backend.changed_since(MAIN, version)
                assert meta == w.meta
                assert live(records, meta) == {i: r for i, r in w.records.items()
                                               if r.version > version}

    run(go())
