"""Checking the options of :func:`datasync.open` before anything is created.

Example::

    check_open_options({"cache_bytes": -1})   # InvalidOptionError: cache_bytes must ...
    check_open_options({"cache": 1})          # InvalidOptionError: ... valid options are ...

Every option error is an :class:`~datasync.InvalidOptionError` raised before a
backend is made or a store touched, so a bad option never leaves a store behind.
"""
from __future__ import annotations

import math
import re
from typing import Any

from .encryption import check_key_type
from .errors import InvalidOptionError
from .format import validate_block_size

DURABILITIES = ("relaxed", "strict")
#: The keyword options of datasync.open(), in the order its docstring gives them.
OPEN_OPTIONS = ("backend", "block_size", "cache_bytes", "durability", "flush_interval",
                "create", "retain_versions", "cdc", "cdc_retention", "encryption_key",
                "resident", "pragmas")
#: What ``pragmas=`` may set: PRAGMAs that only configure a connection. One that
#: writes the database (``user_version``...) would make a multi-tab follower write
#: its own copy; ``journal_mode``, ``locking_mode`` and ``query_only`` are datasync's.
CONNECTION_PRAGMAS = frozenset({
    "analysis_limit", "automatic_index", "busy_timeout", "cache_size", "cache_spill",
    "case_sensitive_like", "cell_size_check", "count_changes", "defer_foreign_keys",
    "foreign_keys", "ignore_check_constraints", "legacy_alter_table", "mmap_size",
    "recursive_triggers", "reverse_unordered_selects", "secure_delete", "synchronous",
    "temp_store", "threads", "trusted_schema"})
_TRUE, _FALSE = {"on", "true", "yes", "1"}, {"off", "false", "no", "0"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_VALUE = re.compile(r"-?[A-Za-z0-9_]+\Z")


def _number(name: str, value: Any, *, allow_none: bool = False, whole: bool = False) -> None:
    if value is None and allow_none:
        return
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or (
            isinstance(value, float) and not math.isfinite(value)) or value < 0:
        what = "a whole number" if whole else "a number"
        raise InvalidOptionError(
            f"{name}={value!r} is not allowed: use {what}, 0 or more"
            + (", or None" if allow_none else ""))


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidOptionError(f"{name}={value!r} is not allowed: use True or False")


def check_unknown(given: dict[str, Any], valid: tuple[str, ...] = OPEN_OPTIONS) -> None:
    """Refuse keyword options nobody knows, naming the valid ones."""
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise InvalidOptionError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"the valid options are {', '.join(valid)}")


def check_open_options(options: dict[str, Any]) -> None:
    """Check every option :func:`datasync.open` was given (names and values)."""
    check_unknown(options)
    if "durability" in options and options["durability"] not in DURABILITIES:
        raise InvalidOptionError(
            f"durability={options['durability']!r} is not known: use 'relaxed' or 'strict'")
    if "block_size" in options:
        validate_block_size(options["block_size"])
    if "cache_bytes" in options:
        _number("cache_bytes", options["cache_bytes"], whole=True)
    if "flush_interval" in options:
        _number("flush_interval", options["flush_interval"])
    if "retain_versions" in options:
        _number("retain_versions", options["retain_versions"], whole=True)
    if "cdc_retention" in options:
        _number("cdc_retention", options["cdc_retention"], allow_none=True)
    for name in ("create", "cdc", "resident"):
        if name in options:
            _flag(name, options[name])
    if options.get("encryption_key") is not None:
        check_key_type(options["encryption_key"])
    if options.get("pragmas") is not None:
        pragma_statements(options["pragmas"])


def pragma_statements(pragmas: Any) -> list[str]:
    """``{"foreign_keys": True, "cache_size": -2000}`` -> the PRAGMA statements that
    set them (names and values checked: words and numbers only)."""
    if not isinstance(pragmas, dict):
        raise InvalidOptionError(
            f"pragmas={pragmas!r} is not allowed: use a dict like {{'foreign_keys': True}}")
    return [f"PRAGMA {name} = {value}" for name, value in pragma_values(pragmas).items()]


def pragma_values(pragmas: Any) -> dict[str, str]:
    """``pragmas=`` checked and normalised: ``{"Foreign_Keys": True}`` ->
    ``{"foreign_keys": "1"}`` (booleans as 1/0, names lower case)."""
    if not isinstance(pragmas, dict):
        raise InvalidOptionError(
            f"pragmas={pragmas!r} is not allowed: use a dict like {{'foreign_keys': True}}")
    out = {}
    for name, value in pragmas.items():
        if not isinstance(name, str) or not _WORD.match(name):
            raise InvalidOptionError(f"pragmas: {name!r} is not a PRAGMA name")
        if name.lower() not in CONNECTION_PRAGMAS:
            raise InvalidOptionError(
                f"pragmas: {name} cannot be set at open; pragmas= takes only PRAGMAs that "
                f"configure a connection: {', '.join(sorted(CONNECTION_PRAGMAS))}")
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, float) or not _VALUE.match(str(value)):
            raise InvalidOptionError(
                f"pragmas: {name}={value!r} is not allowed: use True/False, a whole "
                "number or a word")
        text = str(value).lower()
        out[name.lower()] = "1" if text in _TRUE else "0" if text in _FALSE else str(value)
    return out
