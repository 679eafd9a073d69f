"""The backend factory of the conformance suite: one fixture parameter per variant.

A *variant* is a backend the runtime has (``helpers.BACKENDS``: memory and
sqlitefile natively, IndexedDB too in Pyodide) or one wrapped so that it takes
another path through a capability: ``<kind>+sent-history`` is the backend behind
:class:`helpers.AsyncSentHistory`, a :class:`~datasync.backends.HistoryFromStore`
whose history is what the flush carries (``Flush.history``), kept by the inner
backend's ``keep_sent`` instead of read inside its transaction. Natively,
``postgres`` runs on a throw-away PostgreSQL cluster this test process starts
(``helpers.pg_cluster``: skipped, saying why, where PostgreSQL is not installed).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import BACKENDS, AsyncSentHistory, BackendFactory, backend_of, run
from datasync.backends import Backend

#: Every variant the suite runs over in this runtime. ``indexeddb+small-segments``:
#: IndexedDB with 8-block segments (of the suite's 512-byte blocks) and compaction
#: past 4 block records, so the suite's small stores take the packed paths
#: (flushes that put whole segments at once, compactions) that 1024-block
#: segments only reach in megabytes.
VARIANTS = [*BACKENDS, "memory+sent-history", "sqlitefile+sent-history",
            *(["indexeddb+small-segments"] if "indexeddb" in BACKENDS else
              ["postgres", "postgres+sent-history"])]
_stores = itertools.count()


@pytest.fixture(params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_backend(variant: str, tmp_path: Path,
                request: pytest.FixtureRequest) -> Iterator[BackendFactory]:
    """``new_backend(name)``: a backend of this variant, not opened yet; the same name
    gives another backend of the same store. Every store made is destroyed after
    the test (IndexedDB's outlive the page otherwise)."""
    kind, _, wrapper = variant.partition("+")
    prefix = f"contract{next(_stores)}"
    made: list[Backend] = []

    def factory(name: str = "db") -> Backend:
        if wrapper == "small-segments":
            from datasync.browser.indexeddb import IndexedDBBackend  # Pyodide only

            backend: Backend = IndexedDBBackend(f"{prefix}-{name}", segment_bytes=8 * 512,
                                                compact_threshold=4)
        elif kind == "postgres":  # a cluster of this test process (helpers.pg_cluster)
            from datasync.backends.postgres import PostgresBackend

            backend = PostgresBackend(request.getfixturevalue("pg_dsn"), f"{prefix}-{name}")
        else:
            backend = backend_of(kind, f"{prefix}-{name}", tmp_path)
        if wrapper == "sent-history":
            backend = AsyncSentHistory(backend)
        made.append(backend)
        return backend

    yield factory
    for backend in made:
        run(backend.close())
    for backend in {b.key: b for b in made}.values():
        run(backend.destroy())
