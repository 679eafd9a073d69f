"""``python -m datasync replica status|pull|push STORE``: a native replica from the shell.

Example::

    python -m datasync replica pull notes.dsdb --url http://127.0.0.1:8765/notes --token "$T"
    python -m datasync replica status notes.dsdb        # no server needed
    DATASYNC_TOKEN="$T" python -m datasync replica push notes.dsdb

``--url`` defaults to the one the store last pulled from (kept in its replica
state); ``--token`` to the ``DATASYNC_TOKEN`` environment variable. ``status``
prints JSON: the sync status (``sync_status()``) without contacting the server
(``online`` is then null), plus the conflicts recorded. ``pull`` and ``push`` print the same after doing so.
Exit status 2 with the error's message on failure.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from ..database import open as open_database
from ..errors import DatasyncError, InvalidOptionError, StoreNotFoundError

ACTIONS = ("status", "pull", "push")


def add_subcommands(subparsers: Any) -> None:
    """Add ``replica`` to an argparse subparsers object."""
    s = subparsers.add_parser("replica", help="a native replica: status, pull, push")
    s.add_argument("action", choices=ACTIONS)
    s.add_argument("store", help="the replica's store file")
    s.add_argument("--url", help="the primary: http(s)://HOST:PORT/NAME (default: the "
                                 "one the store last pulled from)")
    s.add_argument("--token", help="bearer token (default: $DATASYNC_TOKEN)")


async def _replica_action(args: argparse.Namespace) -> dict[str, Any]:
    import datasync

    if not os.path.exists(args.store) and args.action == "status":
        raise StoreNotFoundError(f"no store at {args.store}: pull creates one")
    url = args.url
    if url is None:
        probe = await open_database(args.store, create=False)  # (read, not a replica)
        try:
            url = (probe.store.meta.extra.get("replica") or {}).get("url")
        finally:
            await probe.close()
        if not url:
            raise InvalidOptionError(
                f"{args.store} has not pulled yet, so its primary is not known: pass --url")
    token = args.token or os.environ.get("DATASYNC_TOKEN")
    db = await datasync.open(args.store, sync_url=url, auth_token=token, sync_interval=0,
                             offline=args.action == "status")
    try:
        if args.action == "pull":
            await db.pull()
        elif args.action == "push":
            await db.push()
        status = db.sync_status()
        if args.action == "status":  # the server was not asked
            status.pop("offline", None)
            status["online"] = None
        return {**status, "conflicts": await db.conflicts()}
    finally:
        await db.close()


def run_subcommand(args: argparse.Namespace) -> int | None:
    """Run ``replica`` if that is ``args.command``; returns the exit status (None: not ours)."""
    if getattr(args, "command", None) != "replica":
        return None
    try:
        out = asyncio.run(_replica_action(args))
    except DatasyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2, default=repr))
    return 0
