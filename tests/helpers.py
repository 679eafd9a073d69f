"""Helpers and fixtures of the native suites: every storage suite runs over every backend."""
from __future__ import annotations

import asyncio
import itertools
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from datasync.backends import (  # noqa: E402
    Backend,
    HistoryFromStore,
    KeepsHistory,
    MemoryBackend,
    SqliteFileBackend,
    SyncReads,
)
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


class BackendFactory(Protocol):
    """``factory(name)``: a backend of the store ``name``, not opened yet; the same
    name gives another backend of the same store."""

    def __call__(self, name: str = "db") -> Backend: ...


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throw-away PostgreSQL cluster of this test process (``pg_cluster.py``),
    started at first use and destroyed at the end. Where PostgreSQL is not installed
    the test is skipped, saying so, unless ``DATASYNC_REQUIRE_POSTGRES`` is set (CI
    sets it: there a missing PostgreSQL fails)."""
    from pg_cluster import MISSING, find_bin_dir, throwaway_cluster

    if IN_PYODIDE or find_bin_dir() is None:
        if os.environ.get("DATASYNC_REQUIRE_POSTGRES") and not IN_PYODIDE:
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_dsn(pg_cluster: Any) -> str:
    """The connection string of :func:`pg_cluster` (``postgresql://...``)."""
    return str(pg_cluster.dsn)


def backend_of(kind: str, name: str, directory: Path) -> Backend:
    """A backend of ``kind`` (one of :data:`BACKENDS`) for the store ``name`` (a file
    in ``directory`` for sqlitefile), not opened yet."""
    if kind == "memory":
        return MemoryBackend(name)
    if kind == "sqlitefile":
        return SqliteFileBackend(directory / f"{name}.dsdb")
    if kind == "indexeddb":
        from datasync.browser.indexeddb import IndexedDBBackend  # Pyodide only

        return IndexedDBBackend(name)
    raise AssertionError(f"no backend kind {kind!r}: add it to tests/helpers.py")


@pytest.fixture
def make_backend(backend_kind: str, tmp_path: Path) -> Iterator[BackendFactory]:
    """A factory of backends of the current kind; the same name reopens the same store."""
    prefix = f"t{next(_names)}"

    made: list[Backend] = []

    def factory(name: str = "db") -> Backend:
        backend = backend_of(backend_kind, f"{prefix}-{name}", tmp_path)
        if backend_kind == "indexeddb":
            made.append(backend)
        return backend

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


class AsyncOnly(Backend):
    """Another backend's store, without its synchronous reads: every coroutine may
    suspend (``pause()`` before each call), as IndexedDB's do. Test double."""

    def __init__(self, inner: Backend, pause: Callable[[], Coroutine[Any, Any, None]] | None = None
                 ) -> None:
        self.inner = inner
        self._pause = pause

    async def pause(self) -> None:
        if self._pause is not None:
            await self._pause()

    @property
    def fault_hook(self):  # type: ignore[no-untyped-def,override]
        return self.inner.fault_hook

    @fault_hook.setter
    def fault_hook(self, hook) -> None:  # type: ignore[no-untyped-def]
        self.inner.fault_hook = hook

    location = property(lambda self: self.inner.location)
    key = property(lambda self: self.inner.key)

    async def open(self, initial: Any, *, create: bool = True) -> Any:
        await self.pause()
        return await self.inner.open(initial, create=create)

    async def read_all(self, file: str = "main") -> Any:
        await self.pause()
        return await self.inner.read_all(file)

    async def write(self, flush: Any) -> None:
        await self.pause()
        await self.inner.write(flush)
        await self.pause()

    async def changed_since(self, file: str, version: int) -> Any:
        await self.pause()
        return await self.inner.changed_since(file, version)

    async def close(self) -> None:
        await self.inner.close()

    async def destroy(self) -> None:
        await self.inner.destroy()


class AsyncWithHistory(AsyncOnly, KeepsHistory):
    """:class:`AsyncOnly` over a store that keeps history (the inner backend's)."""

    async def retained(self, file: str = "main") -> Any:
        return await self.inner.retained(file)  # type: ignore[attr-defined]

    async def read_as_of(self, file: str, version: int) -> Any:
        return await self.inner.read_as_of(file, version)  # type: ignore[attr-defined]


class AsyncSentHistory(AsyncWithHistory, HistoryFromStore):
    """... whose history is what the block store sends, as IndexedDB's is."""


def readme_blocks(language: str) -> list[str]:
    """The fenced code blocks of README.md in ``language`` ("" for unlabelled), as
    written (tests/test_readme.py and tests/browser/test_readme_in_browser.py run
    every one of them)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, re.S | re.M)
            if m.group(1) == language]


def http_get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def parse_cli(*argv: str) -> Any:
    """``python -m datasync ARGV``'s parsed arguments (an argparse.Namespace)."""
    import argparse

    from datasync.tools import cli

    parser = argparse.ArgumentParser()
    cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)
