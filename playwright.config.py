"""How datasync's tests and tools launch a browser and serve the project.

Example (a file named with a dot is loaded by path, see ``load()``)::

    config = load()
    with sync_playwright() as p, config.server() as srv:
        browser = config.launch(p)
        page = browser.new_page(); page.goto(srv.url + "demo/")

The browser: ``$DATASYNC_CHROMIUM`` if set (a path to any Chromium), else Debian's
``/usr/bin/chromium`` if present, else Playwright's own Chromium (installed with
``playwright install chromium`` on machines that can download it). The flags keep
Chromium from calling out to the network, which is closed on CI machines.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

ENV_VAR = "DATASYNC_CHROMIUM"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ROOT = Path(__file__).resolve().parent


def chromium_executable() -> str | None:
    """The Chromium to launch, or None for Playwright's own."""
    chosen = os.environ.get(ENV_VAR)
    if chosen:
        if not (os.path.isfile(chosen) or shutil.which(chosen)):
            raise FileNotFoundError(f"{ENV_VAR}={chosen!r} is not an executable")
        return chosen
    return DEBIAN_CHROMIUM if os.path.exists(DEBIAN_CHROMIUM) else None


def _options(headless: bool, extra: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"headless": headless, "args": list(CHROMIUM_ARGS)}
    exe = chromium_executable()
    if exe:
        options["executable_path"] = exe
    options.update(extra)
    return options


def launch(playwright: Any, *, headless: bool = True, **extra: Any) -> Any:
    """A Chromium browser (its contexts keep IndexedDB in memory)."""
    return playwright.chromium.launch(**_options(headless, extra))


def launch_persistent(playwright: Any, user_data_dir: str | os.PathLike[str], *,
                      headless: bool = True, **extra: Any) -> Any:
    """A persistent context: IndexedDB on disk in ``user_data_dir``, so data
    survives a crash or a browser restart."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), **_options(headless, extra))


def server(coop_coep: bool = False) -> Any:
    """Serve the project root (``js/``, ``demo/``, ``web/``) on a free localhost port,
    in a background thread, for a ``with`` block; ``.url`` is its base URL."""
    from datasync.tools.serve import serving

    return serving(root=ROOT, port=0, coop_coep=coop_coep)


def load() -> ModuleType:
    """This file as a module (its name has a dot, so it cannot be imported)."""
    spec = importlib.util.spec_from_file_location("datasync_playwright_config", __file__)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
