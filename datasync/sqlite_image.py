"""Checks and small rewrites of standard SQLite database images (file bytes).

Example::

    image = as_rollback_image(open("app.sqlite", "rb").read())

SQLite's file format: a 100-byte header starting with ``SQLite format 3\\0``;
bytes 18-19 say rollback journal (1) or WAL (2). datasync stores rollback-mode
images (its VFS has no WAL), so a WAL-mode image is turned into a rollback one:
after a checkpoint these two bytes are the only difference.
"""
from __future__ import annotations

from .errors import NotASQLiteImageError

MAGIC = b"SQLite format 3\x00"


def page_size(image: bytes) -> int:
    """The page size recorded in the image's header."""
    raw = int.from_bytes(image[16:18], "big")
    return 65536 if raw == 1 else raw


def as_rollback_image(data: bytes) -> bytes:
    """Validate ``data`` as a SQLite database image and return it in rollback mode."""
    data = bytes(data)
    if len(data) < 100 or not data.startswith(MAGIC):
        raise NotASQLiteImageError(
            "the data is not a SQLite database file (it does not start with the "
            "'SQLite format 3' header); export it with sqlite3's .backup or datasync export"
        )
    size = page_size(data)
    if size < 512 or size > 65536 or size & (size - 1) or len(data) % size:
        raise NotASQLiteImageError(
            f"the SQLite file is damaged or truncated (page size {size}, {len(data)} bytes)"
        )
    if data[18] == 2 or data[19] == 2:
        data = data[:18] + b"\x01\x01" + data[20:]
    return data
