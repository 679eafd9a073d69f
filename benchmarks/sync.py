"""Sync benchmark: a real sync server process and native replicas, as a markdown table.

Usage::

    python benchmarks/sync.py                 # 100 commits timed, 1,000-row bootstrap, 1,000-commit catch-up
    python benchmarks/sync.py --commits 30 --catch-up 200 --json

What it measures (one run, side by side; a server started here on a free port,
``python -m datasync server``, its data in a temporary directory):

* **push round trip**: one single-row INSERT sent by a replica (``execute``): the
  push alone (the server applies it, makes it durable and answers), and the whole
  online write, which also pulls until the copy holds it (read-your-writes);
* **pull latency** after a primary commit: a second replica long-polls
  (``sync_interval=30``); from the moment the writer's push is answered to the
  moment the follower's ``on_change`` fires (p50/p95);
* **bytes on the wire** per one-row commit (the follower's pull reply, as received:
  gzip-compressed by the server) and per 1,000-row bootstrap, against the size of
  the database image itself (what copying the whole file, as IDBFS does, moves);
* **catch-up** of N commits made while a replica was closed: one pull, its time and
  bytes, against a bootstrap of the same database.

Figures are medians / percentiles of this run on this machine; nothing is asserted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import datasync  # noqa: E402
from datasync.sync.pushing import new_entry  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, data: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATASYNC_SECRET": secrets.token_hex(32)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "datasync", "server", "--data", data, "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise SystemExit(f"the server exited: {self.proc.stderr.read().decode()}")
                time.sleep(0.05)
        raise SystemExit("the server did not start in 30 s")

    def token(self, name: str) -> str:
        out = subprocess.run([sys.executable, "-m", "datasync", "token", "--database", name],
                             env=self.env, capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def kb(n: float) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n:.0f} B"


async def run(args: argparse.Namespace, server: Server, tmp: str) -> dict[str, object]:
    name = "bench"
    token = server.token(name)

    async def replica(label: str, **options: object) -> object:
        options.setdefault("sync_interval", 0)
        return await datasync.open(os.path.join(tmp, f"{label}.dsdb"),
                                   sync_url=f"{server.url}/{name}", auth_token=token, **options)

    writer = await replica("writer")
    await writer.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    follower = await replica("follower", sync_interval=30)
    seen: asyncio.Queue[float] = asyncio.Queue()
    follower.on_change(lambda change: seen.put_nowait(time.perf_counter()))
    await asyncio.sleep(0.3)
    while not seen.empty():
        seen.get_nowait()

    push_only, online_write, pull_latency, wire = [], [], [], []
    counters = follower.transport.counters
    for k in range(args.commits):
        entry = new_entry([("INSERT INTO notes(body) VALUES (?)",
                            (f"note {k} " + secrets.token_hex(30),))], time.time())
        before = counters["bytes_received"]
        t0 = time.perf_counter()
        await writer.send([entry])
        t1 = time.perf_counter()
        push_only.append(t1 - t0)
        t_seen = await asyncio.wait_for(seen.get(), 30)
        pull_latency.append(max(0.0, t_seen - t1))
        await asyncio.sleep(0.05)   # the follower's reply is counted once its pull ends
        while not seen.empty():
            seen.get_nowait()
        wire.append(counters["bytes_received"] - before)
        t0 = time.perf_counter()
        await writer.execute("INSERT INTO notes(body) VALUES (?)", (f"rw {k}",))
        online_write.append(time.perf_counter() - t0)
        await asyncio.wait_for(seen.get(), 30)
    await follower.close()

    # a 1,000-row bootstrap
    await writer.executemany("INSERT INTO notes(body) VALUES (?)",
                             [(f"bulk {i} " + secrets.token_hex(40),) for i in range(args.rows)])
    image = len(await writer.export())

    async def bootstrap(label: str) -> tuple[float, int]:
        """A new replica's open (its first pull): seconds, and bytes received."""
        t0 = time.perf_counter()
        fresh = await replica(label)
        seconds = time.perf_counter() - t0
        received = fresh.transport.counters["bytes_received"]
        await fresh.close()
        return seconds, received

    boot_time, boot_bytes = await bootstrap("fresh")

    # catch-up of N commits made while a replica was closed
    lagging = await replica("lagging")
    await lagging.close()
    for i in range(args.catch_up):
        await writer.queue_write("UPDATE notes SET body = ? WHERE id = ?",
                                 (f"edit {i}", 1 + i % (args.rows + 2 * args.commits)))
    await writer.push()
    lagging = await replica("lagging", offline=True)
    lagging.set_offline(False)
    t0 = time.perf_counter()
    await lagging.pull()
    catch_time = time.perf_counter() - t0
    catch_bytes = lagging.transport.counters["bytes_received"]
    await lagging.close()
    image_after = len(await writer.export())
    boot2_time, boot2_bytes = await bootstrap("again")
    await writer.close()
    return {
        "commits": args.commits, "rows": args.rows, "catch_up": args.catch_up,
        "push_p50": statistics.median(push_only), "push_p95": pct(push_only, 0.95),
        "write_p50": statistics.median(online_write), "write_p95": pct(online_write, 0.95),
        "pull_p50": statistics.median(pull_latency), "pull_p95": pct(pull_latency, 0.95),
        "wire_commit_p50": statistics.median(wire), "image_bytes": image,
        "boot_time": boot_time, "boot_bytes": boot_bytes,
        "catch_time": catch_time, "catch_bytes": catch_bytes,
        "boot2_time": boot2_time, "boot2_bytes": boot2_bytes, "image_after": image_after,
    }


def report(r: dict[str, object]) -> str:
    f = r  # type: ignore[assignment]
    lines = [
        f"datasync {datasync.__version__ if hasattr(datasync, '__version__') else ''} sync "
        f"benchmark | {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} | loopback HTTP",
        "",
        "| measure | p50 | p95 | compared with |",
        "|---|---:|---:|---|",
        f"| push round trip, one single-row write | {ms(f['push_p50'])} | {ms(f['push_p95'])} | |",
        f"| online write with read-your-writes (push + pull) | {ms(f['write_p50'])} | "
        f"{ms(f['write_p95'])} | {f['write_p50'] / f['push_p50']:.2f}x the push alone |",
        f"| pull latency after a primary commit (long poll) | {ms(f['pull_p50'])} | "
        f"{ms(f['pull_p95'])} | |",
        "",
        "| transfer | time | bytes on the wire | compared with the image |",
        "|---|---:|---:|---:|",
        f"| one single-row commit, pulled | | {kb(f['wire_commit_p50'])} | "
        f"{f['wire_commit_p50'] / f['image_bytes']:.4f}x of {kb(f['image_bytes'])} |",
        f"| bootstrap, {f['rows']:,} rows (+{2 * f['commits']} notes) | {ms(f['boot_time'])} | "
        f"{kb(f['boot_bytes'])} | {f['boot_bytes'] / f['image_bytes']:.2f}x of {kb(f['image_bytes'])} |",
        f"| catch-up of {f['catch_up']:,} commits, one pull | {ms(f['catch_time'])} | "
        f"{kb(f['catch_bytes'])} | {f['catch_bytes'] / f['image_after']:.2f}x of "
        f"{kb(f['image_after'])} |",
        f"| bootstrap of that same database | {ms(f['boot2_time'])} | {kb(f['boot2_bytes'])} | "
        f"{f['boot2_bytes'] / f['image_after']:.2f}x |",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--commits", type=int, default=100, help="single-row commits timed")
    p.add_argument("--rows", type=int, default=1000, help="rows of the bootstrap")
    p.add_argument("--catch-up", type=int, default=1000, help="commits of the catch-up")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = Server(os.path.join(tmp, "server"))
        try:
            result = asyncio.run(run(args, server, tmp))
        finally:
            server.stop()
    print(report(result))
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
