"""lastInsertRowid beyond 2**53 reaches JS as a BigInt, as README promises, whichever
way the result crosses (JSON text for plain values, Pyodide's proxies otherwise), in
one tab alone and in shared mode (found in the issue-11 review)."""
from __future__ import annotations

from typing import Any

import pytest

from pyodide_page import blank_pages


@pytest.mark.parametrize("options", [{"tabs": False}, {}])
def test_last_insert_rowid_beyond_2_53_keeps_its_value(context: Any, server: Any,
                                                         options: dict) -> None:
    (page,) = blank_pages(context, server, 1)
    got = page.evaluate("""async (options) => {
      const { DataSync } = await import('/js/datasync.js');
      const db = await DataSync.open('rowid-' + Object.keys(options).length, options);
      await db.exec('CREATE TABLE IF NOT EXISTS big(id INTEGER PRIMARY KEY, v)');
      await db.execute('INSERT INTO big VALUES (?, 1)', [2n ** 60n + 1n]);
      const r = await db.execute('INSERT INTO big(v) VALUES (2)');   // rowid 2**60 + 2
      const v = r.lastInsertRowid;
      await db.close();
      return [typeof v, String(v)];
    }""", options)
    assert got == ["bigint", str(2 ** 60 + 2)], got
