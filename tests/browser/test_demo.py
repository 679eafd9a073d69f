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
    assert page.inner_text("#badge") == "Saved locally"
    page.reload()
    _ready(page)
    page.wait_for_function("document.querySelectorAll('.item').length === 2")
    assert page.locator(".item .title").all_inner_texts() == ["Buy oat milk", "Write the report"]
    assert page.locator(".item.done .title").all_inner_texts() == ["Write the report"]
    page.click("#clear-done")
    page.wait_for_function("document.querySelectorAll('.item').length === 1")
    page.wait_for_timeout(1100)  # the storage panel refreshes every second
    assert int(page.inner_text("#st-version")) >= 1
    Path(ROOT / "build").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "build" / "demo.png"))
    assert errors == []
