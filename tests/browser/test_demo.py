"""The demo app, driven like a person would: add, complete, delete, reload."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pyodide_page import ROOT


def _ready(page: Any) -> None:
    page.wait_for_selector("#loading[hidden]", state="attached", timeout=60_000)


def test_demo_tasks_are_added_completed_deleted_and_survive_a_reload(context: Any, server: Any) -> None:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server.url + "demo/")
    _ready(page)
    for count, title in enumerate(["Buy oat milk", "Write the report", "Call the plumber"], 1):
        page.fill("#new-title", title)
        page.press("#new-title", "Enter")
        page.wait_for_function(f"document.querySelectorAll('.item').length === {count}")
    page.locator(".item", has_text="Write the report").locator("input[type=checkbox]").check()
    page.wait_for_selector(".item.done")
    page.locator(".item", has_text="Call the plumber").locator(".delete").click()
    page.wait_for_function("document.querySelectorAll('.item').length === 2")
    assert page.inner_text("#counts") == "1 open · 1 done"
    assert page.inner_text("#badge").startswith("Leader")
    page.reload()
    _ready(page)
    page.wait_for_function("document.querySelectorAll('.item').length === 2")
    assert page.locator(".item .title").all_inner_texts() == ["Buy oat milk", "Write the report"]
    assert page.locator(".item.done .title").all_inner_texts() == ["Write the report"]
    page.click("#clear-done")
    page.wait_for_function("document.querySelectorAll('.item').length === 1")
    # Importing a file that is not SQLite says why, and never "Imported" after it.
    page.set_input_files("#import", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                            "buffer": b"just some text, not a database"}])
    page.wait_for_selector("#message.error", timeout=15_000)
    message = page.inner_text("#message")
    page.wait_for_timeout(300)
    assert "Imported" not in page.inner_text("#message") and "SQLite" in message
    assert page.locator(".item").count() == 1  # nothing was replaced
    page.wait_for_timeout(1100)  # the storage panel refreshes every second
    assert int(page.inner_text("#st-version")) >= 1
    Path(ROOT / "build").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "build" / "demo.png"), full_page=True)
    assert errors == []


def test_demo_a_task_added_in_one_tab_shows_up_in_the_other(context: Any, server: Any) -> None:
    first, second = context.new_page(), context.new_page()
    for page in (first, second):
        page.set_viewport_size({"width": 1100, "height": 720})
        page.goto(server.url + "demo/")
        _ready(page)
    first.fill("#new-title", "Added in the first tab")
    first.press("#new-title", "Enter")
    second.wait_for_function(
        "[...document.querySelectorAll('.item .title')].some(e => e.textContent === 'Added in the first tab')",
        timeout=15_000)
    second.fill("#new-title", "Added in the second tab")
    second.press("#new-title", "Enter")
    first.wait_for_function(
        "[...document.querySelectorAll('.item .title')].some(e => e.textContent === 'Added in the second tab')",
        timeout=15_000)
    badges = sorted(p.inner_text("#badge").split(" ")[0] for p in (first, second))
    assert badges == ["Follower", "Leader"]
    follower = first if first.inner_text("#badge").startswith("Follower") else second
    # The metrics panel: this tab's own figures, refreshed every second.
    for page in (first, second):
        # refreshed since the tasks were added: db.cached() saw them (a write to tasks
        # in any tab invalidates its entry), and counted hits and misses
        page.wait_for_function("document.getElementById('mt-oldest').textContent === 'just now'",
                               timeout=15_000)
        assert "% of " in page.inner_text("#mt-cache")
        reads, writes, _ = (int(n) for n in page.inner_text("#mt-statements").split(" · "))
        assert reads > 0 and writes >= 1  # at least the task this tab added
        assert page.inner_text("#mt-read").endswith(" ms")
        open_live, runs = (int(n) for n in page.inner_text("#mt-live").split(" · "))
        assert open_live == 2 and runs >= 2  # the list and its counts, run at least once each
        assert page.inner_text("#mt-errors") == "0"
    for page in (first, second):  # two tabs; the follower's add went to the leader
        page.wait_for_function("document.getElementById('mt-tabs').textContent.startsWith('2 · ')",
                               timeout=15_000)
    assert int(follower.inner_text("#mt-tabs").split(" · ")[1]) >= 1
    # The query plan: a full scan flagged, its index suggested; created from one tab,
    # it serves the other's plan too.
    for page in (first, second):
        page.wait_for_selector("#plan-tree .flag")
        assert page.inner_text("#plan-verdict") == "Full scan of tasks"
        assert '"tasks"("done")' in page.inner_text("#plan-suggestions")
    Path(ROOT / "build").mkdir(exist_ok=True)
    first.screenshot(path=str(ROOT / "build" / "demo-tab1.png"), full_page=True)
    second.screenshot(path=str(ROOT / "build" / "demo-tab2.png"), full_page=True)
    indexed = "document.getElementById('plan-verdict').textContent === 'Every table is read through an index'"
    follower.click("#plan-suggestions button")
    follower.wait_for_function(indexed, timeout=15_000)
    assert follower.locator("#plan-tree .flag").count() == 0
    assert follower.locator("#plan-suggestions li").count() == 0
    other = second if follower is first else first
    other.click("#plan-run")
    other.wait_for_function(indexed, timeout=15_000)
    follower.screenshot(path=str(ROOT / "build" / "demo-indexed.png"), full_page=True)


def test_demo_follower_on_a_phone_screen_shows_one_line_badge_and_no_zero_flushes(
        context: Any, server: Any) -> None:
    leader, follower = context.new_page(), context.new_page()
    leader.goto(server.url + "demo/")
    _ready(leader)
    follower.set_viewport_size({"width": 390, "height": 844})
    follower.goto(server.url + "demo/")
    _ready(follower)
    assert follower.inner_text("#badge") == "Follower"  # knows its leader from the start
    badge = follower.evaluate("""() => { const b = document.getElementById('badge');
        const r = b.getBoundingClientRect();
        return {height: r.height, line: parseFloat(getComputedStyle(b).lineHeight) || 20,
                right: r.right, width: document.documentElement.clientWidth}; }""")
    assert badge["height"] < 2 * badge["line"], badge  # one line
    assert badge["right"] <= badge["width"], badge      # on screen
    follower.wait_for_timeout(1100)
    assert follower.inner_text("#st-flushes") == "–"   # the leader flushes, not this tab
    assert leader.inner_text("#st-flushes") not in ("–", "0")
    Path(ROOT / "build").mkdir(exist_ok=True)
    follower.screenshot(path=str(ROOT / "build" / "demo-390px.png"))


def test_demo_worker_toggle_keeps_the_main_thread_free(context: Any, server: Any) -> None:
    page = context.new_page()
    page.goto(server.url + "demo/")
    _ready(page)
    page.check("#worker")  # reloads with the database in a Worker
    page.wait_for_url("**/demo/?worker=1")
    _ready(page)
    assert page.is_checked("#worker")
    page.fill("#new-title", "From the worker")
    page.press("#new-title", "Enter")
    page.wait_for_function("document.querySelectorAll('.item').length >= 1")
    longest = page.evaluate("""() => new Promise((done) => {
        let longest = 0;
        new PerformanceObserver((l) => { for (const t of l.getEntries())
            longest = Math.max(longest, t.duration); })
          .observe({type: 'longtask', buffered: true});
        setTimeout(() => done(longest), 100); })""")
    assert longest <= 50, f"a {longest} ms task blocked the page's main thread"
    assert page.inner_text("#st-main") == "never blocked over 50 ms"
