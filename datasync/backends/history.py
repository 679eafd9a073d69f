"""Retained history (point-in-time restore), the rule written once for every backend.

Example (inside a :class:`~.contract.KeepsHistory` backend's write transaction)::

    self._history_cleared = write_history(txn, stored_meta, flush,
                                          cleared=self._history_cleared)

A flush with ``retain = N`` keeps, in the same transaction, every record it
replaces or drops (a block it writes, or one at or past the new block count) as
superseded at the flush's new version, and the metadata it replaces; then drops
whatever was superseded at or before ``new_version - N``. A record is needed to
rebuild version X iff ``version <= X < superseded``, so every version in
``[V - N, V]`` stays whole (:func:`records_as_of`). A flush with ``retain = 0``
drops all history, once per opening (``cleared``).

Each backend supplies the storage primitives (:class:`HistoryTxn`); what is kept
and what is dropped is decided here. Where the backend cannot read what a flush
replaces (:class:`~.contract.HistoryFromStore`), the flush carries those records
(``Flush.history``, with ``history_sent`` set).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..errors import CorruptBlockError
from ..format import MAIN, Flush, Meta, Record


@dataclass(frozen=True)
class Superseded:
    """A record kept for point-in-time restore: it held block ``index`` from its own
    version up to (not including) version ``superseded``."""

    index: int
    superseded: int
    record: Record


class HistoryTxn(Protocol):
    """What a backend does to its history, inside its write transaction."""

    def keep_superseded(self, file: str, indices: Iterable[int], from_index: int,
                        superseded: int) -> None:
        """Keep the stored records of ``file`` at ``indices`` and at or past
        ``from_index`` (read inside the transaction) as superseded at ``superseded``."""

    def keep_sent(self, file: str, records: dict[int, Record], superseded: int) -> None:
        """Keep ``records`` (sent by the block store) as superseded at ``superseded``."""

    def keep_meta(self, meta: Meta) -> None:
        """Keep the metadata of a version being replaced."""

    def drop_through(self, superseded: int) -> None:
        """Drop records superseded at or before ``superseded``, and the metadata of
        versions older than it."""

    def drop_all(self) -> None:
        """Drop every kept record and metadata."""


def write_history(txn: HistoryTxn, stored: Meta, flush: Flush, *, cleared: bool) -> bool:
    """Apply the rule (see the module docstring) for ``flush`` over ``stored``.
    Returns the new ``cleared`` (True once a retain-0 flush emptied the history)."""
    if flush.retain <= 0:
        if not cleared:
            txn.drop_all()
        return True
    new = flush.meta.version
    if flush.history_sent:
        txn.keep_sent(flush.file, flush.history, new)
    else:
        txn.keep_superseded(flush.file, flush.blocks, flush.meta.block_count, new)
    txn.keep_meta(stored)
    txn.drop_through(new - flush.retain)
    return False


def records_as_of(meta: Meta, current: dict[int, Record], history: list[Superseded],
                  *, where: str = "store") -> dict[int, Record]:
    """The records of every block as they were at ``meta.version``, from the current
    records and the kept history. Raises ``CorruptBlockError`` if one is missing."""
    version = meta.version
    out: dict[int, Record] = {}
    for idx, rec in current.items():
        if idx < meta.block_count and rec.version <= version:
            out[idx] = rec
    for old in history:
        if old.index < meta.block_count and old.record.version <= version < old.superseded:
            out[old.index] = old.record
    missing = [i for i in range(meta.block_count) if i not in out]
    if missing:
        raise CorruptBlockError(
            f"version {version} of {where} cannot be rebuilt: block {missing[0]} of it was "
            "not kept", file=MAIN, index=missing[0])
    return out
