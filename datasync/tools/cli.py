"""Command line: inspect, export and import stores, and run SQL on them.

Example::

    python -m datasync sql app.dsdb "CREATE TABLE t(x)" "INSERT INTO t VALUES (1)"
    python -m datasync inspect app.dsdb
    python -m datasync export app.dsdb copy.sqlite     # a standard SQLite file
    python -m datasync import copy.sqlite other.dsdb
    python -m datasync build                           # the web folder (Pyodide + wheels)
    python -m datasync serve [--coop-coep]             # serve js/, demo/, web/ locally
    python -m datasync serve --root myapp              # myapp/ at /, with /js/ and /web/
    python -m datasync server --data DIR               # the sync server (datasync.server)
    python -m datasync token --database NAME           # a bearer token for it
    python -m datasync migrate app.dsdb migrations/    # NNNN_name.sql files (migrate_cli)
    python -m datasync migrations app.dsdb migrations/ # applied and pending

Errors users can act on print one line (``error: ...``) and exit with status 2.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from .. import open as open_database
from ..backends.sqlitefile import SqliteFileBackend
from ..errors import (
    BackupTargetError,
    CorruptBlockError,
    DatasyncError,
    NotASQLiteImageError,
    StoreNotFoundError,
)
from ..format import MAIN, Codec, Meta
from ..sqlite_image import as_rollback_image
from ..server import cli as server_cli
from . import migrate_cli, replica_cli
from . import build, serve

#: Modules adding commands of their own (``add_subcommands``/``run_subcommand``):
#: the sync server's ``server`` and ``token``, a native replica's ``replica``,
#: ``migrate`` and ``migrations``.
_EXTENSIONS = (server_cli, replica_cli, migrate_cli)


async def inspect_store(path: str, *, verify: bool = False) -> dict[str, Any]:
    """Describe a store without changing it: format, block size, version, blocks, size.

    Example: ``info = await inspect_store("app.dsdb", verify=True)``
    """
    backend = SqliteFileBackend(path)
    meta = await backend.open(Meta.new(), create=False)
    try:
        records = await backend.read_all(MAIN)
        info: dict[str, Any] = {
            "path": backend.path,
            "format_version": meta.format_version,
            "block_size": meta.block_size,
            "version": meta.version,
            "file_size": meta.file_size,
            "blocks": meta.block_count,
            "stored_blocks": len(records),
            "db_id": meta.db_id,
            "store_bytes": os.path.getsize(backend.path),
            # the versions Database.restore() can return to (retain_versions=N)
            "restorable_versions": [m.version for m in await backend.retained(MAIN)],
        }
        if verify:
            codec, bad = Codec(), []
            for idx, rec in sorted(records.items()):
                try:
                    codec.decode(MAIN, idx, rec, where=backend.location)
                except CorruptBlockError:
                    bad.append(idx)
            info["corrupt_blocks"] = bad
        return info
    finally:
        await backend.close()


def _write_atomically(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".datasync-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


async def export_store(path: str, out: str) -> int:
    """Write the store's database to ``out`` as a standard SQLite file; returns bytes."""
    if not os.path.exists(path):
        raise StoreNotFoundError(f"no store at {path!r}: check the path")
    db = await open_database(path, create=False)
    try:
        data = await db.export()
    finally:
        await db.close()
    _write_atomically(out, data)
    return len(data)


async def import_file(source: str, path: str, *, replace: bool = False) -> int:
    """Load a standard SQLite file into a store (created if missing); returns the
    durable version. An existing non-empty store is replaced only with ``replace``."""
    if not os.path.exists(source):
        raise StoreNotFoundError(f"no file at {source!r}: check the path")
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            image = src.serialize()  # reads through a WAL file, if any
        finally:
            src.close()
    except sqlite3.DatabaseError as exc:
        raise NotASQLiteImageError(
            f"{source!r} is not a readable SQLite database ({exc}); export it with "
            "sqlite3's .backup first") from exc
    image = as_rollback_image(image)
    db = await open_database(path)
    try:
        if db.stats()["file_size"] and not replace:
            raise BackupTargetError(
                f"the store {path!r} already holds a database; pass --replace to "
                "replace it (atomically) or choose a new store path"
            )
        await db.import_(image)
        return await db.sync()
    finally:
        await db.close()


async def run_sql(path: str, statements: Sequence[str]) -> list[dict[str, Any]]:
    """Run statements on a store, each committed; returns the last one's rows."""
    db = await open_database(path)
    try:
        rows: list[dict[str, Any]] = []
        for sql in statements:
            rows = await db.query(sql)
        await db.sync()
        return rows
    finally:
        await db.close()


def add_subcommands(subparsers: Any) -> None:
    """``add_subcommands(parser.add_subparsers(dest="command"))``: add the browser
    bundle's commands, ``build`` and ``serve``, to an argparse subparsers object."""
    s = subparsers.add_parser("build", help="build the browser bundle (web/): Pyodide, wheels")
    s.add_argument("--out", default="web", help="output directory (default: web)")
    s = subparsers.add_parser("serve", help="serve the repository (demo, js, web) locally")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free)")
    s.add_argument("--coop-coep", action="store_true",
                   help="send COOP/COEP headers (cross-origin isolation: SharedArrayBuffer)")
    s.add_argument("--no-build", action="store_true",
                   help="do not (re)build web/ even if it is missing or stale")
    s.add_argument("--root", metavar="DIR",
                   help="serve DIR (e.g. your app) at / instead of the repository; "
                        "datasync's runtime stays at /web/ and /js/")
    s.add_argument("--out", default="web", help=argparse.SUPPRESS)
    s.add_argument("--verbose", action="store_true", help="log every request")


def run_subcommand(args: argparse.Namespace) -> int | None:
    """``status = run_subcommand(args)``: run ``build`` or ``serve`` if that is
    ``args.command`` and return the exit status; else return None."""
    command = getattr(args, "command", None)
    if command not in ("build", "serve"):
        return None
    try:
        if command == "build":
            manifest = build.build_web(args.out, quiet=False)
            print(f"{build.web_dir(args.out)}: {', '.join(manifest['wheels'].values())}")
            return 0
        if not args.no_build:
            reason = build.web_is_stale(args.out)
            if reason:
                print(f"building {args.out}/ ({reason})", file=sys.stderr, flush=True)
                build.build_web(args.out, quiet=False)
        root = getattr(args, "root", None)
        server = serve.serve(args.host, args.port, root=root or serve.REPO_ROOT,
                             coop_coep=args.coop_coep, verbose=args.verbose,
                             mounts=serve.runtime_mounts(build.web_dir(args.out)) if root else None)
    except (OSError, DatasyncError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    serve.run_until_stopped(server)
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m datasync", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    for extension in _EXTENSIONS:
        extension.add_subcommands(sub)
    s = sub.add_parser("inspect", help="show a store's format, block size, version and size")
    s.add_argument("store")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--verify", action="store_true", help="check every block's checksum")
    s = sub.add_parser("export", help="write a store's database as a standard SQLite file")
    s.add_argument("store")
    s.add_argument("out")
    s = sub.add_parser("import", help="load a standard SQLite file into a store")
    s.add_argument("source")
    s.add_argument("store")
    s.add_argument("--replace", action="store_true", help="replace a non-empty store")
    s = sub.add_parser("sql", help="run SQL statements on a store and print the rows")
    s.add_argument("store")
    s.add_argument("statements", nargs="+")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m datasync``; returns the exit status."""
    args = _parser().parse_args(argv)
    for run in (run_subcommand, *(e.run_subcommand for e in _EXTENSIONS)):
        status = run(args)
        if status is not None:
            return status
    try:
        if args.command == "inspect":
            info = asyncio.run(inspect_store(args.store, verify=args.verify))
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                width = max(len(k) for k in info)
                for k, v in info.items():
                    if isinstance(v, list):
                        v = ", ".join(map(str, v)) or "none"
                    print(f"{k:<{width}}  {v}")
            if info.get("corrupt_blocks"):
                return 1
        elif args.command == "export":
            n = asyncio.run(export_store(args.store, args.out))
            print(f"exported {n} bytes to {args.out}")
        elif args.command == "import":
            version = asyncio.run(import_file(args.source, args.store, replace=args.replace))
            print(f"imported {args.source} into {args.store} (version {version})")
        elif args.command == "sql":
            for row in asyncio.run(run_sql(args.store, args.statements)):
                print(json.dumps(row, default=repr))
    except (DatasyncError, sqlite3.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
