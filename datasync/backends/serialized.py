"""One lock around a backend's blocking I/O: its connection is used by whichever
thread flushes or reads on demand, and a transaction must not interleave with
another thread's statements.

Example::

    class SqliteFileBackend(SyncReads, KeepsHistory):
        def __init__(self, path):
            self._io = threading.RLock()

        @serialized
        def read_block(self, file, index): ...
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def serialized(method: F) -> F:
    """Run the method holding ``self._io`` (see the module docstring). (Innermost in the lock order; the
    coroutines of this backend never suspend, so holding it across them is safe.)"""
    if inspect.iscoroutinefunction(method):
        @functools.wraps(method)
        async def run_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            with self._io:
                return await method(self, *args, **kwargs)
        return run_async  # type: ignore[return-value]

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self._io:
            return method(self, *args, **kwargs)
    return run  # type: ignore[return-value]
