"""Encryption at rest: AES-256-GCM blocks, key checks, tampering, rekey (native)."""
from __future__ import annotations

import base64
import glob
import os
import sqlite3
from dataclasses import replace

import pytest

import datasync
from datasync.backends import MemoryBackend
from datasync.backends import run_now
from datasync.backends.memory import _STORES
from datasync.blockstore import BlockStore
from datasync.encryption import (
    codecs,
    NONCE_BYTES,
    OVERHEAD,
    PBKDF2_ITERATIONS,
    EncryptedCodec,
    NativeCipher,
    block_aad,
    derive_key,
    new_scheme,
)
from datasync.errors import CorruptBlockError, InvalidOptionError, WrongKeyError
from datasync.format import MAIN, Codec, Meta, Record

MARKER = "zebra-MARKER-5d1c9e-plaintext"
RAW_KEY = bytes(range(32))
PASSPHRASE = "correct horse battery staple"
KEYS = {"raw": RAW_KEY, "passphrase": PASSPHRASE}


async def _write_marker(db: datasync.Database, rows: int = 50) -> None:
    await db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT)")
    await db.executemany("INSERT INTO t(body) VALUES (?)", [(f"{MARKER} {i}",) for i in range(rows)])


def _store_files(path: str) -> bytes:
    """Every byte of a sqlitefile store on disk (main file, WAL and the rest)."""
    return b"".join(open(p, "rb").read() for p in sorted(glob.glob(path + "*")))


def _forged(file: str, index: int, version: int, payload: bytes) -> Record:
    """A record as an attacker would write it: the CRC is not secret, so it matches."""
    return Record(version, Codec._checksum(file, index, version, payload), payload)


@pytest.mark.parametrize("key_kind", sorted(KEYS))
async def test_encrypted_database_round_trips_across_close_and_reopen(
        db_name, backend_kind, key_kind) -> None:  # type: ignore[no-untyped-def]
    key = KEYS[key_kind]

    db = await datasync.open(db_name, backend=backend_kind, encryption_key=key)
    assert db.encrypted
    await _write_marker(db, rows=300)
    await db.close()
    db = await datasync.open(db_name, backend=backend_kind, encryption_key=key)
    assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 300}]
    assert (await db.query("SELECT body FROM t WHERE id = 7"))[0]["body"] == f"{MARKER} 6"
    assert await db.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    await db.close()


@pytest.mark.parametrize("key_kind", sorted(KEYS))
async def test_marker_is_absent_from_the_raw_store_file(tmp_path, key_kind) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "secret.dsdb")
    db = await datasync.open(path, encryption_key=KEYS[key_kind])
    await _write_marker(db)
    await db.sync()
    assert MARKER.encode() not in _store_files(path)  # WAL included, while open
    await db.close()
    assert MARKER.encode() not in _store_files(path)
    # The same writes without a key do put the marker on disk: the check can fail.
    plain = str(tmp_path / "plain.dsdb")
    db = await datasync.open(plain)
    await _write_marker(db)
    await db.close()
    assert MARKER.encode() in _store_files(plain)


async def test_marker_is_absent_from_every_memory_record() -> None:
    try:
        db = await datasync.open("enc-memory-marker", backend="memory", encryption_key=RAW_KEY)
        await _write_marker(db)
        await db.close()
        stored = _STORES["enc-memory-marker"]
        assert stored.blocks and all(
            MARKER.encode() not in r.payload for r in stored.blocks.values())
        assert MARKER not in stored.meta.to_json()
    finally:
        _STORES.pop("enc-memory-marker", None)


@pytest.mark.parametrize("wrong", [RAW_KEY[::-1], "not the passphrase", None],
                         ids=["other-raw-key", "other-passphrase", "no-key"])
async def test_wrong_or_missing_key_raises_and_leaves_the_store_untouched(tmp_path, wrong) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "locked.dsdb")
    db = await datasync.open(path, encryption_key=PASSPHRASE)
    await _write_marker(db)
    await db.close()
    before = _store_files(path)
    with pytest.raises(WrongKeyError) as err:
        await datasync.open(path, encryption_key=wrong)
    assert _store_files(path) == before
    if wrong is None:
        assert "encrypted" in str(err.value) and "encryption_key" in str(err.value)
    # the right key still opens it
    db = await datasync.open(path, encryption_key=PASSPHRASE)
    n = (await db.query("SELECT count(*) AS n FROM t"))[0]["n"]
    await db.close()
    assert int(n) == 50


async def test_a_second_open_in_the_same_process_needs_the_right_key_too() -> None:
    try:
        db = await datasync.open("enc-shared", backend="memory", encryption_key=RAW_KEY)
        with pytest.raises(WrongKeyError):
            await datasync.open("enc-shared", backend="memory", encryption_key=bytes(32))
        with pytest.raises(WrongKeyError):
            await datasync.open("enc-shared", backend="memory")
        again = await datasync.open("enc-shared", backend="memory", encryption_key=RAW_KEY)
        await again.close()
        await db.close()
    finally:
        _STORES.pop("enc-shared", None)


async def test_a_key_for_an_unencrypted_store_is_refused(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await _write_marker(db)
    await db.close()
    with pytest.raises(InvalidOptionError, match="rekey"):
        await datasync.open(db_name, backend=backend_kind, encryption_key=RAW_KEY)
    db = await datasync.open(db_name, backend=backend_kind)
    assert not db.encrypted
    await db.close()


@pytest.mark.parametrize("bad", [b"short", 42, ""], ids=["31-bytes", "int", "empty"])
async def test_a_malformed_key_is_an_invalid_option(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidOptionError):
        await datasync.open("enc-bad-key", backend="memory", encryption_key=bad)
    assert "enc-bad-key" not in _STORES  # refused before the store was created


async def test_metadata_records_pbkdf2_with_600000_iterations_a_salt_and_a_key_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "kdf.dsdb")
    db = await datasync.open(path, encryption_key=PASSPHRASE)
    await db.close()
    conn = sqlite3.connect(path)
    try:
        meta = datasync.format.Meta.from_json(
            conn.execute("SELECT value FROM meta WHERE key = 'meta'").fetchone()[0])
    finally:
        conn.close()
    scheme = meta.extra["encryption"]
    assert scheme["alg"] == "AES-256-GCM" and scheme["kdf"] == "PBKDF2-HMAC-SHA256"
    assert scheme["iterations"] >= 600_000 and PBKDF2_ITERATIONS >= 600_000
    assert len(base64.b64decode(scheme["salt"])) == 16
    assert len(base64.b64decode(scheme["check"])) == NONCE_BYTES + 21 + 16


async def test_two_stores_with_one_passphrase_get_different_salts_and_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def salt(name: str) -> str:
        db = await datasync.open(str(tmp_path / name), encryption_key=PASSPHRASE)
        value = db._store.meta.extra["encryption"]["salt"]
        await db.close()
        return str(value)

    assert await salt("a.dsdb") != await salt("b.dsdb")


async def _store_with_blocks(name: str, blocks: dict[int, bytes], *, flushes: int = 1) -> None:
    store = await BlockStore.open(MemoryBackend(name), block_size=512, codecs=codecs(RAW_KEY))
    for _ in range(flushes):
        for idx, data in blocks.items():
            store.write(idx * 512, data)
        store.commit()
        await store.flush()
    await store.close()


async def _reopen(name: str) -> BlockStore:
    return await BlockStore.open(MemoryBackend(name), block_size=512, codecs=codecs(RAW_KEY))


async def test_a_tampered_payload_raises_corrupt_block_naming_the_block() -> None:
    name = "enc-tamper"
    await _store_with_blocks(name, {0: b"a" * 512, 1: b"b" * 512, 2: b"c" * 512})
    try:
        key = (MAIN, 1)
        rec = _STORES[name].blocks[key]
        flipped = bytearray(rec.payload)
        flipped[NONCE_BYTES + 5] ^= 1
        _STORES[name].blocks[key] = _forged(MAIN, 1, rec.version, bytes(flipped))
        store = await _reopen(name)
        assert store.read_block(0) == b"a" * 512
        with pytest.raises(CorruptBlockError, match="block 1 .*failed authentication") as err:
            store.read_block(1)
        assert err.value.index == 1 and err.value.file == MAIN
        # The batch path (how the browser loads every block) names it as well.
        with pytest.raises(CorruptBlockError) as err:
            await store.codec.decode_many(MAIN, dict(await store.backend.read_all()))
        assert err.value.index == 1
        await store.close()
    finally:
        _STORES.pop(name, None)


async def test_swapped_blocks_raise_corrupt_block() -> None:
    name = "enc-swap"
    await _store_with_blocks(name, {0: b"a" * 512, 1: b"b" * 512, 2: b"c" * 512})
    try:
        blocks = _STORES[name].blocks
        r1, r2 = blocks[(MAIN, 1)], blocks[(MAIN, 2)]
        assert r1.version == r2.version
        blocks[(MAIN, 1)] = _forged(MAIN, 1, r1.version, r2.payload)
        blocks[(MAIN, 2)] = _forged(MAIN, 2, r2.version, r1.payload)
        store = await _reopen(name)
        for idx in (1, 2):
            with pytest.raises(CorruptBlockError, match=f"block {idx} ") as err:
                store.read_block(idx)
            assert err.value.index == idx
        assert store.read_block(0) == b"a" * 512
        await store.close()
    finally:
        _STORES.pop(name, None)


async def test_an_older_payload_relabelled_with_the_current_version_raises_corrupt_block() -> None:
    name = "enc-replay"
    old: list[Record] = []
    try:
        store = await BlockStore.open(MemoryBackend(name), block_size=512, codecs=codecs(RAW_KEY))
        store.write(0, b"old!" * 128)
        store.commit()
        await store.flush()
        old.append(_STORES[name].blocks[(MAIN, 0)])
        store.write(0, b"new!" * 128)
        store.commit()
        await store.flush()
        await store.close()
        current = _STORES[name].blocks[(MAIN, 0)]
        assert current.version > old[0].version
        _STORES[name].blocks[(MAIN, 0)] = _forged(MAIN, 0, current.version, old[0].payload)
        store = await _reopen(name)
        with pytest.raises(CorruptBlockError, match="block 0 ") as err:
            store.read_block(0)
        assert err.value.index == 0
        await store.close()
    finally:
        _STORES.pop(name, None)


async def test_two_writes_of_the_same_block_use_different_nonces() -> None:
    name = "enc-nonce"
    payloads: list[bytes] = []
    try:
        store = await BlockStore.open(MemoryBackend(name), block_size=512, codecs=codecs(RAW_KEY))
        for _ in range(2):
            store.write(0, b"same" * 128)
            store.commit()
            await store.flush()
            payloads.append(_STORES[name].blocks[(MAIN, 0)].payload)
        await store.close()
    finally:
        _STORES.pop(name, None)
    first, second = payloads
    assert len(first) == 512 + OVERHEAD
    assert first[:NONCE_BYTES] != second[:NONCE_BYTES]
    assert first[NONCE_BYTES:] != second[NONCE_BYTES:]


async def test_rekey_then_reopen_works_with_the_new_key_and_not_the_old(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    new_key = os.urandom(32)

    db = await datasync.open(db_name, backend=backend_kind, encryption_key=PASSPHRASE)
    await _write_marker(db, rows=200)
    await db.execute("DELETE FROM t WHERE id > 150")  # committed, not yet flushed
    version = await db.rekey(new_key)
    assert version == db.version and db.encrypted
    await db.execute("INSERT INTO t(body) VALUES ('after rekey')")
    await db.close()
    with pytest.raises(WrongKeyError):
        await datasync.open(db_name, backend=backend_kind, encryption_key=PASSPHRASE)
    db = await datasync.open(db_name, backend=backend_kind, encryption_key=new_key)
    assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 151}]
    assert await db.query("PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    await db.close()


async def test_rekey_encrypts_an_unencrypted_store_and_none_decrypts_it(db_name, backend_kind) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend=backend_kind)
    await _write_marker(db)
    await db.rekey(RAW_KEY)
    await db.close()
    with pytest.raises(WrongKeyError):
        await datasync.open(db_name, backend=backend_kind)
    db = await datasync.open(db_name, backend=backend_kind, encryption_key=RAW_KEY)
    await db.rekey(None)
    assert not db.encrypted
    await db.close()
    db = await datasync.open(db_name, backend=backend_kind)
    assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 50}]
    await db.close()


async def test_encrypting_a_plain_file_store_leaves_no_plaintext_on_disk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "was-plain.dsdb")

    db = await datasync.open(path, retain_versions=3)
    await _write_marker(db, rows=400)
    await db.sync()
    await db.execute("UPDATE t SET body = body || ' edited'")  # history + freed pages
    await db.sync()
    assert MARKER.encode() in _store_files(path)  # the check can fail
    await db.rekey(RAW_KEY)
    assert MARKER.encode() not in _store_files(path)  # WAL included, while open
    await db.close()
    assert MARKER.encode() not in _store_files(path)
    db = await datasync.open(path, encryption_key=RAW_KEY)
    assert await db.query("SELECT count(*) AS n FROM t WHERE body LIKE '% edited'") == [{"n": 400}]
    await db.close()


async def test_a_scrub_that_fails_after_a_rekey_says_the_rekey_is_done(db_name) -> None:  # type: ignore[no-untyped-def]
    db = await datasync.open(db_name, backend="memory")
    await _write_marker(db)

    async def broken_scrub() -> None:
        raise datasync.BackendError("the disk went away")

    db._store.backend.scrub = broken_scrub  # type: ignore[method-assign]
    with pytest.raises(datasync.BackendError, match="the rekey is done .* the disk went away"):
        await db.rekey(RAW_KEY)
    assert db.encrypted
    await db.close()
    db = await datasync.open(db_name, backend="memory", encryption_key=RAW_KEY)
    assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 50}]
    await db.close()


async def test_a_rekey_that_fails_midway_leaves_the_old_key_and_data() -> None:
    name = "enc-rekey-fail"
    try:
        db = await datasync.open(name, backend="memory", encryption_key=RAW_KEY)
        await _write_marker(db, rows=200)
        await db.sync()

        def fail(stage: str, detail: int) -> None:
            if stage == "block" and detail == 3:
                raise OSError("disk gone")

        db._store.backend.fault_hook = fail
        with pytest.raises(OSError):
            await db.rekey("another passphrase")
        db._store.backend.fault_hook = None
        assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 200}]
        await db.close()
        with pytest.raises(WrongKeyError):
            await datasync.open(name, backend="memory", encryption_key="another passphrase")
        db = await datasync.open(name, backend="memory", encryption_key=RAW_KEY)
        assert await db.query("SELECT count(*) AS n FROM t") == [{"n": 200}]
        await db.close()
    finally:
        _STORES.pop(name, None)


async def test_export_is_plaintext_sqlite_and_import_into_an_encrypted_store_encrypts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "exp.dsdb")
    db = await datasync.open(path, encryption_key=RAW_KEY)
    await _write_marker(db)
    image = await db.export()
    await db.execute("DROP TABLE t")
    await db.import_(image)
    await db.close()
    assert image.startswith(b"SQLite format 3\x00") and MARKER.encode() in image
    assert MARKER.encode() not in _store_files(path)
    db = await datasync.open(path, encryption_key=RAW_KEY)
    n = (await db.query("SELECT count(*) AS n FROM t"))[0]["n"]
    await db.close()
    assert int(n) == 50


def test_records_decode_with_an_independent_aes_gcm_implementation() -> None:
    """The stored format is exactly nonce || AES-256-GCM(data, AAD) as documented
    (what the browser's WebCrypto computes too)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    codec = EncryptedCodec(NativeCipher(RAW_KEY), "db-1234")
    rec = codec.encode(MAIN, 9, 4, b"x" * 4096)
    nonce, sealed = rec.payload[:NONCE_BYTES], rec.payload[NONCE_BYTES:]
    assert AESGCM(RAW_KEY).decrypt(nonce, sealed, block_aad("db-1234", MAIN, 9, 4)) == b"x" * 4096
    assert codec.decode(MAIN, 9, rec) == b"x" * 4096
    with pytest.raises(CorruptBlockError):  # another database's id: refused
        EncryptedCodec(NativeCipher(RAW_KEY), "db-5678").decode(MAIN, 9, rec)


async def test_passphrase_derivation_is_pbkdf2_hmac_sha256() -> None:
    # RFC 7914 section 11 test vector for PBKDF2-HMAC-SHA256 (first 32 bytes).
    got = await derive_key("passwd", b"salt", 1)
    assert got.hex() == "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"


def test_a_store_created_without_its_key_check_gets_one_at_the_next_open() -> None:
    """Creation writes the metadata (check null), then the key check: a crash in
    between leaves an empty store that the next open with a key completes."""
    name = "enc-no-check"
    backend = MemoryBackend(name)
    meta = Meta.new(512)
    run_now(backend.open(replace(meta, extra={"encryption": new_scheme(RAW_KEY)})))
    try:
        store = BlockStore.open_sync(MemoryBackend(name), block_size=512, codecs=codecs(RAW_KEY))
        assert store.version == 1 and store.meta.extra["encryption"]["check"]
        store.close_sync()
        with pytest.raises(WrongKeyError):
            BlockStore.open_sync(MemoryBackend(name), block_size=512, codecs=codecs(bytes(32)))
        # With data in it, a missing check is damage, not an unfinished creation.
        stored = _STORES[name]
        scheme = {**stored.meta.extra["encryption"], "check": None}
        stored.meta = replace(stored.meta, extra={"encryption": scheme})
        with pytest.raises(WrongKeyError, match="damaged"):
            BlockStore.open_sync(MemoryBackend(name), block_size=512, codecs=codecs(RAW_KEY))
    finally:
        _STORES.pop(name, None)


async def test_an_open_that_starts_over_derives_the_key_once(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """KeyCodecs keeps the codec per key identity: an open that starts over (another
    writer flushed meanwhile) runs PBKDF2 (600,000 iterations) once, not per try."""
    from datasync import encryption

    calls = []
    real = encryption.open_codec

    async def counting(meta, key, *, where="store"):  # type: ignore[no-untyped-def]
        calls.append(meta.version)
        return await real(meta, key, where=where)

    monkeypatch.setattr(encryption, "open_codec", counting)
    key = encryption.codecs("a passphrase")
    meta = replace(Meta.new(4096), extra=key.new_store_extra())
    codec, to_write = await key.codec_for(meta)
    assert to_write is not None  # a new store: its key check is written, not cached
    first, _ = await key.codec_for(to_write)
    again, _ = await key.codec_for(replace(to_write, version=to_write.version + 3))
    assert again is first and len(calls) == 2
