"""Many tabs, one database: leader election, forwarded writes, catch-up, changes.

Example (native simulation; in the browser the services are Web Locks and
BroadcastChannel)::

    locks, hub = FakeLocks(), FakeBroadcast()
    a = await SharedDatabase.open("app", backend="memory", tab_id="a",
                                  locks=locks.for_tab("a"), channel=hub.channel("a"))
    b = await SharedDatabase.open("app", backend="memory", tab_id="b",
                                  locks=locks.for_tab("b"), channel=hub.channel("b"))
    await a.wait_for_leadership()
    await b.execute("INSERT INTO t VALUES (1)")     # forwarded to a, applied once
    await b.query("SELECT * FROM t")                # b sees its own write

Protocol (messages are dicts with a type ``t``):

* ``leader {tab, epoch}``: the leader announces itself (at takeover and on ``who``).
* ``write {id, tab, to, stmts}`` -> ``result {id, to, ok | error, version}``: a
  follower's write. The leader runs the statements in one transaction together
  with an insert of ``id`` into ``_datasync_applied``, so a retry of the same id
  (after a lost reply or a failover) returns the stored result instead of applying
  twice. The follower resolves once its own copy reached ``version``.
* ``changed {version, epoch, tables}``: after each leader flush. Followers then
  read the blocks written after their version from the shared backend; they also
  poll, never trusting that they saw every message.
* ``queued {id}``: a write was put in the durable outbox (:meth:`queue_write`). The
  leader drains the outbox (also when it takes over, and at every poll): applies
  each entry under its id as above, recording a failure too, and then deletes it,
  so a queued write is applied exactly once even if its tab closed long before.

Leadership: a lock held for the tab's life. A new leader catches up, then writes
its epoch (stored epoch + 1) with a metadata flush; backends refuse flushes from a
lower epoch, so a deposed leader can never overwrite newer data. It discards what
it had not flushed and becomes a follower; its unacknowledged writes are retried
on the new leader under the same ids.
"""
from __future__ import annotations

from ..errors import LeaderUnavailableError, QueuedWriteTimeoutError, RemoteError
from .services import (
           Channel,
           FakeBroadcast,
           FakeLocks,
           Lease,
           LockService,
           MemoryOutbox,
           Outbox,
)
from .shared import SharedDatabase

__all__ = ["Channel", "FakeBroadcast", "FakeLocks", "Lease", "LeaderUnavailableError",
           "LockService", "MemoryOutbox", "Outbox", "QueuedWriteTimeoutError", "RemoteError",
           "SharedDatabase"]
