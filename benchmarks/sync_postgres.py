"""Sync server on PostgreSQL: push throughput and pull latency against the file server.

Usage::

    python benchmarks/sync_postgres.py               # about 1.5 minutes on 2 cores
    python benchmarks/sync_postgres.py --quick       # a smoke run: a few writes each
    python benchmarks/sync_postgres.py --writes 1000 --json out.json   # (--json alone: stdout)

Three setups, measured side by side in one run (``python -m datasync server``
processes on free ports; a throw-away PostgreSQL cluster started here with
``tests/pg_cluster.py``, one PostgreSQL database per setup):

* **file**: one server, ``--data DIR`` (the baseline: ratios are against it);
* **pg x1**: one server, ``--postgres DSN``;
* **pg x2**: two servers on the same ``--postgres DSN``, the clients spread over both.

What it measures:

* **push throughput**: N concurrent HTTP clients (asyncio, one httpx connection each)
  each pushing single-row INSERTs, one write per push, a fixed number of writes in
  all: to ONE database (4 and 16 clients), and spread over 4 databases (16 clients;
  for pg x2, every database gets clients on both processes, and once more with each
  database pinned to one process, as a router sharding by name would do). Total
  writes/s, and the push round trip p50/p95. A 503 is sent again (same write id,
  so it is applied once), as a replica would, and counted by its error's name.
* **what PostgreSQL saw** per phase (from ``pg_stat_database`` once the server
  processes have exited, so every backend has reported): transactions committed and
  rolled back per write. A flush that loses the version race to another process is
  one rolled-back transaction (``SELECT ... FOR UPDATE``, version check, refused),
  so ``xact_rollback`` counts races lost at flush time (the server keeps its own
  count, ``Primaries.races_lost``, but does not publish it). Also WAL bytes
  (``pg_current_wal_lsn``) and database growth (``pg_database_size``) per write,
  and the connections each server process holds.
* **pull latency**: a follower long-polls (``wait=30``) through server Y while a
  writer pushes one row through server X; from the push's answer to the poll's
  answer, p50/p95. For pg x2, X and Y are different processes: the commit reaches
  Y as a PostgreSQL ``NOTIFY`` (LISTEN/NOTIFY), then Y loads it from PostgreSQL.

Each phase runs on freshly started server processes (opening every database and one
warm-up push per client first, untimed). The load generator is this process, on the
same machine as the servers and PostgreSQL: on a small machine they share the CPUs,
which the report states. Figures are of this run; nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

import httpx  # noqa: E402
from psycopg.conninfo import make_conninfo  # noqa: E402

from datasync.sync import protocol  # noqa: E402


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


pg_cluster = _load("pg_cluster", ROOT / "tests" / "pg_cluster.py")
server_process = _load("server_process", ROOT / "tests" / "sync" / "server_process.py")


#: Why pushes were answered 503 in this run (error name: count), for the report.
reasons: dict[str, int] = {}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


# -- the setups ---------------------------------------------------------------------
class Setup:
    """``processes`` server processes on one place: files (``dsn`` None) or the
    PostgreSQL database ``dsn``."""

    def __init__(self, key: str, label: str, directory: Path, processes: int,
                 dsn: str | None, pg_db: str | None) -> None:
        self.key, self.label = key, label
        self.directory, self.processes = directory, processes
        self.dsn, self.pg_db = dsn, pg_db
        self.secret = secrets.token_hex(32)
        self.servers: list[Any] = []
        self._headers: dict[str, dict[str, str]] = {}

    def start(self) -> None:
        self.servers = [server_process.SyncServer(self.directory / f"s{i}" / "data",
                                                  secret=self.secret, postgres=self.dsn)
                        for i in range(self.processes)]
        errors: list[BaseException] = []

        def start(server: Any) -> None:
            try:
                server.start(timeout=60)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        threads = [threading.Thread(target=start, args=(s,)) for s in self.servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]

    def stop(self) -> None:
        for server in self.servers:
            server.close()  # SIGKILL: a graceful shutdown only costs time here
        self.servers = []

    def url(self, server: int, db: str, what: str) -> str:
        return f"{self.servers[server].url}{protocol.API_PREFIX}/{db}/{what}"

    def headers(self, db: str) -> dict[str, str]:
        if db not in self._headers:
            self._headers[db] = self.servers[0].headers(db)
        return self._headers[db]


class PgStats:
    """Counters of one PostgreSQL database, read through a connection of its own."""

    def __init__(self, admin_dsn: str) -> None:
        import psycopg

        self.conn = psycopg.connect(admin_dsn, autocommit=True)

    def create_database(self, name: str) -> None:
        self.conn.execute(f'CREATE DATABASE "{name}"')

    def backends(self, db: str) -> int:
        return int(self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
            "AND backend_type = 'client backend'", (db,)).fetchone()[0])

    def now(self) -> Any:
        return self.conn.execute("SELECT clock_timestamp()").fetchone()[0]

    def end_connections(self, db: str, since: Any, timeout: float = 15.0) -> None:
        """End the server connections to ``db`` opened since ``since``, but the
        LISTEN ones (or one about to LISTEN: no query yet), and wait until their
        backends are gone (having reported)."""
        pids = [pid for (pid,) in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_start >= %s "
            "AND backend_type = 'client backend' "
            "AND query <> '' AND query NOT ILIKE 'LISTEN%%'",
            (db, since)).fetchall()]
        for pid in pids:
            self.conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                (pids,)).fetchone()[0]:
            time.sleep(0.02)

    def stored(self, dsn: str, stores: list[str]) -> int:
        """Bytes of block data PostgreSQL holds for ``stores`` (current blocks and
        retained history), as stored (``pg_column_size``: after TOAST compression)."""
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            return int(conn.execute(
                "SELECT coalesce(sum(n), 0) FROM ("
                " SELECT sum(pg_column_size(data)) AS n FROM datasync_blocks WHERE store = ANY(%s)"
                " UNION ALL"
                " SELECT sum(pg_column_size(data)) FROM datasync_history WHERE store = ANY(%s)) s",
                (stores, stores)).fetchone()[0])

    def snapshot(self, db: str) -> dict[str, int]:
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        row = self.conn.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
            "pg_database_size(datname), pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') "
            "FROM pg_stat_database WHERE datname = %s", (db,)).fetchone()
        keys = ("commit", "rollback", "inserted", "updated", "deleted", "size", "wal")
        return {k: int(v) for k, v in zip(keys, row)}

    def close(self) -> None:
        self.conn.close()


class CpuMeter:
    """CPU seconds (user + system, from ``/proc``) spent during a phase by the
    server processes, and by every process of the local
    PostgreSQL cluster (``postmaster`` pid: None for a given ``--pg-dsn``): a cost per
    write that holds whatever else the machine is doing. Linux only (else None)."""

    TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def __init__(self, setup: Setup, postmaster: int | None) -> None:
        self.servers = [int(s._proc.pid) for s in setup.servers]
        self.postmaster = postmaster
        self.before = self._sample()

    @classmethod
    def _stat(cls, pid: int) -> tuple[int, float] | None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[1]), (int(fields[11]) + int(fields[12])) / cls.TICK  # ppid, cpu

    def _sample(self) -> dict[str, Any]:
        pg: dict[int, float] = {}
        if self.postmaster is not None and os.path.isdir("/proc"):
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    st = self._stat(int(entry))
                    if st and (st[0] == self.postmaster or int(entry) == self.postmaster):
                        pg[int(entry)] = st[1]
        servers = {pid: (self._stat(pid) or (0, 0.0))[1] for pid in self.servers}
        return {"servers": servers, "pg": pg}

    def stop(self) -> dict[str, float | None]:
        """CPU seconds since this meter was made: servers, postgres."""
        after, before = self._sample(), self.before
        return {
            "servers": sum(v - before["servers"].get(p, 0.0) for p, v in after["servers"].items()),
            "pg": (sum(v - before["pg"].get(p, 0.0) for p, v in after["pg"].items())
                   if self.postmaster is not None else None),
        }


# -- push throughput ----------------------------------------------------------------
def new_write(k: int) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "statements": [
        ["INSERT INTO t(body) VALUES (?)", [f"row {k} " + secrets.token_hex(24)]]]}


async def push(client: httpx.AsyncClient, setup: Setup, server: int, db: str,
               write: dict[str, Any], counts: dict[str, int]) -> int:
    """Push one write until it is answered 200 (a 503 is sent again, the same id);
    returns the version that holds it."""
    body = {"writes": [write]}
    for _ in range(100):
        resp = await client.post(setup.url(server, db, "push"), json=body,
                                 headers=setup.headers(db))
        if resp.status_code == 200:
            (result,) = resp.json()["results"]
            if "ok" not in result:
                raise RuntimeError(f"write refused: {result}")
            return int(resp.json()["version"])
        if resp.status_code != 503:
            raise RuntimeError(f"push answered {resp.status_code}: {resp.text}")
        counts["resent_503"] += 1
        try:
            reason = str(resp.json()["error"]["name"])
        except (ValueError, KeyError, TypeError):
            reason = "?"
        reasons[reason] = reasons.get(reason, 0) + 1
        await asyncio.sleep(0.05)
    raise RuntimeError("a write was refused with 503 100 times")


async def create_tables(setup: Setup, dbs: list[str]) -> None:
    """Make each database's table (through server 0), then open each database in
    every process (a push each) so that opening is not timed."""
    counts = {"resent_503": 0}
    async with httpx.AsyncClient(timeout=60) as client:
        for db in dbs:
            await push(client, setup, 0, db, {"id": uuid.uuid4().hex, "statements": [
                ["CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT)", []]]},
                counts)
            for server in range(setup.processes):
                await push(client, setup, server, db, new_write(-1), counts)


async def push_phase(setup: Setup, dbs: list[str], clients: int, writes: int,
                     pinned: bool) -> dict[str, Any]:
    """``clients`` concurrent clients; client i on database d = ``i % len(dbs)``, the
    j-th (``i // len(dbs)``) of that database's clients, through server ``(d + j) %
    processes`` (spread: a database's clients alternate between the processes) or,
    ``pinned``, through server ``d % processes``."""
    await create_tables(setup, dbs)
    counts = {"resent_503": 0}
    share = [writes // clients + (1 if i < writes % clients else 0) for i in range(clients)]
    latencies: list[float] = []
    start = asyncio.Event()

    def route(i: int) -> tuple[int, str]:
        d, j = i % len(dbs), i // len(dbs)
        server = (d if pinned else d + j) % setup.processes
        return server, dbs[d]

    async def client_loop(i: int, client: httpx.AsyncClient) -> None:
        server, db = route(i)
        await push(client, setup, server, db, new_write(-2), counts)  # warm-up
        ready.append(i)
        if len(ready) == clients:
            start.set()
        await start.wait()
        for k in range(share[i]):
            t0 = time.perf_counter()
            await push(client, setup, server, db, new_write(k), counts)
            latencies.append(time.perf_counter() - t0)

    ready: list[int] = []
    # one connection pool: each client's requests go one at a time, so each client
    # holds one connection of its own
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as pool:
        tasks = [asyncio.create_task(client_loop(i, pool)) for i in range(clients)]
        await start.wait()
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*tasks)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"writes": writes, "clients": clients, "databases": len(dbs), "pinned": pinned,
            "seconds": elapsed, "writes_per_s": writes / elapsed,
            "push_p50": statistics.median(latencies), "push_p95": pct(latencies, 0.95),
            "resent_503": counts["resent_503"], "client_cpu_ms_per_write": 1000 * cpu / writes,
            # every write pushed in this phase, warm-ups and table creation included
            "pushed": writes + clients + len(dbs) * (1 + setup.processes)}


# -- pull latency -------------------------------------------------------------------
async def latency_phase(setup: Setup, db: str, commits: int, writer: int,
                        follower: int) -> dict[str, Any]:
    """Push one row through server ``writer`` while a long poll waits on server
    ``follower``; from the push's answer to the poll's answer."""
    await create_tables(setup, [db])
    counts = {"resent_503": 0}
    headers = setup.headers(db)
    lat: list[float] = []
    async with httpx.AsyncClient(timeout=60) as wc, httpx.AsyncClient(timeout=60) as fc:
        async def poll(since: int) -> int:
            resp = await fc.post(setup.url(follower, db, "pull"),
                                 json={"since": since, "wait": 30}, headers=headers)
            resp.raise_for_status()
            return protocol.decode_pull_reply(resp.content).version

        version = await poll(0)
        for k in range(commits):
            waiting = asyncio.create_task(poll(version))
            await asyncio.sleep(0.03)  # the poll is parked on the server
            pushed = await push(wc, setup, writer, db, new_write(k), counts)
            t1 = time.perf_counter()
            seen = await waiting
            while seen < pushed:  # woken by something older: wait on
                seen = await poll(seen)
            lat.append(max(0.0, time.perf_counter() - t1))
            version = seen
    return {"commits": commits, "writer": writer, "follower": follower,
            "pull_p50": statistics.median(lat), "pull_p95": pct(lat, 0.95),
            "pull_max": max(lat), "pushed": commits + 1 + setup.processes}


# -- one setup, phase by phase ------------------------------------------------------
def with_pg_figures(result: dict[str, Any], before: dict[str, int], after: dict[str, int],
                    connections: int, processes: int) -> None:
    n = result["pushed"]
    delta = {k: after[k] - before[k] for k in after}
    result.update({
        "pg_commits_per_write": delta["commit"] / n,
        "pg_rollbacks": delta["rollback"],
        "pg_rows_written_per_write": (delta["inserted"] + delta["updated"]
                                      + delta["deleted"]) / n,
        "pg_wal_bytes_per_write": delta["wal"] / n,
        "pg_growth_bytes_per_write": delta["size"] / n,
        "pg_connections": connections,
        "pg_connections_per_process": connections / processes,
    })


def run_setup(setup: Setup, stats: PgStats | None, args: argparse.Namespace,
              log: Any, postmaster: int | None) -> dict[str, Any]:
    """Every phase of ``setup``, on one start of its processes; each phase on
    databases of its own. For a PostgreSQL setup, what PostgreSQL counted during
    each push phase: its databases' connections are ended once it is over (each
    server process holds one connection per open database, plus one that
    LISTENs), so that their backends report as they exit (PostgreSQL 15 backends
    report at most once a second while busy, maybe 10 s later once idle), and the
    counters are read before and after."""
    phases: list[tuple[str, int, int, bool]] = [
        (f"1db_c{c}", c, 1, False) for c in args.clients]
    phases.append((f"{args.databases}db_c{args.clients[-1]}", args.clients[-1],
                   args.databases, False))
    if setup.processes > 1:
        phases.append((f"{args.databases}db_c{args.clients[-1]}_pinned", args.clients[-1],
                       args.databases, True))
    routes = [("same", 0, 0)] + ([("cross", 0, 1)] if setup.processes > 1 else [])
    out: dict[str, Any] = {"label": setup.label, "processes": setup.processes,
                           "push": {}, "pull": {}}
    log(f"{setup.label}: starting {setup.processes} server process(es)")
    setup.start()
    try:
        # untimed: the processes' first requests, and PostgreSQL's tables made
        since = stats.now() if stats else None
        asyncio.run(create_tables(setup, ["warm-up"]))
        if stats:
            stats.end_connections(setup.pg_db, since)
        for key, clients, ndb, pinned in phases:
            dbs = [f"{key}-{i}".replace("_", "-") for i in range(ndb)]
            if stats:
                since = stats.now()
                before = stats.snapshot(setup.pg_db)
            meter = CpuMeter(setup, postmaster if stats else None)
            r = asyncio.run(push_phase(setup, dbs, clients, args.writes, pinned))
            cpu = meter.stop()
            r["cpu_ms_per_write"] = {k: None if v is None else 1000 * v / r["pushed"]
                                     for k, v in cpu.items()}
            r["cpu_ms_per_write"]["clients"] = r["client_cpu_ms_per_write"]
            if stats:
                connections = stats.backends(setup.pg_db)
                stats.end_connections(setup.pg_db, since)
                with_pg_figures(r, before, stats.snapshot(setup.pg_db), connections,
                                setup.processes)
                r["pg_stored_bytes_per_write"] = stats.stored(setup.dsn, dbs) / r["pushed"]
            out["push"][key] = r
            log(f"{setup.label}: push, {key}: {r['writes_per_s']:.0f} writes/s"
                + (f", {r['pg_rollbacks']} races lost" if "pg_rollbacks" in r else ""))
        for key, writer, follower in routes:
            r = asyncio.run(latency_phase(setup, f"latency-{key}", args.commits, writer,
                                          follower))
            out["pull"][key] = r
            log(f"{setup.label}: pull latency, {key}: p50 {r['pull_p50'] * 1000:.1f} ms")
    finally:
        setup.stop()
    return out


# -- the report ---------------------------------------------------------------------
def report(result: dict[str, Any]) -> str:
    setups = result["setups"]
    base = setups["file"]
    keys = list(setups["pg2"]["push"]) if "pg2" in setups else list(base["push"])

    def phase_label(k: str) -> str:
        r = next(s["push"][k] for s in setups.values() if k in s["push"])
        what = f"{r['databases']} database{'s' if r['databases'] > 1 else ''}"
        return f"{what}, {r['clients']} clients" + (", pinned" if r["pinned"] else "")

    lines = [
        f"datasync sync server on PostgreSQL {result['pg_version']} | {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f} | loopback HTTP; clients, servers and PostgreSQL "
        "share the machine",
        f"{result['writes']} single-row writes per push phase (one write per push); "
        f"{result['commits']} commits per latency phase",
        "",
        "| push throughput (writes/s) | " + " | ".join(s["label"] for s in setups.values())
        + " | " + " | ".join(f"{s['label']} / file" for k, s in setups.items() if k != "file")
        + " |",
        "|---|" + "---:|" * (2 * len(setups) - 1),
    ]
    for k in keys:
        cells, ratios = [], []
        for name, s in setups.items():
            r = s["push"].get(k)
            cells.append(f"{r['writes_per_s']:.0f}" if r else "")
            if name != "file":
                b = base["push"].get(k) or base["push"].get(k.replace("_pinned", ""))
                ratios.append(f"{r['writes_per_s'] / b['writes_per_s']:.2f}x" if r and b else "")
        lines.append(f"| {phase_label(k)} | " + " | ".join(cells + ratios) + " |")
    lines += ["", "| push round trip p50 / p95 (ms) | "
              + " | ".join(s["label"] for s in setups.values()) + " |",
              "|---|" + "---:|" * len(setups)]
    for k in keys:
        cells = []
        for s in setups.values():
            r = s["push"].get(k)
            cells.append(f"{r['push_p50'] * 1000:.1f} / {r['push_p95'] * 1000:.1f}" if r else "")
        lines.append(f"| {phase_label(k)} | " + " | ".join(cells) + " |")
    lines += ["", "| CPU ms per write (clients, timed part / server processes / "
              "PostgreSQL, all of it) | "
              + " | ".join(s["label"] for s in setups.values()) + " |",
              "|---|" + "---:|" * len(setups)]

    def cpu(r: dict[str, Any] | None) -> str:
        if not r:
            return ""
        c = r["cpu_ms_per_write"]
        return " / ".join("-" if c[k] is None else f"{c[k]:.1f}"
                          for k in ("clients", "servers", "pg"))
    for k in keys:
        lines.append(f"| {phase_label(k)} | "
                     + " | ".join(cpu(s["push"].get(k)) for s in setups.values()) + " |")
    pg = {k: s for k, s in setups.items() if k != "file"}
    if pg:
        lines += ["", "| PostgreSQL side, per write | "
                  + " | ".join(f"{s['label']}: {phase_label(k)}" for s in pg.values()
                               for k in keys if k in s["push"]) + " |",
                  "|---|" + "---:|" * sum(len(s["push"]) for s in pg.values())]
        rows = [("version races lost (PG rollbacks, whole phase)", "pg_rollbacks", "{:.0f}"),
                ("pushes answered 503 (resent; reasons below)", "resent_503", "{:.0f}"),
                ("PG transactions committed", "pg_commits_per_write", "{:.1f}"),
                ("PG rows written (ins+upd+del)", "pg_rows_written_per_write", "{:.1f}"),
                ("WAL bytes", "pg_wal_bytes_per_write", "{:,.0f}"),
                ("database growth (pg_database_size), bytes", "pg_growth_bytes_per_write",
                 "{:,.0f}"),
                ("block bytes stored at the end (blocks + history)",
                 "pg_stored_bytes_per_write", "{:,.0f}"),
                ("PG connections per server process", "pg_connections_per_process", "{:.1f}")]
        for label, field, fmt in rows:
            lines.append(f"| {label} | " + " | ".join(
                fmt.format(s["push"][k][field]) for s in pg.values()
                for k in keys if k in s["push"]) + " |")
    lines += ["", "| pull latency after a push (long poll) | p50 | p95 | max | p50 / file |",
              "|---|---:|---:|---:|---:|"]
    b50 = base["pull"]["same"]["pull_p50"]
    for s in setups.values():
        for k, r in s["pull"].items():
            where = ("push and poll on one process" if k == "same"
                     else "push via process A, poll on B (NOTIFY)")
            lines.append(f"| {s['label']}: {where} | {r['pull_p50'] * 1000:.1f} ms | "
                         f"{r['pull_p95'] * 1000:.1f} ms | {r['pull_max'] * 1000:.1f} ms | "
                         f"{r['pull_p50'] / b50:.2f}x |")
    if result.get("reasons_503"):
        lines += ["", "503 answers (resent, same write id): " + ", ".join(
            f"{n} {name}" for name, n in sorted(result["reasons_503"].items()))]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--writes", type=int, default=600, help="writes per push phase")
    p.add_argument("--clients", type=int, nargs="+", default=[4, 16],
                   help="concurrent clients of the one-database phases (the last one "
                        "also for the several-database phase)")
    p.add_argument("--databases", type=int, default=4, help="databases of the spread phase")
    p.add_argument("--commits", type=int, default=50, help="commits timed for pull latency")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 24 writes per phase, 8 clients, 5 commits")
    p.add_argument("--pg-dsn", metavar="DSN",
                   help="a running PostgreSQL to measure instead of a throw-away cluster: "
                        "a role that may CREATE DATABASE (two databases are made for the "
                        "run, then dropped)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="also write the figures as JSON to PATH (no PATH: stdout)")
    args = p.parse_args()
    if args.quick:
        args.writes, args.clients, args.commits = 24, [8], 5
    if args.pg_dsn is None and pg_cluster.find_bin_dir() is None:
        raise SystemExit(pg_cluster.MISSING)

    began = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - began:5.1f} s] {message}", file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="datasync-bench-pg-"))
    cluster = None
    stats: PgStats | None = None
    suffix = secrets.token_hex(3)
    made: list[str] = []
    try:
        t0 = time.monotonic()
        if args.pg_dsn is None:
            cluster = pg_cluster.PgCluster(tempfile.mkdtemp(prefix="datasync-bench-pgdata-"))
            cluster.start()
        admin_dsn = args.pg_dsn or cluster.dsn
        postmaster = (int((cluster.data / "postmaster.pid").read_text().split()[0])
                      if cluster else None)
        stats = PgStats(admin_dsn)
        pg_version = stats.conn.execute("SHOW server_version").fetchone()[0]
        log(f"PostgreSQL {pg_version} " + (f"started in {time.monotonic() - t0:.1f} s"
                                           if cluster else "(given)"))
        setups = {"file": Setup("file", "file", tmp / "file", 1, None, None)}
        for key, label, n in (("pg1", "pg x1", 1), ("pg2", "pg x2", 2)):
            name = f"datasync_bench_{key}_{suffix}"
            stats.create_database(name)
            made.append(name)
            dsn = make_conninfo(admin_dsn, dbname=name)
            setups[key] = Setup(key, label, tmp / key, n, dsn, name)
        result: dict[str, Any] = {"pg_version": pg_version, "writes": args.writes,
                                  "clients": args.clients, "databases": args.databases,
                                  "commits": args.commits, "cpus": os.cpu_count(),
                                  "quick": args.quick, "setups": {}}
        for key, setup in setups.items():
            result["setups"][key] = run_setup(setup, None if key == "file" else stats,
                                              args, log, postmaster)
        result["load"] = os.getloadavg()[0]
        result["reasons_503"] = reasons
        result["seconds"] = time.monotonic() - t0
    finally:
        if stats is not None:
            for name in made:
                with contextlib.suppress(Exception):
                    stats.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            stats.close()
        if cluster is not None:
            cluster.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    print(report(result))
    if args.json == "-":
        print(json.dumps(result, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
