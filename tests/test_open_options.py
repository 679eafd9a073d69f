"""Options are checked before anything is created; one error for "no such store"."""
from __future__ import annotations

import os

import pytest

import datasync
from datasync.backends.memory import _STORES

from helpers import native_only

BAD = [
    ({"cache_bytes": -1}, "cache_bytes"),
    ({"cache_bytes": 1.5}, "cache_bytes"),
    ({"block_size": 1000}, "block_size"),
    ({"durability": "fast"}, "durability"),
    ({"flush_interval": -2}, "flush_interval"),
    ({"flush_interval": float("nan")}, "flush_interval"),
    ({"retain_versions": -1}, "retain_versions"),
    ({"cdc_retention": -5}, "cdc_retention"),
    ({"create": "yes"}, "create"),
    ({"cdc": 1}, "cdc"),
    ({"encryption_key": b"short"}, "encryption_key"),
    ({"encryption_key": 42}, "encryption_key"),
    ({"backend": 3}, "backend"),
    ({"backend": "floppy"}, "floppy"),
]


@pytest.mark.parametrize("kind", ["memory", "sqlitefile"])
@pytest.mark.parametrize("options,named", BAD, ids=[n for _, n in BAD])
async def test_a_bad_option_raises_invalid_option_error_and_creates_nothing(
        tmp_path, kind: str, options: dict, named: str) -> None:  # type: ignore[no-untyped-def,type-arg]
    name = str(tmp_path / "x.dsdb") if kind == "sqlitefile" else f"opts-{named}"
    options = {"backend": kind, **options}
    with pytest.raises(datasync.InvalidOptionError, match=named):
        await datasync.open(name, **options)
    assert not os.path.exists(name) and name not in _STORES


async def test_an_unknown_keyword_names_the_valid_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(datasync.InvalidOptionError) as err:
        await datasync.open(str(tmp_path / "x.dsdb"), cache=1 << 20, durabilty="strict")
    message = str(err.value)
    assert "cache, durabilty" in message and "cache_bytes" in message and "durability" in message
    assert isinstance(err.value, ValueError)
    assert not os.path.exists(tmp_path / "x.dsdb")


@pytest.mark.parametrize("kind", ["memory", "sqlitefile"])
async def test_create_false_on_a_missing_store_raises_store_not_found_everywhere(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    name = str(tmp_path / "missing.dsdb") if kind == "sqlitefile" else "never-created"
    with pytest.raises(datasync.StoreNotFoundError, match="does not exist"):
        await datasync.open(name, backend=kind, create=False)
    assert not os.path.exists(name) and name not in _STORES
    assert issubclass(datasync.StoreNotFoundError, datasync.StoreCreateError)


@native_only
def test_the_options_of_open_are_the_ones_its_signature_and_docs_name() -> None:
    import inspect

    from datasync.options import OPEN_OPTIONS

    from datasync.database import open as open_database

    params = [p for p in inspect.signature(open_database).parameters
              if p not in ("name", "unknown")]
    assert tuple(params) == OPEN_OPTIONS
    for option in OPEN_OPTIONS:
        assert f"``{option}" in (open_database.__doc__ or "")
    # datasync.open adds one: whether the app's tabs share the database
    assert list(inspect.signature(datasync.open).parameters) == ["name", "tabs", "options"]
    assert "``tabs``" in (datasync.open.__doc__ or "")
