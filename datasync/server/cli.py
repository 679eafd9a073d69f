"""The sync server's commands: ``server`` (run it) and ``token`` (make a token).

Example::

    export DATASYNC_SECRET=$(openssl rand -hex 32)
    python -m datasync token --database notes --expires 86400      # prints the token
    python -m datasync server --data /srv/datasync --port 8765 \\
        --allow-origin https://app.example.com
    python -m datasync server --postgres postgresql://sync@db.internal/app --port 8765

Hooked into :mod:`datasync.tools.cli` as ``build``/``serve`` are: it calls
:func:`add_subcommands` on its subparsers and :func:`run_subcommand` with the parsed
arguments (None: not one of these commands). A command of the replica side
(``replica``) belongs in a module of its own hooked in the same way. Errors users
can act on (no secret, a bad option) print ``error: ...`` and exit with status 2.
Starlette, uvicorn and PyJWT are imported only when a command runs.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ..errors import DatasyncError, InvalidOptionError
from ..sync.protocol import DEFAULT_MAX_BODY

COMMANDS = ("server", "token")


def add_subcommands(subparsers: Any) -> None:
    """``add_subcommands(parser.add_subparsers(dest="command"))``: add ``server``
    and ``token`` to an argparse subparsers object."""
    s = subparsers.add_parser("server", help="run the sync server (primary databases)")
    where = s.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", metavar="DIR",
                       help="directory of the primary databases (NAME.dsdb each); this "
                       "process is their only server")
    where.add_argument("--postgres", metavar="DSN",
                       help="PostgreSQL database of the primaries (a libpq connection "
                       "string or URL); any number of server processes may share it")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    s.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    s.add_argument("--secret-file", metavar="F",
                   help="file holding the token secret (default: $DATASYNC_SECRET)")
    s.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY, metavar="BYTES",
                   help=f"largest request body (default: {DEFAULT_MAX_BODY})")
    s.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="let browser replicas of ORIGIN call the server (CORS); repeatable")
    t = subparsers.add_parser("token", help="print a bearer token for one database")
    t.add_argument("--database", required=True, metavar="NAME")
    t.add_argument("--read-only", action="store_true", help="status and pull only, no push")
    t.add_argument("--expires", type=float, metavar="SECONDS",
                   help="valid for SECONDS from now (default: never expires)")
    t.add_argument("--secret-file", metavar="F",
                   help="file holding the token secret (default: $DATASYNC_SECRET)")


def run_subcommand(args: argparse.Namespace) -> int | None:
    """``status = run_subcommand(args)``: run ``server`` or ``token`` if that is
    ``args.command`` and return the exit status; else return None."""
    command = getattr(args, "command", None)
    if command not in COMMANDS:
        return None
    try:
        from .auth import load_secret, make_token

        secret = load_secret(args.secret_file)
        if command == "token":
            print(make_token(secret, args.database, read_only=args.read_only,
                             expires=args.expires))
            return 0
        if args.max_body <= 0:
            raise InvalidOptionError(f"--max-body {args.max_body}: use a number of bytes > 0")
        return serve(_place(args.data, args.postgres), secret, host=args.host,
                     port=args.port, max_body=args.max_body, allow_origins=args.allow_origin)
    except (OSError, DatasyncError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _place(data: str | None, postgres: str | None) -> Any:
    from .places import FilePlace, PostgresPlace

    if postgres is not None:
        try:
            import psycopg
        except ImportError:
            raise InvalidOptionError(
                "--postgres needs psycopg 3: pip install 'datasync[postgres]'") from None
        from psycopg.conninfo import conninfo_to_dict

        try:
            conninfo_to_dict(postgres)
        except psycopg.Error as exc:
            raise InvalidOptionError(
                f"--postgres: not a PostgreSQL connection string ({str(exc).strip()}); use a URL "
                "(postgresql://USER@HOST:PORT/DB) or key=value pairs (host=... dbname=...)"
            ) from None
        return PostgresPlace(postgres)
    return FilePlace(data or ".")


def serve(place: Any, secret: str, *, host: str = "127.0.0.1", port: int = 8765,
          max_body: int = DEFAULT_MAX_BODY, allow_origins: list[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT; returns the exit status.

    Example: ``serve("data", secret, port=0)``  (``place``: a directory, or a
    :class:`~.places.PostgresPlace`)

    Prints ``datasync sync server on http://HOST:PORT (data DIR)`` (or ``(postgres
    HOST:PORT/DB)``) to stderr once listening. On a signal it answers pending long polls at once, finishes the
    requests in flight (at most :data:`GRACE` seconds), then closes the primaries."""
    import uvicorn

    from .app import create_app

    app = create_app(place, secret, max_body=max_body, allow_origins=allow_origins or ())
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACE)
    server = _server(config, app.state.primaries.place.describe())
    server.run()
    return 0 if server.started else 1


#: Seconds a shutdown waits for requests in flight before cancelling them.
GRACE = 10


def _server(config: Any, where: str) -> Any:
    """uvicorn's Server, announcing itself once listening and waking long polls at
    a shutdown signal (defined here: uvicorn is imported only to serve)."""
    import uvicorn

    class Server(uvicorn.Server):
        _loop: asyncio.AbstractEventLoop | None = None

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            self._loop = asyncio.get_running_loop()
            if self.should_exit or not self.servers:
                return
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            print(f"datasync sync server on http://{host}:{port} ({where})",
                  file=sys.stderr, flush=True)

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            # uvicorn raises the signal again once shut down (the process then dies
            # of it, a KeyboardInterrupt for SIGINT): ours is a clean exit, status 0.
            self._captured_signals.clear()
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(config.app.state.primaries.wake_all)

    return Server(config)
