"""``python -m datasync migrate STORE DIR`` and ``migrations STORE [DIR]``: migrations
from a directory of SQL files.

Example::

    $ ls migrations/
    0001_notes.sql  0002_tags.sql
    $ cat migrations/0002_tags.sql
    CREATE TABLE tags(note INTEGER REFERENCES notes(id), tag TEXT);
    CREATE INDEX tags_note ON tags(note);
    -- down
    DROP TABLE tags;
    $ python -m datasync migrate app.dsdb migrations/             # all pending
    {"from": 0, "to": 2, "applied": [1, 2], "reverted": []}
    $ python -m datasync migrate app.dsdb migrations/ --target 1  # 2's down
    $ python -m datasync migrations app.dsdb migrations/          # applied and pending
    1  notes  applied  2026-12-01T03:14:22Z
    2  tags   pending

From Python: ``db.migrate(load_dir("migrations"))``. A file ``NNNN_name.sql``
gives version ``int(NNNN)`` and ``name``; a line ``-- down`` (any case, alone on
its line) ends the up and starts the down (none: the migration has no down, and
cannot be rolled back). The checksum is of the up part only
(:func:`datasync.app.migrations.checksum_of`). Files not ending in ``.sql`` and
hidden files are ignored. ``migrations`` prints one line per migration (``--json``:
the list :func:`datasync.app.migrations.status` returns); without DIR it lists what
the store recorded. Exit status 2 and one line ``error: <ErrorName>: ...`` for a bad
directory or file (:class:`~datasync.MigrationError`), a migration error (its
class: MigrationChecksumError...), a missing store (``migrations``) or a failing
statement.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import sys
import time
from typing import Any

from ..app.migrations import migrate, normalise, status
from ..database import open as open_database
from ..errors import DatasyncError, MigrationError, StoreNotFoundError

__all__ = ["load_dir", "parse_file", "add_subcommands", "run_subcommand"]

_FILE = re.compile(r"(\d+)_(.+)\.sql")
_DOWN = re.compile(r"^[ \t]*--[ \t]*down[ \t]*$", re.I | re.M)


def parse_file(filename: str, text: str) -> dict[str, Any]:
    """Example: ``parse_file("0002_tags.sql", text)`` ->
    ``{"version": 2, "name": "tags", "up": "...", "down": "..." | None}``

    Line endings are made LF first (CRLF, CR), so ``-- down`` splits whatever
    wrote the file. Raises MigrationError (a name not ``NNNN_name.sql``, version
    0, an empty up)."""
    found = _FILE.fullmatch(os.path.basename(filename))
    if found is None:
        raise MigrationError(f"{filename}: a migration file is named NNNN_name.sql "
                             "(e.g. 0001_create_notes.sql): rename it")
    version, name = int(found.group(1)), found.group(2)
    if version < 1:
        raise MigrationError(f"{filename}: versions start at 1: rename it NNNN_name.sql with NNNN >= 0001",
                             version=version)
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # '-- down' on any line end
    parts = _DOWN.split(text, maxsplit=1)
    up, down = parts[0], parts[1] if len(parts) > 1 else None
    if not up.strip():
        raise MigrationError(f"{filename}: no SQL before '-- down': write the up first",
                             version=version)
    return {"version": version, "name": name, "up": up,
            "down": down if down is not None and down.strip() else None}


def load_dir(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Example: ``await db.migrate(load_dir("migrations"))``

    The migrations of the ``*.sql`` files in ``path`` (see the module docstring),
    by version. Raises MigrationError: not a directory, no ``.sql`` file in it, a
    file that cannot be read as UTF-8, or one :func:`parse_file` refuses. Order (gaps, duplicates) is
    checked by ``migrate``/``status`` (MigrationOrderError)."""
    folder = os.fspath(path)
    try:
        names = sorted(n for n in os.listdir(folder)
                       if n.endswith(".sql") and not n.startswith("."))
    except OSError as exc:
        raise MigrationError(f"cannot list the migrations directory {folder!r} "
                             f"({exc.strerror or exc}): give a directory of NNNN_name.sql "
                             "files") from exc
    out = []
    for name in names:
        file = os.path.join(folder, name)
        try:
            with open(file, encoding="utf-8-sig") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise MigrationError(f"cannot read {file!r} as UTF-8 text ({exc}): fix or "
                                 "remove it") from exc
        out.append(parse_file(file, text))
    if not out:
        raise MigrationError(f"no NNNN_name.sql files in {folder!r}: give the directory "
                             "that holds the migrations (0001_create_notes.sql...)")
    return sorted(out, key=lambda m: m["version"])


def add_subcommands(subparsers: Any) -> None:
    """Add ``migrate`` and ``migrations`` to an argparse subparsers object."""
    s = subparsers.add_parser("migrate", help="apply (or, with a lower --target, revert) "
                                              "the migrations of a directory of SQL files")
    s.add_argument("store", help="the store file (created if missing)")
    s.add_argument("dir", help="a directory of NNNN_name.sql files ('-- down' sections)")
    s.add_argument("--target", type=int, help="the version to reach (default: the last; "
                                              "lower: run downs, 0: revert all)")
    s = subparsers.add_parser("migrations", help="list a store's applied migrations and, "
                                                 "with DIR, the pending ones")
    s.add_argument("store")
    s.add_argument("dir", nargs="?", help="a directory of NNNN_name.sql files")
    s.add_argument("--json", action="store_true", help="print JSON")


async def _migrate(args: argparse.Namespace) -> dict[str, Any]:
    migrations = load_dir(args.dir)
    normalise(migrations)  # its order errors too before the store is created
    db = await open_database(args.store)
    try:
        out = await migrate(db, migrations, target=args.target)
        await db.sync()
        return out
    finally:
        await db.close()


async def _status(args: argparse.Namespace) -> list[dict[str, Any]]:
    migrations = load_dir(args.dir) if args.dir is not None else []
    if not os.path.exists(args.store):
        raise StoreNotFoundError(f"no store at {args.store!r}: check the path (migrate "
                                 "creates one)")
    db = await open_database(args.store, create=False)
    try:
        return await status(db, migrations)
    finally:
        await db.close()


def _lines(rows: list[dict[str, Any]]) -> list[str]:
    width = max([len(r["name"]) for r in rows], default=0)
    out = []
    for r in rows:
        at = r["applied_at"]
        when = "" if at is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
        out.append(f"{r['version']:>4}  {r['name']:<{width}}  {r['state']:<7}  {when}".rstrip())
    return out


def run_subcommand(args: argparse.Namespace) -> int | None:
    """Run ``migrate`` or ``migrations`` if that is ``args.command``; returns the
    exit status (None: not ours)."""
    command = getattr(args, "command", None)
    if command not in ("migrate", "migrations"):
        return None
    try:
        if command == "migrate":
            print(json.dumps(asyncio.run(_migrate(args))))
        else:
            rows = asyncio.run(_status(args))
            print(json.dumps(rows, indent=2) if args.json else
                  "\n".join(_lines(rows)) or "no migrations")
    except (DatasyncError, sqlite3.Error) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0
