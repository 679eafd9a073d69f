"""A first datasync session: create a store, write, reopen, read back.

Run it with ``make example`` (or ``python examples/quickstart.py [STORE]``).
Run it twice: the second run finds the notes of the first.
"""
from __future__ import annotations

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import datasync  # noqa: E402


async def main(path: str) -> None:
    db = await datasync.open(path)
    await db.execute(
        "CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT, at REAL)"
    )
    await db.execute("INSERT INTO notes(body, at) VALUES (?, ?)",
                     (f"hello from pid {os.getpid()}", time.time()))
    version = await db.sync()
    rows = await db.query("SELECT id, body FROM notes ORDER BY id")
    print(f"{path}: version {version}, {len(rows)} note(s)")
    for row in rows[-5:]:
        print(f"  #{row['id']}: {row['body']}")
    stats = db.stats()
    print(f"  blocks {stats['blocks']} x {stats['block_size']} B, "
          f"flushes {stats['flushes']}, cache hits {stats['cache_hits']}")
    await db.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "quickstart.dsdb"))
