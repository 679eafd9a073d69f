"""SharedDatabase: one tab's view of a database that every tab of an app shares.

Example (native simulation; in the browser: datasync.browser.tabs.open_shared)::

    locks, hub = FakeLocks(), FakeBroadcast()
    a = await SharedDatabase.open("app", backend="memory", tab_id="a",
                                  locks=locks.for_tab("a"), channel=hub.channel("a"))
    await a.wait_for_leadership()
    await a.execute("CREATE TABLE t(x)")

Its parts, one concern each: :mod:`.core` (state, messages, leader-only work),
:mod:`.election`, :mod:`.follower`, :mod:`.forwarding`, :mod:`.queued`,
:mod:`.keys`, :mod:`.transactions`, :mod:`.presence` (how many tabs), on the wire
format of :mod:`.wire`, the services of :mod:`.services` and the connection state of
:mod:`.session`.
"""
from __future__ import annotations

from ..app import AppCalls
from .core import TabCore
from .election import Election
from .follower import Following
from .applying import Applying
from .forwarding import Forwarding
from .keys import KeyDistribution
from .presence import TabPresence
from .queued import QueuedWrites
from .transactions import TabTransactions


class SharedDatabase(AppCalls, TabPresence, KeyDistribution, QueuedWrites, TabTransactions, Forwarding, Applying,
                     Following, Election, TabCore):
    """One tab's view of a database shared by every tab; see :mod:`datasync.tabs`."""
