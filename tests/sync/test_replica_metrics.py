"""db.metrics() of a replica (issue 14): statements counted once, the sync figures
from sync_status()."""
from __future__ import annotations

import pytest

from .test_replica import open_replica, with_schema

pytestmark = pytest.mark.timeout(180)


async def test_a_replica_counts_its_calls_once_and_reports_its_sync_lag(sync_server, tmp_path):
    await with_schema(sync_server, tmp_path)
    db = await open_replica(sync_server, tmp_path / "m.dsdb")
    await db.execute("INSERT INTO notes(body) VALUES ('a')")          # write 1: the primary
    await db.batch([("INSERT INTO notes(body) VALUES ('b')", ()),
                    ("INSERT INTO notes(body) VALUES ('c')", ())])    # write 2
    assert len(await db.query("SELECT * FROM notes")) == 3            # read 1: local
    await db.exec("INSERT INTO notes(body) VALUES ('d')")             # write 3
    with pytest.raises(Exception):
        db.transaction()                                  # error 1: a replica has none
    await db.pull()
    m = db.metrics()
    assert m["statements"] == {"read": 1, "write": 3, "transaction": 0}
    assert m["errors_by_name"] == {"ReplicaWriteError": 1}
    assert m["sync"] == {"lag_versions": 0, "lag_seconds": 0.0, "online": True, "waiting": 0}
    assert m["tabs"] == 1 and m["connections"] >= 1
    db.set_offline(True)
    await db.execute("INSERT INTO notes(body) VALUES ('offline')")
    assert db.metrics()["sync"]["waiting"] == 1
    assert db.metrics()["statements"]["write"] == 4
    await db.close()
