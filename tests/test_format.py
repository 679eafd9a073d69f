"""The stored format: block sizes, metadata, record checksums."""
from __future__ import annotations

from dataclasses import replace

import pytest

from datasync.errors import CorruptBlockError, FormatVersionError, InvalidOptionError
from datasync.format import FORMAT_VERSION, Codec, Meta, validate_block_size


@pytest.mark.parametrize("size", [512, 1024, 4096, 65536])
def test_block_size_accepts_powers_of_two_in_range(size: int) -> None:
    assert validate_block_size(size) == size


@pytest.mark.parametrize("size", [0, 256, 1000, 4097, 131072, -4096, True, 4096.0])
def test_block_size_rejects_everything_else_with_a_helpful_message(size: object) -> None:
    with pytest.raises(InvalidOptionError, match="power of two from 512 to 65536"):
        validate_block_size(size)  # type: ignore[arg-type]


def test_meta_round_trips_through_json() -> None:
    meta = replace(Meta.new(8192).next(123456), extra={"salt": "abc"})
    assert Meta.from_json(meta.to_json()) == meta
    assert meta.version == 1 and meta.block_count == 16


def test_meta_of_a_newer_format_is_refused_with_what_to_do() -> None:
    newer = replace(Meta.new(), format_version=FORMAT_VERSION + 1)
    with pytest.raises(FormatVersionError, match="newer datasync.*Nothing was changed"):
        Meta.from_json(newer.to_json(), where="store 'x'")


def test_a_format_1_store_is_read_and_its_next_flush_writes_format_2() -> None:
    old = replace(Meta.new(), format_version=1)
    assert Meta.from_json(old.to_json()) == old  # read as it is
    assert old.next(4096).format_version == FORMAT_VERSION == 2
    with pytest.raises(FormatVersionError, match="older datasync"):
        Meta.from_json(replace(old, format_version=0).to_json())


async def test_a_format_1_store_opens_keeps_its_data_and_is_upgraded_by_a_write() -> None:
    import datasync
    from datasync.backends import MemoryBackend
    from datasync.backends.memory import _STORES

    db = await datasync.open("fmt1", backend=MemoryBackend("fmt1"))
    await db.execute("CREATE TABLE t(x)")
    await db.execute("INSERT INTO t VALUES (1)")
    await db.close()
    stored = _STORES["fmt1"]
    stored.meta = replace(stored.meta, format_version=1)  # as the previous release left it
    db = await datasync.open("fmt1", backend=MemoryBackend("fmt1"))
    assert await db.query("SELECT x FROM t") == [{"x": 1}]
    await db.execute("INSERT INTO t VALUES (2)")
    await db.sync()
    await db.close()
    assert _STORES.pop("fmt1").meta.format_version == 2


def test_unreadable_meta_is_reported_as_corrupt() -> None:
    with pytest.raises(CorruptBlockError, match="metadata"):
        Meta.from_json("{not json")


def test_record_decodes_to_its_data() -> None:
    rec = Codec().encode("main", 7, 3, b"x" * 4096)
    assert rec.version == 3
    assert Codec().decode("main", 7, rec) == b"x" * 4096


@pytest.mark.parametrize(
    "tamper",
    [
        lambda r: r._replace(payload=b"y" + r.payload[1:]),  # data changed
        lambda r: r._replace(version=r.version + 1),  # replayed under another version
    ],
)
def test_tampered_record_fails_its_checksum_naming_the_block(tamper) -> None:  # type: ignore[no-untyped-def]
    rec = tamper(Codec().encode("main", 7, 3, b"x" * 4096))
    with pytest.raises(CorruptBlockError, match="block 7") as info:
        Codec().decode("main", 7, rec)
    assert info.value.index == 7


def test_record_moved_to_another_index_fails_its_checksum() -> None:
    rec = Codec().encode("main", 7, 3, b"x" * 4096)
    with pytest.raises(CorruptBlockError, match="block 8"):
        Codec().decode("main", 8, rec)
