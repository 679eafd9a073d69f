"""A replica's push: its waiting writes to the primary, exactly once, and conflicts.

Example::

    sent = await replica.push()        # writes the primary answered (then a pull)
    for c in replica.conflicts(): print(c["error"], c["statements"])

Waiting writes (made offline, or while older ones waited) are kept in a durable
outbox, oldest first, each with the id it keeps for life; a push sends them in
order (in bodies of at most :data:`PUSH_CHUNK` bytes) and the primary applies each
once, whatever was sent before (:mod:`.protocol`). A write the primary refuses (a
constraint, a changed row) is a *conflict*: the ``on_conflict`` handler gets
``{id, statements, error: [name, message], at}`` and returns

- ``"drop"`` (the default): forget the write, and record it in :meth:`conflicts`;
- ``"keep"``: record it, and keep it waiting under a new id, to be sent again with
  the next push (after the app changed what made it fail);
- ``{"replace": [[sql, params], ...]}`` (or ``("replace", statements)``): send these
  statements instead, in its place, under a new id.

A handler that raises counts as ``"drop"`` (its error is kept with the record).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..tabs.wire import encode_params
from ..errors import SyncRequestError
from .protocol import Write

#: Largest push body the replica sends at once (bytes of JSON, about).
PUSH_CHUNK = 1024 * 1024
#: Requests one push makes at most before returning (the rest waits for the next).
MAX_ROUNDS = 1000
_log = logging.getLogger("datasync")
ConflictHandler = Callable[[dict[str, Any]], Any]


def new_entry(statements: list[tuple[str, Any]], at: float) -> dict[str, Any]:
    """An outbox entry for one write (one transaction of ``statements``)."""
    return {"id": uuid.uuid4().hex, "at": at,
            "statements": [[sql, encode_params(params)] for sql, params in statements]}


class Pushing:
    """The push half of :class:`~.replica.Replica` (see the module docstring)."""

    db: Any
    outbox: Any
    conflict_log: Any
    on_conflict: ConflictHandler | None
    _lock: asyncio.Lock
    _queue: dict[str, dict[str, Any]]
    last_push: float | None
    remote_version: int | None
    _kept: set[str] | None = None
    _resolving: dict[str, tuple[dict[str, Any], list[str]]]
    _deciding: set[str]
    _request: Callable[..., Awaitable[tuple[bytes, str]]]
    pull: Callable[..., Awaitable[int]]

    async def push(self) -> int:
        """Example: ``sent = await db.push()``

        Send every waiting write; returns how many the primary answered. Then
        pulls, so the local copy shows them. Raises
        :class:`~datasync.SyncUnavailableError` (they keep waiting) or the server's
        named error. The conflict handler runs with no lock held (it may write)."""
        sent = 0
        self._kept = set()  # requeued by "keep": sent again by the next push
        for _round in range(MAX_ROUNDS):  # (a replacement goes out in the same push)
            async with self._lock:
                sent += await self.push_locked()
            if not await self.resolve_conflicts():
                break
        if sent:
            await self.pull()
        return sent

    async def push_locked(self) -> int:
        """Send the waiting writes once each (not those being resolved or kept),
        under the replica's lock; a refused one is set aside for
        :meth:`resolve_conflicts`. Returns how many the primary answered."""
        sent = 0
        kept = self._kept or set()
        limit = PUSH_CHUNK
        for _round in range(MAX_ROUNDS):
            todo = [e for wid, e in self._queue.items()
                    if wid not in kept and wid not in self._resolving]
            if not todo:
                break
            chunk: list[dict[str, Any]] = []
            size = 0
            for entry in todo:
                n = len(json.dumps(entry["statements"]))
                if chunk and size + n > limit:
                    break
                chunk.append(entry)
                size += n
            try:
                reply = await self.send(chunk)
            except SyncRequestError as exc:
                # Refused whole (413: over the server's body limit; 400): send fewer
                # at a time, and a single write refused so can never be applied as it
                # is: a conflict, for the handler (nothing was applied).
                if len(chunk) > 1:
                    limit = max(1, size // 2)
                    continue
                self._conflict(chunk[0], [type(exc).__name__, str(exc)])
                continue
            for result in reply["results"]:
                entry = self._queue.get(result["id"])
                if entry is None:
                    continue
                if "error" in result:
                    self._conflict(entry, result["error"])
                else:
                    await self._done(entry["id"])
                sent += 1
            self.last_push = time.time()
        return sent

    async def send(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """One push request; returns ``{version, results}`` (see :mod:`.protocol`)."""
        body = {"writes": [Write(e["id"], e["statements"]).to_json() for e in entries]}
        raw, _ctype = await self._request("POST", "/push", body, timeout=60.0)
        reply = json.loads(raw)
        self.remote_version = max(self.remote_version or 0, int(reply["version"]))
        return reply  # type: ignore[no-any-return]

    async def _done(self, wid: str) -> None:
        """The primary applied write ``wid``: it waits no more."""
        await self.outbox.delete(wid)
        self._queue.pop(wid, None)

    def _conflict(self, entry: dict[str, Any], error: list[str]) -> None:
        """The primary refused ``entry``: set it aside (not sent again) until
        :meth:`resolve_conflicts` asks the handler."""
        self._resolving.setdefault(entry["id"], (entry, list(error)))

    async def resolve_conflicts(self) -> int:
        """Hand each refused write to the handler (no lock held: it may use the
        database), then record, requeue or drop it under the lock. Returns how many
        were replaced (queued again to be sent now)."""
        replaced = 0
        while True:  # (a handler's own write resolves others, never its own again)
            wid = next((w for w in self._resolving if w not in self._deciding), None)
            if wid is None:
                return replaced
            self._deciding.add(wid)
            entry, error = self._resolving[wid]
            conflict = {"id": entry["id"], "statements": entry["statements"],
                        "error": error, "at": entry.get("at")}
            try:
                decision = await self._decide(conflict)
                async with self._lock:
                    if wid in self._queue:
                        replaced += await self._settle_decision(entry, conflict, decision)
            finally:
                self._resolving.pop(wid, None)
                self._deciding.discard(wid)

    async def _decide(self, conflict: dict[str, Any]) -> Any:
        if self.on_conflict is None:
            return "drop"
        try:
            decision = self.on_conflict(dict(conflict))
            if asyncio.iscoroutine(decision) or isinstance(decision, asyncio.Future):
                decision = await decision
            return decision
        except Exception as exc:  # the app's handler failed: drop, and say why
            _log.warning("on_conflict raised %s: %s; the write is dropped and recorded",
                         type(exc).__name__, exc)
            conflict["handler_error"] = f"{type(exc).__name__}: {exc}"
            return "drop"

    async def _settle_decision(self, entry: dict[str, Any], conflict: dict[str, Any],
                               decision: Any) -> int:
        """Record the conflict and do what was decided; 1 if it was replaced."""
        replacement = None
        if isinstance(decision, dict) and "replace" in decision:
            replacement = decision["replace"]
        elif isinstance(decision, (tuple, list)) and len(decision) == 2 \
                and decision[0] == "replace":
            replacement = decision[1]
        elif decision not in (None, "drop", "keep"):
            conflict["handler_error"] = (f"on_conflict returned {decision!r}; expected "
                                         "'drop', 'keep' or {'replace': statements}")
            decision = "drop"
        conflict["resolution"] = "replace" if replacement is not None else (decision or "drop")
        await self.conflict_log.put({**conflict, "id": f"{entry['id']}@{time.time():.6f}",
                                     "write_id": entry["id"], "recorded": time.time()})
        if replacement is not None or decision == "keep":
            stmts = entry["statements"] if replacement is None else [
                [str(s[0]), encode_params(s[1] if len(s) > 1 else [])] for s in replacement]
            await self._requeue(entry, stmts, keep=replacement is None)
            return int(replacement is not None)
        await self._done(entry["id"])
        return 0

    async def _requeue(self, entry: dict[str, Any], statements: list[Any],
                       keep: bool = False) -> None:
        """Put a new write in ``entry``'s place in the queue (same position); a kept
        one waits for the next push."""
        fresh = {"id": uuid.uuid4().hex, "at": entry.get("at", time.time()),
                 "statements": statements}
        if keep and self._kept is not None:
            self._kept.add(fresh["id"])
        await self.outbox.put(fresh)
        await self.outbox.delete(entry["id"])
        order = list(self._queue.items())
        self._queue.clear()
        for wid, e in order:
            if wid == entry["id"]:
                self._queue[fresh["id"]] = fresh
            else:
                self._queue[wid] = e

    async def conflicts_recorded(self) -> list[dict[str, Any]]:
        """Every conflict recorded, oldest first: ``{id (the write's), statements,
        error: [name, message], resolution, at, recorded}`` (times: seconds since
        the epoch)."""
        return [{**{k: v for k, v in c.items() if k not in ("id", "write_id")},
                 "id": c.get("write_id", c["id"])} for c in await self.conflict_log.entries()]
