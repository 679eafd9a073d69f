"""The sync server (native only): primary databases that embedded replicas follow.

Example::

    python -m datasync token --database notes            # prints a bearer token
    python -m datasync server --data /srv/datasync       # $DATASYNC_SECRET signs tokens
    python -m datasync server --postgres postgresql://sync@db/app   # many processes
    DATASYNC_DATA=/srv/datasync uvicorn --factory datasync.server:app_from_env
    DATASYNC_POSTGRES=postgresql://sync@db/app uvicorn --workers 4 \\
        --factory datasync.server:app_from_env

What travels is :mod:`datasync.sync.protocol`. Modules: :mod:`.auth` (tokens),
:mod:`.places` (where primaries live: files, or PostgreSQL shared by many processes),
:mod:`.primaries` (the databases: pushes applied once, pulls of blocks), :mod:`.app`
(the Starlette app and its error boundary), :mod:`.cli` (the commands). Needs the
``datasync[server]`` extra (Starlette, uvicorn, PyJWT).
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import InvalidOptionError

__all__ = ["app_from_env"]


def app_from_env() -> Any:
    """The app configured by the environment, for any ASGI server.

    Example: ``uvicorn --factory datasync.server:app_from_env``

    ``DATASYNC_DATA``: the data directory, or ``DATASYNC_POSTGRES``: the PostgreSQL
    database (a libpq connection string; one of the two); ``DATASYNC_SECRET`` or
    ``DATASYNC_SECRET_FILE``: the token secret; ``DATASYNC_MAX_BODY`` (bytes) and
    ``DATASYNC_ALLOW_ORIGINS`` (comma-separated) are optional. Raises
    :class:`~datasync.InvalidOptionError` naming what is missing or wrong."""
    from ..sync.protocol import DEFAULT_MAX_BODY
    from .app import create_app
    from .auth import load_secret

    from .places import FilePlace, PostgresPlace

    data, postgres = os.environ.get("DATASYNC_DATA"), os.environ.get("DATASYNC_POSTGRES")
    if bool(data) == bool(postgres):
        raise InvalidOptionError(
            "set DATASYNC_DATA to the directory of the primary databases, or "
            "DATASYNC_POSTGRES to their PostgreSQL database (a libpq connection string), "
            "not both")
    place = PostgresPlace(postgres) if postgres else FilePlace(data or ".")
    max_body = os.environ.get("DATASYNC_MAX_BODY", str(DEFAULT_MAX_BODY))
    if not max_body.isdigit() or int(max_body) <= 0:
        raise InvalidOptionError(f"DATASYNC_MAX_BODY={max_body!r}: use a number of bytes > 0")
    origins = [o.strip() for o in os.environ.get("DATASYNC_ALLOW_ORIGINS", "").split(",")
               if o.strip()]
    return create_app(place, load_secret(os.environ.get("DATASYNC_SECRET_FILE") or None),
                      max_body=int(max_body), allow_origins=origins)
