"""datasync.tools: the browser bundle (web/) and the local static server. Native, no browser.

The bundle needs ``node_modules/pyodide`` (``npm ci``, run by ``make install``) and, on a
first run, the package index for the micropip and packaging wheels (then cached in
``build/wheels/``).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from datasync import tools
from datasync.tools import build, cli, serve
from datasync.tools import wheels as wheel_tools
from helpers import http_get as get
from helpers import parse_cli as _parse

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "wheels"


def _pyproject_version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return str(tomllib.load(f)["project"]["version"])


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A frozen copy of the checkout's package sources (with its node_modules linked in),
    so the bundle's tests hold while someone edits datasync/ during the run."""
    if not (ROOT / "node_modules" / "pyodide" / "package.json").is_file():
        pytest.fail("node_modules/pyodide is missing: run `npm ci` (make install does)")
    copy = tmp_path_factory.mktemp("checkout")
    for rel, data in wheel_tools._snapshot(ROOT).items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes(data)
    (copy / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)
    return copy


@pytest.fixture(scope="module")
def built(checkout: Path) -> tuple[Path, dict[str, Any]]:
    """One bundle built into a temporary directory for the whole module; the wheel cache
    is the checkout's build/wheels/, so wheels are downloaded at most once."""
    out = checkout / "web"
    started = time.perf_counter()
    manifest = build.build_web(out, root=checkout, cache=CACHE)
    # A fresh checkout builds the wheel and downloads two small wheels once; after
    # that only the ~14 MB Pyodide copy remains. Either way it is a matter of seconds.
    assert time.perf_counter() - started < 120
    return out, manifest


# --------------------------------------------------------------------------- build

def test_build_writes_a_manifest_naming_pyodide_and_every_wheel(built) -> None:  # type: ignore[no-untyped-def]
    out, manifest = built
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["pyodide"] == "pyodide/"
    assert manifest["version"] == _pyproject_version()
    assert manifest["pyodide_version"] == "314.0.7"
    wheels = manifest["wheels"]
    assert set(wheels) == {"datasync", "micropip", "packaging"}
    assert wheels["datasync"] == f"wheels/datasync-{manifest['version']}-py3-none-any.whl"
    assert wheels["micropip"] == f"wheels/micropip-{wheel_tools.MICROPIP_VERSION}-py3-none-any.whl"
    assert wheels["packaging"].startswith("wheels/packaging-")
    for rel in wheels.values():
        assert zipfile.is_zipfile(out / rel), rel
    assert sorted(p.name for p in (out / "wheels").iterdir()) == sorted(
        Path(rel).name for rel in wheels.values())


def test_build_copies_every_file_load_pyodide_fetches(built) -> None:  # type: ignore[no-untyped-def]
    out, _ = built
    src = ROOT / "node_modules" / "pyodide"
    for name in build.PYODIDE_REQUIRED:
        copy = out / "pyodide" / name
        assert copy.is_file(), name
        assert copy.stat().st_size == (src / name).stat().st_size, name
    assert (out / "pyodide" / "pyodide.asm.wasm").read_bytes()[:4] == b"\0asm"
    lock = json.loads((out / "pyodide" / "pyodide-lock.json").read_text())
    assert lock["info"]["python"].startswith(wheel_tools.PYODIDE_PYTHON)


def test_datasync_wheel_is_pure_python_and_holds_the_package(built, checkout) -> None:  # type: ignore[no-untyped-def]
    out, manifest = built
    with zipfile.ZipFile(out / manifest["wheels"]["datasync"]) as z:
        names = set(z.namelist())
        wheel_meta = z.read(f"datasync-{manifest['version']}.dist-info/WHEEL").decode()
    assert {"datasync/__init__.py", "datasync/vfs/callbacks.py", "datasync/blockstore/store.py",
            "datasync/backends/sqlitefile.py"} <= names
    assert "Root-Is-Purelib: true" in wheel_meta and "Tag: py3-none-any" in wheel_meta
    assert not [n for n in names if "__pycache__" in n]
    # each module has its bytecode beside it (Pyodide's Python, unchecked hash: flags 1),
    # so that a page importing from the wheel compiles nothing (issue 11: boot time)
    modules = {n for n in names if n.endswith(".py")}
    assert {n for n in names if n.endswith(".pyc")} == {m + "c" for m in modules}
    with zipfile.ZipFile(out / manifest["wheels"]["datasync"]) as z:
        header = z.read("datasync/vfs/callbacks.pyc")[:8]
    assert header[2:4] == b"\r\n" and int.from_bytes(header[4:8], "little") == 1
    # every module of the checkout is in the wheel (nothing stale, nothing missing)
    here = {p.relative_to(checkout).as_posix() for p in (checkout / "datasync").rglob("*.py")
            if "__pycache__" not in p.parts}
    assert here == {n for n in names if n.startswith("datasync/") and n.endswith(".py")}


def test_datasync_wheel_installs_and_imports_outside_the_checkout(built, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out, manifest = built
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", "--disable-pip-version-check", "--target", str(target),
                    str(out / manifest["wheels"]["datasync"])], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    code = ("import datasync, asyncio\n"
            "async def main():\n"
            "    db = await datasync.open('w', backend='memory')\n"
            "    await db.execute('CREATE TABLE t(x)')\n"
            "    await db.execute('INSERT INTO t VALUES (7)')\n"
            "    print(datasync.__file__, (await db.query('SELECT x FROM t'))[0]['x'])\n"
            "    await db.close()\n"
            "asyncio.run(main())\n")
    # -I is not used (it drops PYTHONPATH); -s keeps the editable install out, and the
    # working directory is not the checkout
    res = subprocess.run([sys.executable, "-s", "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    path, value = res.stdout.split()
    assert Path(path).is_relative_to(target) and value == "7"


def _imports_tools(name: str, source: bytes) -> bool:
    """Whether the wheel's module ``name`` (``datasync/x/y.py``) imports datasync.tools
    anywhere in its code (at import time or inside a function)."""
    package = name[:-3].split("/")[:-1]  # datasync/vfs/core.py and vfs/__init__.py: vfs
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        if any(t == "datasync.tools" or t.startswith("datasync.tools.") for t in targets):
            return True
    return False


def _python_on_wheel(wheel: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that sees the standard library and the wheel
    (imported from the zip), nothing else: no checkout, no site-packages (-I -S)."""
    setup = f"import sys; sys.path.insert(0, {str(wheel)!r})\n"
    return subprocess.run([sys.executable, "-I", "-S", "-c", setup + code, *args],
                          capture_output=True, text=True, timeout=120, cwd=wheel.parent)


REFUSE_TOOLS = """
import importlib, importlib.abc, json, sys
tried = []
class RefuseTools(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "datasync.tools" or name.startswith("datasync.tools."):
            tried.append(name)
            raise ModuleNotFoundError(f"{name} is not in the browser wheel", name=name)
        return None
sys.meta_path.insert(0, RefuseTools())
for module in sys.argv[1:]:
    importlib.import_module(module)
import datasync
print(json.dumps({"tried": tried, "file": datasync.__file__}))
"""


def test_browser_wheel_holds_no_tools_and_the_runtime_imports_none(built) -> None:  # type: ignore[no-untyped-def]
    out, manifest = built
    wheel = out / manifest["wheels"]["datasync"]
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        sources = {n: z.read(n) for n in names if n.startswith("datasync/") and n.endswith(".py")}
    assert not [n for n in names if n.startswith("datasync/tools/")]
    assert {"datasync/__init__.py", "datasync/vfs/callbacks.py", "datasync/browser/tabs.py"} <= set(sources)
    # In the code: only the `python -m datasync` entry point names the tools (it imports
    # them when run, natively; the next test runs it from the browser wheel).
    assert [n for n in sorted(sources) if _imports_tools(n, sources[n])] == ["datasync/__main__.py"]
    # On import: every module of the wheel imports with datasync.tools refused.
    modules = [n[:-3].replace("/", ".").removesuffix(".__init__") for n in sorted(sources)]
    res = _python_on_wheel(wheel, REFUSE_TOOLS, *modules)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["tried"] == [] and Path(report["file"]).is_relative_to(wheel)


def test_browser_wheel_command_line_says_how_to_get_the_tools(built) -> None:  # type: ignore[no-untyped-def]
    out, manifest = built
    res = _python_on_wheel(out / manifest["wheels"]["datasync"],
                           "from datasync.__main__ import main; sys.exit(main(['--help']))")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("error: ") and "pip install ." in res.stderr


def test_rebuild_reuses_the_cache_and_reports_up_to_date(built, checkout) -> None:  # type: ignore[no-untyped-def]
    out, manifest = built
    assert build.web_is_stale(out, root=checkout) is None
    started = time.perf_counter()
    again = build.build_web(out, root=checkout, cache=CACHE)
    assert time.perf_counter() - started < 10  # no wheel build, no download
    assert again == manifest
    (out / "pyodide" / "pyodide.asm.wasm").unlink()
    assert "pyodide.asm.wasm" in (build.web_is_stale(out, root=checkout) or "")
    assert build.ensure_web(out, root=checkout, cache=CACHE) == manifest
    assert build.web_is_stale(out, root=checkout) is None
    init = checkout / "datasync" / "__init__.py"
    original = init.read_bytes()
    try:
        init.write_bytes(original + b"# changed\n")
        assert build.web_is_stale(out, root=checkout) == "the datasync sources changed"
    finally:
        init.write_bytes(original)
    assert build.web_is_stale(out, root=checkout) is None


def test_build_without_node_modules_says_to_run_npm_ci(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(tools.WebBuildError, match="npm ci"):
        build.build_web(tmp_path / "web", root=tmp_path)
    assert not (tmp_path / "web").exists()


def test_source_digest_changes_with_the_sources(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "datasync").mkdir()
    (tmp_path / "datasync" / "__init__.py").write_text("x = 1\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname='datasync'\n")
    first = wheel_tools.source_digest(tmp_path)
    (tmp_path / "datasync" / "__pycache__").mkdir()
    (tmp_path / "datasync" / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert wheel_tools.source_digest(tmp_path) == first
    (tmp_path / "datasync" / "__init__.py").write_text("x = 2\n")
    assert wheel_tools.source_digest(tmp_path) != first


def test_fetch_wheel_serves_the_cache_without_the_network(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cached = tmp_path / "sortedcontainers-2.4.0-py2.py3-none-any.whl"
    cached.write_bytes(b"PK\5\6" + bytes(18))
    (tmp_path / "sortedcontainers-2.4.1-py3-none-any.whl").write_bytes(b"")
    assert wheel_tools.fetch_wheel("SortedContainers", "2.4.0", cache=tmp_path) == cached
    assert wheel_tools._wheel_name_matches("pytest_timeout-2.4.0-py3-none-any.whl", "pytest-timeout", "2.4.0")
    assert not wheel_tools._wheel_name_matches("numpy-2.0-cp314-cp314-pyodide_2026_0_wasm32.whl", "numpy", "2.0")


# --------------------------------------------------------------------------- serve

def test_served_bundle_has_wasm_and_module_types(built) -> None:  # type: ignore[no-untyped-def]
    out, manifest = built
    with serve.serving(root=out.parent) as server:
        base = server.url + "web/"
        status, headers, body = get(base + "manifest.json")
        assert status == 200 and body == (out / "manifest.json").read_bytes()
        assert get(base + "pyodide/pyodide.asm.wasm", "HEAD")[1]["content-type"] == "application/wasm"
        assert get(base + "pyodide/pyodide.mjs", "HEAD")[1]["content-type"].startswith("text/javascript")
        assert get(base + "pyodide/pyodide.asm.mjs", "HEAD")[1]["content-type"].startswith("text/javascript")
        status, _, body = get(base + manifest["wheels"]["datasync"])
        assert status == 200 and body == (out / manifest["wheels"]["datasync"]).read_bytes()


# --------------------------------------------------------------------------- CLI

def test_subcommands_parse_their_options() -> None:
    args = _parse("serve", "--port", "0", "--coop-coep", "--no-build", "--host", "::1")
    assert (args.port, args.coop_coep, args.no_build, args.host) == (0, True, True, "::1")
    args = _parse("serve")
    assert (args.port, args.host, args.coop_coep, args.no_build) == (8000, "127.0.0.1", False, False)
    assert _parse("build").out == "web" and _parse("build", "--out", "x").out == "x"
    assert cli.run_subcommand(argparse.Namespace(command="inspect")) is None


def test_build_command_builds_the_checkout_and_prints_the_wheels(built, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["build", "--out", str(tmp_path / "w")]) == 0
    manifest = json.loads((tmp_path / "w" / "manifest.json").read_text())
    printed = capsys.readouterr().out
    assert str(tmp_path / "w") in printed and manifest["wheels"]["datasync"] in printed


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_serve_command_prints_the_demo_url_and_stops_on_ctrl_c_or_kill(built, stop: str) -> None:  # type: ignore[no-untyped-def]
    import signal

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Started with SIGINT ignored, as a shell's background job (`make test &`) is:
    # serve must still stop on Ctrl-C, and on `kill`.
    proc = subprocess.Popen([sys.executable, "-m", "datasync", "serve", "--port", "0",
                             "--no-build"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        demo = lines[1].split()[1]
        assert demo.startswith("http://127.0.0.1:") and demo.endswith("/demo/")
        base = demo[: -len("demo/")]
        assert get(base + "datasync/__init__.py")[0] == 200  # the repository root
        proc.send_signal(getattr(signal, stop))
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
