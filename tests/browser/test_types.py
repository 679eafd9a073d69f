"""js/datasync.d.ts says what datasync.js does: it compiles an app's usage under
`tsc --strict` (refusing what the JS refuses), and its methods, open options and error
names are the ones the JS module, the bridge and datasync/__init__.py have."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pyodide_page import ROOT

DTS = (ROOT / "js" / "datasync.d.ts").read_text()
APP_DTS = (ROOT / "js" / "app.d.ts").read_text()  # AppCalls, which Database extends


def _typescript(tmp_path: Path) -> Path:
    """tsc: node_modules' (make install), else installed offline from npm's cache."""
    tsc = ROOT / "node_modules" / "typescript" / "bin" / "tsc"
    if tsc.is_file():
        return tsc
    version = json.loads((ROOT / "package.json").read_text())["devDependencies"]["typescript"]
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed")
    done = subprocess.run([npm, "install", "--offline", "--no-save", "--no-audit", "--no-fund",
                           "--prefix", str(tmp_path), f"typescript@{version}"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.skip(f"typescript {version} is not installed: run `make install` ({done.stderr[-300:]})")
    return tmp_path / "node_modules" / "typescript" / "bin" / "tsc"


def test_an_apps_usage_compiles_strictly_and_what_js_refuses_does_not(tmp_path: Path) -> None:
    tsc = _typescript(tmp_path)
    done = subprocess.run(
        ["node", str(tsc), "--noEmit", "--strict", "--target", "es2022", "--module", "esnext",
         "--moduleResolution", "bundler", "--lib", "es2022,dom", "types_usage.ts"],
        cwd=ROOT / "tests" / "browser", capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr  # incl. unused @ts-expect-error


def _declared_methods(cls: str, dts: str = DTS) -> set[str]:
    body = re.search(rf"export class {cls} [^{{]*\{{(.*?)\n\}}", dts, re.S).group(1)
    return set(re.findall(r"^  (\w+)(?:<[^>]*>)?\(", body, re.M)) - {"constructor"}


def test_the_declared_methods_are_the_modules() -> None:
    listing = subprocess.run(
        ["node", "--input-type=module", "-e",
         "const m = await import(process.argv[1]);"
         "const own = (c) => { const names = [];"
         " for (let p = c.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p))"
         " names.push(...Object.getOwnPropertyNames(p).filter((n) => n !== 'constructor'));"
         " return names; };"
         "console.log(JSON.stringify({db: own(m.Database), tx: own(m.Transaction),"
         " open: Object.keys(m.DataSync), exports: Object.keys(m)}));",
         str(ROOT / "js" / "datasync.js")],
        capture_output=True, text=True, timeout=60, check=True)
    js = json.loads(listing.stdout)
    # Database extends AppCalls (js/app.js; declared in js/app.d.ts): both, as one
    assert _declared_methods("Database") | _declared_methods("AppCalls", APP_DTS) == set(js["db"])
    assert {"migrate", "liveQuery", "metrics", "explain"} <= set(js["db"])
    assert _declared_methods("Transaction") == set(js["tx"])
    assert set(js["exports"]) == {"DataSync", "DataSyncError", "Database", "Transaction",
                                  "forwardLifecycle", "default"}


def test_every_open_option_and_python_error_name_is_declared() -> None:
    import datasync
    from datasync.browser.values import OPEN_OPTIONS

    options = re.search(r"export interface OpenOptions \{(.*?)\n\}", DTS, re.S).group(1)
    declared = set(re.findall(r"^  (\w+)\?:", options, re.M))
    assert declared == set(OPEN_OPTIONS) | {"webURL", "indexURL", "pyodide", "stackSwitching",
                                            "worker", "onConflict"}
    union = re.search(r"export type DatasyncErrorName =(.*?);", DTS, re.S).group(1)
    names = set(re.findall(r'"(\w+)"', union))
    exported = {n for n in datasync.__all__ if n.endswith("Error")}
    assert names == exported
