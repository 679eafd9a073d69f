"""Fixtures of the sync tests: a real sync server process (``server_process.py``).

``sync_server``: one started server, killed at the end of the test whatever
happens. It has ``url``, ``data_dir``, ``secret``, ``token(database,
read_only=False, expires=None)``, ``headers(database, read_only=False)``,
``stop()`` (SIGTERM), ``kill()`` (SIGKILL), ``start()`` (again, on the same port
and data directory) and ``log``.

``sync_server_factory``: ``make(*args)`` starts another one with extra command-line
options (``make("--max-body", "4096")``); each is killed at the end of the test.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .server_process import SyncServer


@pytest.fixture
def sync_server_factory(tmp_path) -> Iterator[Callable[..., SyncServer]]:  # type: ignore[no-untyped-def]
    made: list[SyncServer] = []

    def make(*args: str) -> SyncServer:
        server = SyncServer(tmp_path / f"data{len(made)}", args=args)
        made.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            server.close()


@pytest.fixture
def sync_server(sync_server_factory: Callable[..., SyncServer]) -> SyncServer:
    return sync_server_factory()
