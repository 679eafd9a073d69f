"""Encryption keys across tabs: a rekey in one tab reaches the others.

Example::

    await tab.rekey("a new passphrase")      # leads, re-encrypts, sends the key

A part of :class:`~datasync.tabs.SharedDatabase` (see :mod:`datasync.tabs` for the
protocol); the tab's state is set up in :mod:`.core`.
"""
from __future__ import annotations

import asyncio

from ..encryption import EncryptionKey, open_codec
from ..errors import (
    DatasyncError,
    WrongKeyError,
)
from ..format import Codec, Meta
from . import wire
from .wire import (
    key_to_wire,
)


class KeyDistribution:
    """Encryption keys across tabs: a rekey in one tab reaches the others."""

    async def rekey(self, new_key: EncryptionKey | None) -> int:
        """Re-encrypt the shared database under ``new_key`` (32 raw bytes, a
        passphrase, or None to decrypt), atomically, for every tab.

        Example: ``await tab.rekey("a new passphrase")``

        This tab takes leadership (:meth:`request_leadership`) and rekeys the store
        in one flush (:meth:`Database.rekey`), fenced like every leader flush. The
        key then goes to the other tabs over the channel (same origin, memory
        only), and each switches to it as it catches up. A tab that misses it (one
        asleep at that moment) gets ``WrongKeyError`` from then on: open it again with
        the new key. Tabs opened later must give the new key. Returns the version.
        """
        self._check_open()
        await self.request_leadership()
        # Sent first: a tab tries each key against the metadata it reads, so an
        # early or unused key is harmless, and the others have it when they see the
        # rekey (a slow scrub, or this tab dying after the flush, cannot strand them).
        self._post({"t": "rekeyed", "key": key_to_wire(new_key), "tab": self.tab_id})
        version = await self.db.rekey(new_key)
        self._key = new_key
        self._post({"t": "changed", "version": version, "epoch": self.epoch, "tables": [],
                    "tab": self.tab_id})
        return version

    async def _codec_for(self, meta: Meta) -> Codec:
        """The codec for ``meta`` after another tab's rekey, from the keys it sent.
        The key can trail the flush by a moment: wait a little for it."""
        where = self._store.backend.location
        deadline = asyncio.get_running_loop().time() + wire.KEY_WAIT
        asked = False
        while True:
            self._new_key.clear()
            for key in reversed(self._keys):
                try:
                    codec, _ = await open_codec(meta, key, where=where)
                except DatasyncError:
                    continue  # a key for another rekey, or for a plain store
                self._key, self._keys = key, [key]
                return codec
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise WrongKeyError(
                    f"{where} was re-encrypted (version {meta.version}) and this tab was not "
                    "sent the new key")
            if not asked:  # opened as the key went round, say: the leader resends it
                self._post({"t": "need-key", "tab": self.tab_id})
                asked = True
            try:
                await asyncio.wait_for(self._new_key.wait(), remaining)
            except asyncio.TimeoutError:
                pass
