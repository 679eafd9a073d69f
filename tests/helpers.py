"""Helpers and fixtures of the native suites: every storage suite runs over every backend."""
from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasync.backends import Backend, MemoryBackend, SqliteFileBackend  # noqa: E402
from datasync.backends.memory import _STORES  # noqa: E402
from datasync.platform import IN_PYODIDE  # noqa: E402

T = TypeVar("T")
#: Inside Pyodide (tests/browser/test_suites_in_pyodide.py) IndexedDB joins in.
BACKENDS = ["memory", "sqlitefile"] + (["indexeddb"] if IN_PYODIDE else [])
#: Hypothesis examples per test: fewer in the browser, where everything is slower.
EXAMPLES = 8 if IN_PYODIDE else 60
_names = itertools.count()

#: For tests that start processes or open stores by file path with plain sqlite3.
native_only = pytest.mark.skipif(
    IN_PYODIDE, reason="needs subprocesses or native file paths, which Pyodide has not")


async def pause(seconds: float) -> None:
    """Really wait (a macrotask in Pyodide, whose asyncio.sleep() of a few ms comes
    back at once: a loop of them would starve IndexedDB's events)."""
    if IN_PYODIDE:
        import js

        await js.Promise.new(lambda resolve, reject: js.setTimeout(resolve, seconds * 1000))
    else:
        await asyncio.sleep(seconds)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion (the suites avoid an asyncio plugin)."""
    return asyncio.run(coro)


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_backend(backend_kind: str, tmp_path) -> Callable[[str], Backend]:  # type: ignore[no-untyped-def]
    """A factory of backends of the current kind; the same name reopens the same store."""
    prefix = f"t{next(_names)}"

    made: list[Backend] = []

    def factory(name: str = "db") -> Backend:
        if backend_kind == "memory":
            return MemoryBackend(f"{prefix}-{name}")
        if backend_kind == "indexeddb":
            from datasync.backends.indexeddb import IndexedDBBackend

            made.append(IndexedDBBackend(f"{prefix}-{name}"))
            return made[-1]
        return SqliteFileBackend(tmp_path / f"{name}.dsdb")

    yield factory
    for key in [k for k in _STORES if k.startswith(prefix + "-")]:
        del _STORES[key]
    for backend in made:
        run(backend.destroy())


@pytest.fixture
def db_name(backend_kind: str, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A database name for ``datasync.open(name, backend=backend_kind)``."""
    if backend_kind in ("memory", "indexeddb"):
        return f"{backend_kind}-{next(_names)}"
    return str(tmp_path / "app.dsdb")
