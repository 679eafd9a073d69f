"""Many tabs, one database: see :mod:`datasync.tabs.coordinator`.

Example::

    from datasync.tabs import SharedDatabase, FakeLocks, FakeBroadcast
"""
from .coordinator import LeaderUnavailableError, RemoteError, SharedDatabase
from .services import Channel, FakeBroadcast, FakeLocks, Lease, LockService

__all__ = ["Channel", "FakeBroadcast", "FakeLocks", "Lease", "LeaderUnavailableError",
           "LockService", "RemoteError", "SharedDatabase"]
