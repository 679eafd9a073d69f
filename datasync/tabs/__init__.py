"""Many tabs, one database: see :mod:`datasync.tabs.coordinator`.

Example::

    from datasync.tabs import SharedDatabase, FakeLocks, FakeBroadcast
"""
from .coordinator import LeaderUnavailableError, QueuedWriteTimeoutError, RemoteError, SharedDatabase
from .services import Channel, FakeBroadcast, FakeLocks, Lease, LockService, MemoryOutbox, Outbox

__all__ = ["Channel", "FakeBroadcast", "FakeLocks", "Lease", "LeaderUnavailableError",
           "LockService", "MemoryOutbox", "Outbox", "QueuedWriteTimeoutError", "RemoteError",
           "SharedDatabase"]
