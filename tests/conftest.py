"""Fixtures shared by the native suites live in helpers.py (one module name per
helper file: tests/browser has a conftest of its own).

``async def test_...`` functions run here, each in a fresh event loop, without an
asyncio plugin: the suites also run inside Pyodide, where this file and helpers.py
are copied flat into one folder (tests/browser/test_suites_in_pyodide.py), so they
import each other by plain module name.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from helpers import backend_kind, db_name, make_backend, pg_cluster, pg_dsn, run  # noqa: F401  (fixtures)


def _each_call_in_its_own_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(test)
    def call(*args: Any, **kwargs: Any) -> None:
        run(test(*args, **kwargs))

    return call


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test with :func:`helpers.run` (``asyncio.run``), after its
    fixtures are set up and before they are torn down. A Hypothesis ``@given`` test
    is a plain function that calls the test once per example: its inner test is
    made synchronous instead, so every example gets a loop of its own."""
    test = pyfuncitem.obj
    given = getattr(test, "hypothesis", None)
    if given is not None:
        if inspect.iscoroutinefunction(given.inner_test):
            given.inner_test = _each_call_in_its_own_loop(given.inner_test)
        return None  # pytest calls the @given wrapper as any plain test
    if not inspect.iscoroutinefunction(test):
        return None
    run(test(**{name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}))
    return True
