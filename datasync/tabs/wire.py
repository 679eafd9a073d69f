"""The multi-tab wire format: messages, values, results, keys and errors as JSON.

Example::

    msg = {"t": "write", "id": req_id, "tab": "t1", "to": leader,
           "stmts": [[sql, [encode_value(v) for v in params]]], "state": {...}}
    result = result_from_wire(reply["ok"][0])

Messages are dicts with a type ``t`` (see :mod:`datasync.tabs` for the protocol);
they carry only JSON-like values, so they cross a BroadcastChannel or an IndexedDB
record as they are: a BLOB is ``{"$b": base64}``, an error ``[class name, message]``
rebuilt as the same class here when it is a known one (:func:`rebuild_error`).
"""
from __future__ import annotations

import base64
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..database import Result
from ..encryption import EncryptionKey
from ..errors import RemoteError

APPLIED_TABLE = "_datasync_applied"
#: How long the leader remembers a request id (a retry after that applies again).
APPLIED_RETENTION = 3600.0
Statement = tuple[str, Sequence[Any]]
ChangeCallback = Callable[[dict[str, Any]], Any]


def encode_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "$b" in value:
        return base64.b64decode(value["$b"])
    return value


def encode_params(params: Any) -> Any:
    """Statement parameters as a message carries them: a list, or a dict of named ones."""
    if isinstance(params, Mapping):
        return {str(k): encode_value(v) for k, v in params.items()}
    return [encode_value(v) for v in params]


def decode_params(params: Any) -> Any:
    if isinstance(params, Mapping):
        return {str(k): decode_value(v) for k, v in params.items()}
    return [decode_value(v) for v in params or ()]


def result_to_wire(res: Result) -> dict[str, Any]:
    return {"columns": res.columns, "rows": [[encode_value(v) for v in row] for row in res.rows],
            "rowcount": res.rowcount, "lastrowid": res.lastrowid}


#: Seconds a tab waits for the key of a rekey it sees in the store (the
#: ``rekeyed`` message is posted right after the rekey's flush).
KEY_WAIT = 2.0


def key_to_wire(key: EncryptionKey | None) -> dict[str, Any] | None:
    """An encryption key as a channel message can carry it."""
    if key is None:
        return None
    if isinstance(key, str):
        return {"passphrase": key}
    return {"raw": base64.b64encode(bytes(key)).decode()}


def key_from_wire(raw: dict[str, Any] | None) -> EncryptionKey | None:
    if raw is None:
        return None
    if "passphrase" in raw:
        return str(raw["passphrase"])
    return base64.b64decode(str(raw["raw"]))


def result_from_wire(raw: dict[str, Any]) -> Result:
    return Result(list(raw["columns"]), [tuple(decode_value(v) for v in row) for row in raw["rows"]],
                  raw["rowcount"], raw["lastrowid"])



def rebuild_error(name: str, message: str) -> BaseException:
    """The leader's error, as the same class here when it is a known one."""
    import datasync

    cls = getattr(sqlite3, name, None) or getattr(datasync, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except TypeError:
            pass
    return RemoteError(name, message)

