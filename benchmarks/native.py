"""Native benchmark: datasync (sqlitefile backend) vs plain sqlite3, as markdown tables.

Usage::

    python benchmarks/native.py                      # 100k rows, 10k reads, 1k updates, median of 3
    python benchmarks/native.py --rows 20000 --reads 2000 --updates 200 --repeat 1
    python benchmarks/native.py --profile update     # also cProfile one datasync phase

Every engine runs the same SQL through a plain ``sqlite3.Connection`` with
``isolation_level=None`` (explicit transactions):

* ``datasync``: ``db = await datasync.open(path)`` (sqlitefile backend, relaxed
  durability) and ``db.connect()``, so the VFS itself is measured, not the async API;
* ``sqlite3 file``: ``sqlite3.connect(path)`` with the library defaults;
* ``:memory:``: ``sqlite3.connect(":memory:")``.

Workloads: (1) bulk insert of ``--rows`` rows in one transaction; (2) ``--reads``
point reads by random primary key, each its own autocommit SELECT; (3) ``--updates``
single-row UPDATEs, each its own transaction; (4) a full scan (an aggregate, then
iterating every row). Each repeat uses fresh databases in a temporary directory;
the tables show the median time of ``--repeat`` runs.

Relaxed datasync commits return without flushing: the flusher runs only when the
event loop gets control, which the timed loops never give it. The ``+ sync()``
rows add one ``await db.sync()`` after the phase, so every write is durable. The
``strict`` row reopens the same store with ``durability="strict"`` (each commit is
flushed before it returns) and warms its cache with an untimed scan first.

Change data capture: the same write transactions (``--cdc-txns`` single-row
INSERTs, then UPDATEs and DELETEs of those rows, each its own transaction, then
100-row INSERT transactions), on a store opened with ``cdc=False`` and one opened
with ``cdc=True`` (triggers writing every change to the change log), both relaxed,
each phase ending with ``await db.sync()``; per transaction, median of ``--repeat``.

The encryption section (``--encryption-only`` runs just it) times the same store
with encryption off, a raw 32-byte key and a passphrase: the flush after the bulk
insert (every block sealed), the flush after the single-row updates, opening the
store again (the passphrase costs its 600,000 PBKDF2 rounds here) and a cold full
scan (every block opened), with the ratios to "off" side by side.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import platform
import pstats
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import datasync  # noqa: E402

SCHEMA = "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT)"
INSERT = "INSERT INTO users(id, name, email) VALUES (?, ?, ?)"
POINT = "SELECT name, email FROM users WHERE id = ?"
UPDATE = "UPDATE users SET email = ? WHERE id = ?"
AGGREGATE = "SELECT count(*), sum(length(name)) FROM users"
SCAN = "SELECT id, name, email FROM users"
PHASES = ("insert", "insert_sync", "reads", "update", "update_sync", "scan")
STAT_KEYS = ("commits", "flushes", "blocks_flushed", "bytes_flushed", "cache_hits",
             "cache_misses", "blocks", "file_size")


class Clock:
    """Times named phases; profiles the one named ``profile`` (datasync only)."""

    def __init__(self, profile: str | None = None) -> None:
        self.times: dict[str, float] = {}
        self.profile = profile
        self.profiler: cProfile.Profile | None = None

    @contextlib.contextmanager
    def __call__(self, name: str):
        prof = cProfile.Profile() if name == self.profile else None
        if prof:
            prof.enable()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = time.perf_counter() - start
            if prof:
                prof.disable()
                self.profiler = prof


class Work:
    """The data and the random ids, identical for every engine."""

    def __init__(self, rows: int, reads: int, updates: int, seed: int = 42) -> None:
        rng = random.Random(seed)
        self.rows = [(i, f"user{i:07d} {rng.choice('abcdefgh') * rng.randint(1, 12)}",
                      f"user{i:07d}@example.com") for i in range(1, rows + 1)]
        self.read_ids = [(rng.randint(1, rows),) for _ in range(reads)]
        self.update_ids = [rng.randint(1, rows) for _ in range(updates)]


def do_updates(conn: sqlite3.Connection, work: Work, tag: str = "changed") -> None:
    # New values each pass: SQLite skips writing a row whose bytes are unchanged.
    for k, rowid in enumerate(work.update_ids):
        conn.execute(UPDATE, (f"{tag}{k}@example.org", rowid))  # autocommit: 1 tx each


def do_scan(conn: sqlite3.Connection) -> int:
    count, _ = conn.execute(AGGREGATE).fetchone()
    seen = sum(1 for _ in conn.execute(SCAN))
    assert seen == count, (seen, count)
    return seen


async def run_engine(conn: sqlite3.Connection, work: Work, clock: Clock, sync=None) -> None:
    """The four workloads on ``conn``; ``sync`` (datasync) is awaited after writes."""
    conn.execute(SCHEMA)
    with clock("insert"):
        conn.execute("BEGIN")
        conn.executemany(INSERT, work.rows)
        conn.execute("COMMIT")
    if sync:
        with clock("insert_sync"):
            await sync()
    with clock("reads"):
        for params in work.read_ids:
            conn.execute(POINT, params).fetchone()
    with clock("update"):
        do_updates(conn, work)
    if sync:
        with clock("update_sync"):
            await sync()
    with clock("scan"):
        do_scan(conn)


async def one_repeat(work: Work, profile: str | None) -> tuple[dict, dict, dict]:
    """One run of every engine; returns times per engine and datasync stats."""
    times: dict[str, dict[str, float]] = {}
    stats: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="datasync-bench-") as tmp:
        store = os.path.join(tmp, "bench.dsdb")
        # datasync, relaxed (the default)
        clock = Clock(profile)
        db = await datasync.open(store)
        await run_engine(db.connect(), work, clock, sync=db.sync)
        stats["relaxed"] = db.stats()
        await db.close()
        t = clock.times
        t["insert_sync"] += t["insert"]
        t["update_sync"] += t["update"]
        times["datasync"] = t
        # datasync, strict: the update workload only, on the same (now durable) store
        sclock = Clock("strict" if profile == "strict" else None)
        db = await datasync.open(store, durability="strict")
        conn = db.connect()
        do_scan(conn)  # warm the block cache, untimed
        with sclock("strict"):
            do_updates(conn, work, tag="strict")
        stats["strict"] = db.stats()
        await db.close()
        t["update_strict"] = sclock.times["strict"]
        profiler = clock.profiler or sclock.profiler
        # plain sqlite3 on a file, library defaults
        fclock = Clock()
        conn = sqlite3.connect(os.path.join(tmp, "plain.sqlite"), isolation_level=None)
        settings = (conn.execute("PRAGMA journal_mode").fetchone()[0],
                    conn.execute("PRAGMA synchronous").fetchone()[0])
        await run_engine(conn, work, fclock)
        conn.close()
        times["file"] = fclock.times
        # plain sqlite3 in memory
        mclock = Clock()
        conn = sqlite3.connect(":memory:", isolation_level=None)
        await run_engine(conn, work, mclock)
        conn.close()
        times["memory"] = mclock.times
    return times, stats, {"profiler": profiler, "file_settings": settings}


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms"


def print_tables(work: Work, runs: list[dict], stats: dict, settings) -> None:
    def med(engine: str, key: str) -> float:
        return statistics.median(r[engine][key] for r in runs)

    n = f"{len(work.rows):,}"
    rows = [  # (label, datasync key, baseline key)
        (f"(1) bulk insert {n} rows, 1 transaction", "insert", "insert"),
        ("(1) bulk insert — datasync relaxed + sync()", "insert_sync", "insert"),
        (f"(2) {len(work.read_ids):,} point reads by id (autocommit)", "reads", "reads"),
        (f"(3) {len(work.update_ids):,} single-row UPDATE transactions — relaxed",
         "update", "update"),
        ("(3) UPDATE transactions — datasync strict", "update_strict", "update"),
        ("(3) UPDATE transactions — datasync relaxed + final sync()",
         "update_sync", "update"),
        ("(4) full scan (count/sum + iterate all rows)", "scan", "scan"),
    ]
    print("| workload | datasync | sqlite3 file | :memory: | datasync / sqlite3 file |")
    print("|---|---:|---:|---:|---:|")
    for label, dkey, bkey in rows:
        d, f, m = med("datasync", dkey), med("file", bkey), med("memory", bkey)
        ratio = f"{d / f:.2f}x"
        print(f"| {label} | {fmt_ms(d)} | {fmt_ms(f)} | {fmt_ms(m)} | "
              f"{'**' + ratio + '**' if d / f > 1.3 else ratio} |")
    jm, sync = settings
    sync_name = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(sync, sync)
    print(f"\nNotes: median of {len(runs)} run(s); ratios over 1.3x in bold. "
          f"sqlite3 file uses the library defaults (journal_mode={jm.upper()}, "
          f"synchronous={sync_name}: every commit is fsynced). datasync relaxed rows "
          "exclude flushing (commits are not yet durable when timed); `+ sync()` rows "
          "add one `await db.sync()`; strict flushes durably at every commit. "
          "Both columns on the right of a datasync-only row repeat the baseline.\n")
    print("datasync stats (last run; relaxed: all four workloads; strict: warm-up scan "
          "+ updates)\n")
    print("| counter | relaxed | strict |")
    print("|---|---:|---:|")
    for key in STAT_KEYS:
        print(f"| {key} | {stats['relaxed'][key]:,} | {stats['strict'][key]:,} |")


CDC_PHASES = ("insert", "update", "delete", "batch")


async def cdc_repeat(txns: int) -> dict[str, dict[str, float]]:
    """One run of the CDC workload with capture off, then on: seconds per phase."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="datasync-bench-cdc-") as tmp:
        for label, on in (("off", False), ("on", True)):
            db = await datasync.open(os.path.join(tmp, f"{label}.dsdb"), cdc=on)
            await db.execute(SCHEMA)
            conn = db.connect()
            for i in range(1, 51):  # warm-up, untimed: 50 insert + delete transactions
                for sql, params in ((INSERT, (-i, "w", "w")), ("DELETE FROM users WHERE id = ?", (-i,))):
                    conn.execute("BEGIN")
                    conn.execute(sql, params)
                    conn.execute("COMMIT")
            await db.sync()
            times: dict[str, float] = {}
            batches = max(txns // 100, 1)
            phases = {
                "insert": [(INSERT, (i, f"user{i}", f"u{i}@example.com")) for i in range(txns)],
                "update": [(UPDATE, (f"new{i}@example.com", i)) for i in range(txns)],
                "delete": [("DELETE FROM users WHERE id = ?", (i,)) for i in range(txns)],
            }
            for phase, stmts in phases.items():
                start = time.perf_counter()
                for sql, params in stmts:
                    conn.execute("BEGIN")
                    conn.execute(sql, params)
                    conn.execute("COMMIT")
                await db.sync()
                times[phase] = (time.perf_counter() - start) / len(stmts)
            start = time.perf_counter()
            for b in range(batches):
                conn.execute("BEGIN")
                conn.executemany(INSERT, [(txns + b * 100 + i, "x", "y") for i in range(100)])
                conn.execute("COMMIT")
            await db.sync()
            times["batch"] = (time.perf_counter() - start) / batches
            if on:  # it really captured: every row change is in the log
                logged = conn.execute("SELECT count(*) FROM _datasync_changes "
                                      "WHERE op != 'schema'").fetchone()[0]
                assert logged == 100 + 3 * txns + 100 * batches, logged
            conn.close()
            await db.close()
            out[label] = times
    return out


def print_cdc_table(txns: int, runs: list[dict[str, dict[str, float]]]) -> None:
    def med(label: str, phase: str) -> float:
        return statistics.median(r[label][phase] for r in runs)

    labels = {"insert": f"single-row INSERT ({txns:,} transactions)",
              "update": "single-row UPDATE", "delete": "single-row DELETE",
              "batch": f"100-row INSERT ({max(txns // 100, 1):,} transactions)"}
    print("\nChange data capture: time per write transaction, capture off vs on "
          "(sqlitefile, relaxed, phase ends with sync())\n")
    print("| write transaction | CDC off | CDC on | on / off |")
    print("|---|---:|---:|---:|")
    for phase in CDC_PHASES:
        off, on = med("off", phase), med("on", phase)
        print(f"| {labels[phase]} | {off * 1e6:,.0f} µs | {on * 1e6:,.0f} µs | "
              f"{on / off:.2f}x |")


ENCRYPTION_MODES = {"off": None, "raw key": bytes(range(32)), "passphrase": "bench passphrase"}
ENCRYPTION_PHASES = (("flush after bulk insert", "flush_insert"),
                     ("flush after updates", "flush_update"),
                     ("reopen (incl. key derivation)", "open"),
                     ("cold full scan", "cold_scan"))


async def encryption_repeat(work: Work, turn: int = 0) -> dict[str, dict[str, float]]:
    """One run of every encryption mode on a fresh store; times by mode and phase.
    ``turn`` rotates the order of the modes, so no mode always runs first."""
    out: dict[str, dict[str, float]] = {}
    modes = list(ENCRYPTION_MODES.items())
    modes = modes[turn % len(modes):] + modes[:turn % len(modes)]
    with tempfile.TemporaryDirectory() as tmp:
        for mode, key in modes:
            clock = Clock()
            path = os.path.join(tmp, mode.replace(" ", "-") + ".dsdb")
            db = await datasync.open(path, encryption_key=key)
            conn = db.connect()
            conn.execute(SCHEMA)
            conn.execute("BEGIN")
            conn.executemany(INSERT, work.rows)
            conn.execute("COMMIT")
            with clock("flush_insert"):
                await db.sync()
            do_updates(conn, work)
            with clock("flush_update"):
                await db.sync()
            await db.close()
            with clock("open"):
                db = await datasync.open(path, encryption_key=key)
                conn = db.connect()
                conn.execute("SELECT 1 FROM users LIMIT 1").fetchone()
            with clock("cold_scan"):
                do_scan(conn)
            await db.close()
            out[mode] = clock.times
    return out


def print_encryption(runs: list[dict[str, dict[str, float]]]) -> None:
    modes = list(ENCRYPTION_MODES)
    med = {m: {p: statistics.median(r[m][p] for r in runs) for _, p in ENCRYPTION_PHASES}
           for m in modes}
    print("\n### Encryption at rest (sqlitefile backend, AES-256-GCM per block)\n")
    print("| phase | " + " | ".join(modes) + " | "
          + " | ".join(f"{m} / off" for m in modes[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(modes) - 1))
    for label, phase in ENCRYPTION_PHASES:
        base = med["off"][phase]
        cells = [fmt_ms(med[m][phase]) for m in modes]
        ratios = [f"{med[m][phase] / base:.2f}x" if base else "-" for m in modes[1:]]
        print(f"| {label} | " + " | ".join(cells + ratios) + " |")
    print(f"\nNotes: median of {len(runs)} run(s), one process, modes run back to back "
          "on fresh stores (their order rotated each run); the passphrase's PBKDF2 (600,000 rounds) is paid once per open.")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--reads", type=int, default=10_000)
    ap.add_argument("--updates", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs; the median is shown")
    ap.add_argument("--cdc-txns", type=int, default=1_000,
                    help="write transactions per phase of the CDC section (0: skip it)")
    ap.add_argument("--profile", choices=(*PHASES, "strict"),
                    help="after the timed runs, cProfile this datasync phase in one more run and list the top "
                         "datasync functions by cumulative time")
    ap.add_argument("--encryption-only", action="store_true",
                    help="run only the encryption on/off section")
    args = ap.parse_args()
    work = Work(args.rows, args.reads, args.updates)
    print(f"Python {platform.python_version()} | SQLite {sqlite3.sqlite_version} | "
          f"datasync {datasync.__version__} | {platform.platform()} | "
          f"{os.cpu_count()} CPUs | rows={args.rows:,} reads={args.reads:,} "
          f"updates={args.updates:,} repeat={args.repeat}\n")
    if not args.encryption_only:
        runs = []
        for _ in range(args.repeat):  # timed runs are never profiled
            times, stats, extra = await one_repeat(work, None)
            runs.append(times)
        print_tables(work, runs, stats, extra["file_settings"])
        if args.cdc_txns > 0:
            cdc_runs = [await cdc_repeat(args.cdc_txns) for _ in range(args.repeat)]
            print_cdc_table(args.cdc_txns, cdc_runs)
    print_encryption([await encryption_repeat(work, i) for i in range(args.repeat)])
    if args.profile and not args.encryption_only:
        _, _, extra = await one_repeat(work, args.profile)  # one extra, profiled run
        print(f"\ncProfile of datasync phase {args.profile!r} (extra run; functions in "
              "datasync/, by cumulative time):\n```")
        st = pstats.Stats(extra["profiler"], stream=sys.stdout)
        st.sort_stats("cumulative").print_stats(r"datasync[/\\]", 15)
        print("```")


if __name__ == "__main__":
    asyncio.run(main())
