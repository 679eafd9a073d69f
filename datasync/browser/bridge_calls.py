"""How the JS bridge's calls start: at once, as eager tasks (:mod:`.bridge`,
:mod:`.bridge_app`, :mod:`.sync_bridge` decorate their async methods with
:func:`_eager`).

Example::

    class JsThing:
        @_eager
        async def work(self) -> Any:          # JS: answer = thing.work()
            return await guard(self._work)    # a reply if done at once, else its task

A call that needs no wait is done when the JS call returns and answers its value;
one that must wait answers its task, which JS awaits (``js/local.js`` ``settle``).
Each JS call so costs no trip through the event loop (about 0.1-0.3 ms each), and
calls still start in the order JS makes them.
"""
from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any


def _start(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` now up to its first wait (an eager task): its value if it
    finished (a reply, or JSON text), else the task (JS awaits it).

    Called from inside a running task (a JS callback Python called), it is
    scheduled as an ordinary task instead: nothing runs inside another's step."""
    loop = asyncio.get_event_loop()
    if asyncio.current_task(loop) is not None:
        return asyncio.ensure_future(coro)
    task = asyncio.Task(coro, loop=loop, eager_start=True)
    return task.result() if task.done() else task


def _eager(method: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Any]:
    """An async bridge method made a call that starts at once (see :func:`_start`)."""
    @functools.wraps(method)
    def start(*args: Any, **kwargs: Any) -> Any:
        return _start(method(*args, **kwargs))

    return start
