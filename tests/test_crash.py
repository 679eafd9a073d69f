"""A writer killed with SIGKILL at random moments loses nothing it had synced."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import datasync
from helpers import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = textwrap.dedent(
    """
    import asyncio, os, random, sys
    sys.path.insert(0, ROOT)
    import datasync

    async def main(path):
        db = await datasync.open(path)
        await db.execute("CREATE TABLE IF NOT EXISTS log(id INTEGER PRIMARY KEY, pad BLOB)")
        start = (await db.query("SELECT coalesce(max(id), 0) AS m FROM log"))[0]["m"]
        for i in range(start + 1, start + 100000):
            async with db.transaction():
                await db.execute("INSERT INTO log VALUES (?, randomblob(?))",
                                 (i, random.randint(10, 9000)))
                if i % 7 == 0:
                    await db.execute("DELETE FROM log WHERE id = ?", (i - 3,))
                    await db.execute("INSERT INTO log VALUES (?, zeroblob(100))", (-i,))
            await db.sync()
            print(i, flush=True)

    asyncio.run(main(sys.argv[1]))
    """
).replace("ROOT", repr(ROOT))


def _expected_present(acked: list[int]) -> set[int]:
    deleted = {i - 3 for i in acked if i % 7 == 0}
    return {i for i in acked if i not in deleted} | {-i for i in acked if i % 7 == 0}


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_a_synced_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "crash.dsdb")
    rng = random.Random(20261121)
    acked: list[int] = []
    kills = 0
    for round_ in range(22):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, path], stdout=subprocess.PIPE, text=True
        )
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert first, f"round {round_}: the writer died before its first commit"
        acked.append(int(first))
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        acked.extend(int(line) for line in out.split())
        kills += proc.returncode == -signal.SIGKILL

        # Reopen: the store is consistent and holds every acknowledged commit.
        async def check() -> set[int]:
            db = await datasync.open(path)
            assert await db.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
            ids = {r["id"] for r in await db.query("SELECT id FROM log")}
            await db.close()
            return ids

        present = run(check())
        # The commit in flight at the kill may have landed without its ack: then
        # its effects (a delete among them) count too.
        landed = acked + [max(acked) + 1] if max(acked) + 1 in present else acked
        acked = landed
        missing = _expected_present(acked) - present
        assert not missing, f"round {round_}: synced commits lost: {sorted(missing)[:10]}"
        # Anything beyond the acknowledged ones can only be the one in flight.
        assert max(present) <= max(acked) + 1
    assert kills >= 20
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    raw.close()
