"""Bearer tokens of the sync server: HS256 JSON Web Tokens (PyJWT).

Example::

    secret = load_secret(None)                       # $DATASYNC_SECRET
    token = make_token(secret, "notes", expires=3600)
    claims = check_token(secret, f"Bearer {token}", "notes", write=True)
    # {"db": "notes", "rights": "write", "iat": 1700000000, "exp": 1700003600}

A token holds the claims ``db`` (the one database it opens), ``rights``
(``"read"``: status and pull; ``"write"``: push too), ``iat`` (issued at, Unix
seconds) and optionally ``exp`` (expiry, Unix seconds). It is signed with the
server's secret (HMAC-SHA256); anyone holding the secret can make tokens, so keep
it in a file only the server reads (``--secret-file``) or in ``DATASYNC_SECRET``.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from typing import Any

import jwt

from ..errors import InvalidOptionError, SyncAuthError, SyncForbiddenError
from ..sync.protocol import NAME_PATTERN, READ, WRITE

ALGORITHM = "HS256"
SECRET_ENV = "DATASYNC_SECRET"
#: Shortest secret accepted (bytes, UTF-8): a shorter one can be guessed offline
#: from any token. 32 or more is better (``openssl rand -hex 32``).
MIN_SECRET_BYTES = 16


def make_token(secret: str, database: str, *, read_only: bool = False,
               expires: float | None = None) -> str:
    """A signed token (a JWT string) for one database.

    Example: ``token = make_token(secret, "notes", read_only=True, expires=86400)``

    ``database``: a :data:`~datasync.sync.protocol.NAME_PATTERN` name;
    ``read_only``: status and pull only; ``expires``: seconds from now (None:
    never). Raises :class:`~datasync.InvalidOptionError` for a bad name or a
    non-positive ``expires``."""
    if not NAME_PATTERN.match(database):
        raise InvalidOptionError(
            f"database name {database!r} is not allowed: use 1 to 128 letters, digits, "
            "'_', '.' or '-', starting with a letter or digit")
    now = int(time.time())
    claims: dict[str, Any] = {"db": database, "rights": READ if read_only else WRITE,
                              "iat": now}
    if expires is not None:
        if not expires > 0:
            raise InvalidOptionError(f"expires={expires!r} is not allowed: use seconds > 0")
        claims["exp"] = now + int(max(1, round(expires)))
    with _quiet():
        return jwt.encode(claims, secret, algorithm=ALGORITHM)


def check_token(secret: str, header_value: str | None, database: str, *,
                write: bool) -> dict[str, Any]:
    """The claims of the ``Authorization`` header's bearer token, checked.

    Example: ``check_token(secret, request.headers.get("authorization"), "notes", write=False)``

    Checked for ``database`` and, with ``write``, for write rights; returns the
    claims dict. Raises :class:`~datasync.SyncAuthError` (HTTP 401) when the header
    is missing or not ``Bearer <token>``, or the token is malformed, badly signed,
    expired or lacks its claims; :class:`~datasync.SyncForbiddenError` (HTTP 403) when it names
    another database, or is read-only and this is a write."""
    if not header_value:
        raise SyncAuthError(
            "no Authorization header: send 'Authorization: Bearer <token>' (make one "
            "with python -m datasync token --database NAME)")
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SyncAuthError(
            "the Authorization header is not 'Bearer <token>': send the token made by "
            "python -m datasync token")
    try:
        with _quiet():
            claims = jwt.decode(token.strip(), secret, algorithms=[ALGORITHM],
                                options={"require": ["db", "rights", "iat"]})
    except jwt.ExpiredSignatureError:
        raise SyncAuthError("the token has expired: get a new one "
                            "(python -m datasync token --expires SECONDS)") from None
    except jwt.InvalidSignatureError:
        raise SyncAuthError("the token's signature does not match this server's secret: "
                            "get a token made with this server's secret") from None
    except jwt.InvalidTokenError as exc:
        raise SyncAuthError(f"the token is not valid ({exc}): get a new one with "
                            "python -m datasync token") from None
    rights = claims.get("rights")
    if not isinstance(claims.get("db"), str) or rights not in (READ, WRITE):
        raise SyncAuthError("the token's claims are malformed ('db' must be a name, "
                            "'rights' 'read' or 'write'): get a new one")
    if claims["db"] != database:
        raise SyncForbiddenError(
            f"the token is for database {claims['db']!r}, not {database!r}: use a token "
            f"made with --database {database}")
    if write and rights != WRITE:
        raise SyncForbiddenError(
            f"the token for {database!r} is read-only and this is a write: use a token "
            "made without --read-only")
    return claims


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """PyJWT warns at every use of a key under 32 bytes; :func:`load_secret` has
    decided once (at least :data:`MIN_SECRET_BYTES`, and it says 32 is better)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        yield


def load_secret(secret_file: str | None) -> str:
    """The server's signing secret.

    Example: ``secret = load_secret(args.secret_file)``

    The file ``secret_file`` (surrounding whitespace stripped) if given, else the
    environment variable ``DATASYNC_SECRET``.

    Raises :class:`~datasync.InvalidOptionError` when neither is set, the file
    cannot be read, or the secret is shorter than :data:`MIN_SECRET_BYTES` bytes."""
    if secret_file:
        try:
            with open(secret_file, encoding="utf-8") as f:
                secret = f.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidOptionError(
                f"cannot read the secret file {secret_file!r} ({exc}): check --secret-file"
            ) from None
        where = f"the secret file {secret_file!r}"
    else:
        secret = os.environ.get(SECRET_ENV, "").strip()
        where = f"${SECRET_ENV}"
        if not secret:
            raise InvalidOptionError(
                f"no secret to sign tokens with: pass --secret-file FILE or set "
                f"{SECRET_ENV} (make one with: openssl rand -hex 32)")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise InvalidOptionError(
            f"{where} holds a secret of {len(secret.encode())} bytes; use at least "
            f"{MIN_SECRET_BYTES} (32 or more is better: openssl rand -hex 32)")
    return secret
