"""Real Chromium: several pages of one app share one database."""
from __future__ import annotations

from typing import Any

OPEN = """async (name) => {
  const { DataSync } = await import('/js/datasync.js');
  window.db = await DataSync.open(name, {tabs: true});
  window.changes = [];
  window.db.onChange((c) => window.changes.push(c.version));
  return window.db.getLeaderInfo();
}"""

INSERT_100 = """async (who) => {
  await window.db.execute('CREATE TABLE IF NOT EXISTS t(who TEXT, i INTEGER, UNIQUE(who, i))');
  const results = [];
  for (let i = 0; i < 100; i++) {
    results.push(window.db.execute('INSERT INTO t VALUES (?, ?)', [who, i]));
  }
  return (await Promise.all(results)).length;
}"""


def _pages(context: Any, server: Any, n: int) -> list[Any]:
    pages = []
    for _ in range(n):
        page = context.new_page()
        page.goto(server.url + "tests/browser/blank.html")
        pages.append(page)
    return pages


def test_four_pages_inserting_at_once_give_exactly_400_rows(context: Any, server: Any) -> None:
    pages = _pages(context, server, 4)
    infos = [p.evaluate(OPEN, "shared") for p in pages]
    assert sum(1 for i in infos if i["isLeader"]) <= 1
    handles = [p.evaluate_handle(f"window.run = ({INSERT_100})('p{k}')") for k, p in enumerate(pages)]
    done = [p.evaluate("window.run") for p in pages]
    assert done == [100, 100, 100, 100]
    for page in pages:
        rows = page.evaluate("() => window.db.query('SELECT who, count(*) AS n, count(DISTINCT i) AS d FROM t GROUP BY who ORDER BY who')")
        assert rows == [{"who": f"p{k}", "n": 100, "d": 100} for k in range(4)]
    leaders = [p.evaluate("() => window.db.getLeaderInfo()") for p in pages]
    assert sum(1 for i in leaders if i["isLeader"]) == 1
    assert len({i["leaderId"] for i in leaders}) == 1
    follower = next(p for p, i in zip(pages, leaders) if not i["isLeader"])
    assert follower.evaluate("() => window.changes.length") > 0  # onChange fired
    del handles


STREAM = """async (who) => {
  window.acked = []; window.failed = [];
  await window.db.execute('CREATE TABLE IF NOT EXISTS s(k TEXT)');
  window.stream = (async () => {
    for (let i = 0; i < 60; i++) {
      const k = who + '-' + i;
      try { await window.db.execute('INSERT INTO s VALUES (?)', [k]); window.acked.push(k); }
      catch (e) { window.failed.push([k, e.name]); }
    }
  })();
  return true;
}"""


def test_leader_crash_mid_stream_elects_a_new_leader_and_loses_nothing(context: Any, server: Any) -> None:
    pages = _pages(context, server, 3)
    for p in pages:
        p.evaluate(OPEN, "crashy")
    pages[0].evaluate("() => window.db.waitForLeadership()")
    leader = next(p for p in pages if p.evaluate("() => window.db.isLeader()"))
    followers = [p for p in pages if p is not leader]
    for k, p in enumerate(followers):
        p.evaluate(STREAM, f"f{k}")
    followers[0].wait_for_function("() => window.acked.length >= 5", timeout=30_000)
    session = context.new_cdp_session(leader)
    try:
        session.send("Page.crash", timeout=2000)
    except Exception:
        pass  # a crashed target does not answer
    for p in followers:
        p.evaluate("() => window.stream")
    infos = [p.evaluate("() => window.db.getLeaderInfo()") for p in followers]
    assert sum(1 for i in infos if i["isLeader"]) == 1
    new_leader = next(p for p, i in zip(followers, infos) if i["isLeader"])
    acked = [k for p in followers for k in p.evaluate("() => window.acked")]
    failed = [f for p in followers for f in p.evaluate("() => window.failed")]
    rows = [r["k"] for r in new_leader.evaluate("() => window.db.query('SELECT k FROM s')")]
    assert len(rows) == len(set(rows)), "a write was applied twice"
    assert set(acked) <= set(rows), "a resolved write was lost"
    assert len(acked) + len(failed) == 120
    assert all(name for _, name in failed)  # failures are named errors, never silence
    assert infos[0]["epoch"] >= 2
