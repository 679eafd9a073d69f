"""Real Chromium: encrypted IndexedDB stores (WebCrypto) and one format with native."""
from __future__ import annotations

import asyncio
import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyodide_page import PyPage, config

import datasync  # noqa: F401  (the worktree's own, via pyodide_page's sys.path)
from datasync.backends import MemoryBackend
from datasync.backends.memory import _STORES
from datasync.blockstore import BlockStore
from datasync.encryption import codecs, open_codec
from datasync.format import MAIN, Meta, Record

MARKER = "quokka-MARKER-8e2f71-plaintext"
PASSPHRASE = "browser passphrase ✓"

WRITE = """
import datasync
db = await datasync.open(%(name)r, encryption_key=%(key)r)
await db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT)")
await db.executemany("INSERT INTO t(body) VALUES (?)",
                     [(%(marker)r + " " + str(i) * 40,) for i in range(%(rows)d)])
await db.close()
"""

#: Every record of the IDB database datasync:<name>, searched for the marker in JS.
DUMP = """async ([name, marker]) => {
  const req = (r) => new Promise((ok, bad) => { r.onsuccess = () => ok(r.result); r.onerror = () => bad(r.error); });
  const db = await req(indexedDB.open('datasync:' + name));
  const text = (v) => {
    if (v instanceof Uint8Array) { let s = ''; for (let i = 0; i < v.length; i += 8192) s += String.fromCharCode(...v.subarray(i, i + 8192)); return s; }
    if (v && typeof v === 'object') return Object.values(v).map(text).join('|');
    return String(v);
  };
  const out = {found: [], counts: {}};
  for (const store of ['blocks', 'segments', 'meta']) {
    const values = await req(db.transaction(store).objectStore(store).getAll());
    out.counts[store] = values.length;
    values.forEach((v, i) => { if (text(v).includes(marker)) out.found.push(store + '#' + i); });
  }
  db.close();
  return out;
}"""


def test_encrypted_indexeddb_round_trips_across_a_reload_and_stores_no_plaintext(
        pypage: PyPage) -> None:
    pypage.run(WRITE % {"name": "secret", "key": PASSPHRASE, "marker": MARKER, "rows": 1500})
    pypage.run(WRITE % {"name": "plain", "key": None, "marker": MARKER, "rows": 1500})
    secret = pypage.page.evaluate(DUMP, ["secret", MARKER])
    plain = pypage.page.evaluate(DUMP, ["plain", MARKER])
    assert plain["found"], plain  # the search does find plaintext when it is there
    assert secret["found"] == [], secret
    assert secret["counts"]["segments"] > 0 and secret["counts"]["meta"] >= 1, secret
    pypage.reload()
    got = pypage.run("""
import datasync
from datasync.errors import WrongKeyError
errors = []
for key in ("a wrong passphrase", None, bytes(32)):
    try:
        await datasync.open("secret", encryption_key=key)
    except WrongKeyError as exc:
        errors.append(type(exc).__name__)
db = await datasync.open("secret", encryption_key=%r)
rows = await db.query("SELECT count(*) AS n, min(body) AS first FROM t")
check = await db.query("PRAGMA integrity_check")
await db.execute("INSERT INTO t(body) VALUES ('after reload')")
await db.close()
[errors, rows[0]["n"], rows[0]["first"][:len(%r)], check[0]["integrity_check"]]
""" % (PASSPHRASE, MARKER))
    assert got == [["WrongKeyError"] * 3, 1500, MARKER, "ok"]


def test_rekey_encrypts_a_compacted_plain_indexeddb_store_and_decrypts_it_again(
        pypage: PyPage) -> None:
    # Plain records are block-sized, encrypted ones 28 bytes longer: the segments
    # packed before the rekey must give way to the rekeyed blocks.
    pypage.run(WRITE % {"name": "convert", "key": None, "marker": MARKER, "rows": 1500})
    assert pypage.page.evaluate(DUMP, ["convert", MARKER])["counts"]["segments"] > 0
    pypage.run("""
import datasync
db = await datasync.open("convert")
await db.rekey(%r)
await db.execute("INSERT INTO t(body) VALUES ('after rekey')")
await db.close()
""" % PASSPHRASE)
    dump = pypage.page.evaluate(DUMP, ["convert", MARKER])
    assert dump["found"] == [] and dump["counts"]["segments"] > 0, dump
    got = pypage.run("""
import datasync
db = await datasync.open("convert", encryption_key=%r)
n1 = (await db.query("SELECT count(*) AS n FROM t"))[0]["n"]
ok1 = (await db.query("PRAGMA integrity_check"))[0]["integrity_check"]
await db.rekey(None)
await db.close()
db = await datasync.open("convert")
n2 = (await db.query("SELECT count(*) AS n FROM t"))[0]["n"]
ok2 = (await db.query("PRAGMA integrity_check"))[0]["integrity_check"]
await db.close()
[n1, ok1, n2, ok2]
""" % PASSPHRASE)
    assert got == [1501, "ok", 1501, "ok"]
    # Without WebCrypto (an insecure context) the error says what to do.
    pypage.page.evaluate(
        "() => Object.defineProperty(Object.getPrototypeOf(crypto), 'subtle', {get: () => undefined})")
    message = pypage.run("""
import datasync
try:
    await datasync.open("nosubtle", encryption_key=bytes(32))
    result = None
except datasync.DatasyncError as exc:
    result = str(exc)
result
""")
    assert message is not None and "secure contexts" in message, message


JS_OPEN_WRITE_REKEY = """async () => {
  const { DataSync } = await import('/js/datasync.js');
  const key = new Uint8Array(32).map((_, i) => i * 7);
  const db = await DataSync.open('jssecret', {encryptionKey: key});
  await db.execute('CREATE TABLE t(body TEXT)');
  await db.execute('INSERT INTO t VALUES (?)', ['js secret row']);
  const encrypted = db.stats().encrypted;
  await db.rekey('the new passphrase');
  await db.close();
  let wrong = null;
  try { await DataSync.open('jssecret', {encryptionKey: key}); } catch (e) { wrong = e.name; }
  const again = await DataSync.open('jssecret', {encryptionKey: 'the new passphrase'});
  const rows = await again.query('SELECT body FROM t');
  await again.close();
  const shared = await DataSync.open('jstabs', {encryptionKey: 'x', tabs: true});
  await shared.execute('CREATE TABLE t(v)');
  await shared.execute("INSERT INTO t VALUES ('shared secret')");
  const tabs = (await shared.query('SELECT v FROM t'))[0].v;
  await shared.rekey('y');  // a lone multi-tab page rekeys too
  await shared.close();
  let tabsOld = null;
  try { await DataSync.open('jstabs', {encryptionKey: 'x', tabs: true}); } catch (e) { tabsOld = e.name; }
  const reopened = await DataSync.open('jstabs', {encryptionKey: 'y', tabs: true});
  const tabsRekey = (await reopened.query('SELECT v FROM t'))[0].v;
  await reopened.close();
  return {encrypted, wrong, rows, tabs, tabsOld, tabsRekey};
}"""


def test_js_api_opens_with_a_uint8array_key_and_rekeys_to_a_passphrase(
        pw: Any, profile, server, manifest) -> None:  # type: ignore[no-untyped-def]
    ctx = config.launch_persistent(pw, profile)
    try:
        page = ctx.new_page()
        page.goto(server.url + "tests/browser/blank.html")
        got = page.evaluate(JS_OPEN_WRITE_REKEY)
    finally:
        ctx.close()
    assert got == {"encrypted": True, "wrong": "WrongKeyError",
                   "rows": [{"body": "js secret row"}], "tabs": "shared secret",
                   "tabsOld": "WrongKeyError", "tabsRekey": "shared secret"}


def _native(coro: Any) -> Any:
    """Run a coroutine natively: in a thread of its own, since Playwright's sync API
    keeps an event loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _records_json(records: dict[int, Record]) -> str:
    return json.dumps({str(i): [r.version, r.checksum, _b64(r.payload)]
                       for i, r in records.items()})


def _records_from_json(text: str) -> dict[int, Record]:
    return {int(i): Record(v, c, base64.b64decode(p)) for i, (v, c, p) in json.loads(text).items()}


#: Python run in the page: decode the native vectors with WebCrypto, then make a
#: store of its own in IndexedDB and hand back its metadata and raw records.
BROWSER_SIDE = """
import base64, json, datasync
from datasync.browser.indexeddb import IndexedDBBackend
from datasync.blockstore import BlockStore
from datasync.browser.webcrypto import WebCipher
from datasync.encryption import codecs, open_codec
from datasync.format import MAIN, Meta, Record

vec = json.loads(%(vectors)r)
records = {int(i): Record(v, c, base64.b64decode(p)) for i, (v, c, p) in vec["records"].items()}
codec, to_write = await open_codec(Meta.from_json(vec["meta"]), vec["passphrase"])
decoded = await codec.decode_many(MAIN, records)
native_ok = all(decoded[int(i)] == base64.b64decode(p) for i, p in vec["plain"].items())
assert isinstance(codec.cipher, WebCipher) and to_write is None

# A synchronous backend in Pyodide: WebCrypto decodes in batches, so every block is
# kept resident, from the open or from the rekey that encrypted the store.
mem = await datasync.open("encmem", backend="memory")
await mem.execute("CREATE TABLE t(x)")
await mem.execute("INSERT INTO t VALUES ('in memory')")
before = mem.stats()["resident_blocks"]
await mem.rekey(vec["passphrase"])
after = mem.stats()["resident_blocks"]
mem_rows = await mem.query("SELECT x FROM t")
await mem.close()
mem = await datasync.open("encmem", backend="memory", encryption_key=vec["passphrase"])
mem_rows += await mem.query("SELECT x FROM t")
await mem.close()
mem_ok = mem_rows == [{"x": "in memory"}] * 2 and before is None and after >= 2

store = await BlockStore.open(IndexedDBBackend("vectors"), block_size=512,
                              codecs=codecs(vec["passphrase"]))
for i in range(3):
    store.write(i * 512, bytes([65 + i]) * 512)
store.commit()
await store.flush()
meta = store.meta.to_json()
raw = await store.backend.read_all(MAIN)
await store.close()
json.dumps([native_ok and mem_ok, meta, {str(i): [r.version, r.checksum, base64.b64encode(r.payload).decode()]
                             for i, r in raw.items()}])
"""


def test_records_encrypted_natively_decode_in_the_browser_and_the_reverse(pypage: PyPage) -> None:
    plain = {i: os.urandom(512) for i in range(4)}

    async def native_store() -> tuple[str, dict[int, Record]]:
        store = await BlockStore.open(MemoryBackend("enc-vectors"), block_size=512,
                                      codecs=codecs(PASSPHRASE))
        for i, data in plain.items():
            store.write(i * 512, data)
        store.commit()
        await store.flush()
        meta, records = store.meta.to_json(), await store.backend.read_all(MAIN)
        await store.close()
        return meta, records

    try:
        meta, records = _native(native_store())
    finally:
        _STORES.pop("enc-vectors", None)
    vectors = json.dumps({"meta": meta, "passphrase": PASSPHRASE,
                          "records": json.loads(_records_json(records)),
                          "plain": {str(i): _b64(d) for i, d in plain.items()}})
    native_ok, browser_meta, browser_records = json.loads(
        pypage.run(BROWSER_SIDE % {"vectors": vectors}))
    # WebCrypto (and its PBKDF2) read the native records; a memory store works too.
    assert native_ok is True

    async def decode_natively() -> dict[int, bytes]:
        codec, _ = await open_codec(Meta.from_json(browser_meta), PASSPHRASE)
        return await codec.decode_many(MAIN, _records_from_json(json.dumps(browser_records)))

    assert _native(decode_natively()) == {i: bytes([65 + i]) * 512 for i in range(3)}
