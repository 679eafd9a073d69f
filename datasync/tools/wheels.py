"""The wheels the browser installs: datasync's, built from this checkout without
``datasync/tools/`` (the browser downloads only what runs), and pinned pure-Python
wheels from PyPI (micropip and packaging), cached in ``build/wheels/``.

Example::

    from datasync.tools.wheels import MICROPIP_VERSION, build_wheel, fetch_wheel

    wheel, digest = build_wheel()                    # build/wheels/datasync-<digest>/...
    micropip = fetch_wheel("micropip", MICROPIP_VERSION)
"""
from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from pathlib import Path

from . import REPO_ROOT, WebBuildError, progress

#: Pinned browser-side wheels, fetched from PyPI once and cached in ``build/wheels/``.
#: micropip 0.11.1 vendors its own copy of ``packaging``; 26.1 is the version Pyodide
#: 314.0.7's own lock file ships, so it is known to work with this runtime.
MICROPIP_VERSION = "0.11.1"
PACKAGING_VERSION = "26.1"
#: Python version the downloaded wheels must suit (Pyodide 314 = CPython 3.14).
PYODIDE_PYTHON = "3.14"


def _run(cmd: Sequence[str], what: str, *, cwd: Path | None = None) -> None:
    """Run a command with its output captured; on failure raise with the output's tail."""
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise WebBuildError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


#: Subpackages of ``datasync/`` left out of the wheel the browser installs: this package,
#: native tooling no page ever runs (nothing outside it imports it).
NATIVE_ONLY = ("tools", "server")


def _wheel_sources(root: Path) -> list[Path]:
    """Every file that goes into the browser's datasync wheel (or decides its metadata):
    the package without its :data:`NATIVE_ONLY` subpackages."""
    pkg = root / "datasync"
    files = [p for p in pkg.rglob("*") if p.is_file()
             and p.relative_to(pkg).parts[0] not in NATIVE_ONLY
             and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")]
    for name in ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md"):
        if (root / name).is_file():
            files.append(root / name)
    files += sorted(root.glob("LICENSE*"))
    return sorted(files)


def _snapshot(root: Path) -> dict[str, bytes]:
    """The wheel's source files, read once: the digest and the build see the same bytes
    even while someone edits the checkout."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in _wheel_sources(root)}


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + files[rel] + b"\0")
    return h.hexdigest()


def source_digest(root: Path | str = REPO_ROOT) -> str:
    """``source_digest()``: a SHA-256 over the paths and contents of the files that
    make the datasync wheel (the manifest keeps it to tell when ``web/`` is stale)."""
    return _digest(_snapshot(Path(root)))


def build_wheel(root: Path | str = REPO_ROOT, *, cache: Path | str | None = None,
                quiet: bool = True) -> tuple[Path, str]:
    """``wheel, digest = build_wheel()``: build datasync's pure-Python wheel for the
    browser with the standard build backend (setuptools, through ``pip wheel``); return
    its path in ``build/wheels/datasync-<digest>/`` and the digest of the sources it was
    built from.

    The sources are copied to a temporary directory first, without ``datasync/tools/``
    (:data:`NATIVE_ONLY`), so setuptools' ``build/lib`` never packs a stale module and
    the wheel holds only what runs in a page. A wheel already built from identical
    sources is reused. With the build backend pyproject.toml requires installed here
    (``make install`` does) pip builds offline; otherwise it downloads it, isolated.
    Raises :class:`WebBuildError` (with pip's output) if pip cannot build it.
    """
    root = Path(root)
    cache = Path(cache) if cache else root / "build" / "wheels"
    files = _snapshot(root)
    digest = _digest(files)
    # The bytecode inside depends on the Pyodide (its Python) as well as the sources.
    runtime = hashlib.sha256(_pyodide_package(root).read_bytes()).hexdigest()[:8]
    target = cache / f"datasync-{digest[:16]}-{runtime}"
    found = sorted(target.glob("datasync-*.whl")) if target.is_dir() else []
    if found:
        return found[-1], digest
    # With the backend installed (`make install`), pip builds offline; otherwise it
    # downloads the backend into an isolated environment, as `pip wheel` always does.
    offline = ["--no-build-isolation", "--no-index"] if _backend_installed(root) else []
    progress(quiet, "building the datasync wheel (pip wheel, setuptools"
                    f"{', offline' if offline else ', downloading it'})...")
    with tempfile.TemporaryDirectory(prefix="datasync-wheel-") as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        for rel, data in files.items():
            dest = src / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", *offline,
              "--disable-pip-version-check", "-w", str(out), str(src)],
             "building the datasync wheel")
        wheels = sorted(out.glob("datasync-*-py3-none-any.whl"))
        if len(wheels) != 1:
            raise WebBuildError(
                f"expected one pure-Python datasync wheel, got {[w.name for w in out.iterdir()]}:"
                " datasync must build as datasync-<version>-py3-none-any.whl; check "
                "pyproject.toml for a compiled extension or a second distribution")
        add_bytecode(wheels[0], root, quiet=quiet)
        target.mkdir(parents=True, exist_ok=True)
        final = target / wheels[0].name
        shutil.copy2(wheels[0], final.with_suffix(".part"))
        os.replace(final.with_suffix(".part"), final)
    # keep the cache small: the few most recent datasync builds stay
    olds = sorted((d for d in cache.glob("datasync-*") if d.is_dir() and d != target),
                  key=lambda d: d.stat().st_mtime)
    for old in olds[:-3]:
        shutil.rmtree(old, ignore_errors=True)
    return final, digest


#: Compiles the wheel's modules with Pyodide's own Python (run by node): argv is the
#: Pyodide folder, a folder of sources in, a folder for the .pyc files out.
_COMPILE_JS = r"""
import { readFileSync, writeFileSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join, dirname } from "node:path";
import { pathToFileURL } from "node:url";
const [pyodideDir, srcDir, outDir] = process.argv.slice(2);
const { loadPyodide } = await import(pathToFileURL(join(pyodideDir, "pyodide.mjs")).href);
const py = await loadPyodide({ indexURL: pyodideDir + "/" });
const walk = (d) => readdirSync(d).flatMap((n) =>
  statSync(join(d, n)).isDirectory() ? walk(join(d, n)) : [join(d, n)]);
const rels = walk(srcDir).map((f) => f.slice(srcDir.length + 1));
for (const rel of rels) {
  py.FS.mkdirTree(dirname("/src/" + rel));
  py.FS.writeFile("/src/" + rel, readFileSync(join(srcDir, rel)));
}
py.globals.set("rels", py.toPy(rels));
py.runPython(`
import py_compile
for rel in rels:
    py_compile.compile("/src/" + rel, cfile="/src/" + rel + "c", dfile=rel, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
`);
for (const rel of rels) {
  mkdirSync(dirname(join(outDir, rel)), { recursive: true });
  writeFileSync(join(outDir, rel + "c"), py.FS.readFile("/src/" + rel + "c"));
}
"""


def _pyodide_package(root: Path) -> Path:
    return root / "node_modules" / "pyodide" / "package.json"


def add_bytecode(wheel: Path, root: Path | str = REPO_ROOT, *, quiet: bool = True) -> int:
    """``add_bytecode(wheel)``: put next to each module of ``wheel`` its bytecode for
    the Pyodide in ``node_modules`` (``module.pyc``, compiled by that Pyodide's Python
    under node, unchecked-hash), and list it in the wheel's RECORD. Returns the count.

    Why: a page imports datasync from the wheel itself (zipimport, ``js/local.js``),
    and without bytecode Python compiles every module at every boot (issue 11: about
    half of ``import datasync`` in Pyodide). zipimport prefers ``module.pyc`` and falls
    back to the source when its magic number is another Python's, and an installed
    wheel's ``.py`` always wins over a ``.pyc`` beside it: no other interpreter is
    affected. Raises :class:`WebBuildError` if node cannot compile them.
    """
    root = Path(root)
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        raise WebBuildError("node is not installed: the build compiles datasync's modules "
                            "with Pyodide under node (install nodejs, as `npm ci` needs)")
    progress(quiet, "compiling the datasync wheel's modules with Pyodide's Python (node)...")
    with tempfile.TemporaryDirectory(prefix="datasync-pyc-") as tmp:
        src, out, script = Path(tmp) / "src", Path(tmp) / "out", Path(tmp) / "compile.mjs"
        with zipfile.ZipFile(wheel) as z:
            entries = [(i, z.read(i)) for i in z.infolist()]
        modules = [i.filename for i, _ in entries if i.filename.endswith(".py")]
        for info, data in entries:
            if info.filename.endswith(".py"):
                (src / info.filename).parent.mkdir(parents=True, exist_ok=True)
                (src / info.filename).write_bytes(data)
        script.write_text(_COMPILE_JS)
        pyodide = str((root / "node_modules" / "pyodide").resolve())
        _run([node, str(script), pyodide, str(src), str(out)],
             "compiling the datasync modules with Pyodide (node)")
        record_name = next(i.filename for i, _ in entries if i.filename.endswith(".dist-info/RECORD"))
        lines = []
        with zipfile.ZipFile(wheel.with_suffix(".tmp"), "w", zipfile.ZIP_DEFLATED) as z:
            for info, data in entries:
                if info.filename != record_name:
                    z.writestr(info, data)
            for rel in modules:
                data = (out / (rel + "c")).read_bytes()
                z.writestr(rel + "c", data)
                b64 = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                lines.append(f"{rel}c,sha256={b64.decode()},{len(data)}")
            record = dict(entries)[next(i for i, _ in entries if i.filename == record_name)]
            z.writestr(record_name, record.decode().rstrip("\n") + "\n" + "\n".join(lines) + "\n")
        os.replace(wheel.with_suffix(".tmp"), wheel)
    return len(modules)


def _backend_installed(root: Path) -> bool:
    """Whether this interpreter has the build backend ``pyproject.toml`` requires
    (``setuptools>=N``; ``make install`` installs it): then the wheel builds offline."""
    try:
        with open(root / "pyproject.toml", "rb") as f:
            requires = tomllib.load(f).get("build-system", {}).get("requires", [])
        installed = importlib.metadata.version("setuptools")
    except (OSError, ValueError, importlib.metadata.PackageNotFoundError):
        return False
    for req in requires:
        m = re.fullmatch(r"\s*setuptools\s*(?:>=\s*([\d.]+))?\s*", req)
        if not m:
            return False  # another backend, or a constraint not parsed here: isolate
        if m.group(1) and _release(installed) < _release(m.group(1)):
            return False
    return True


def _release(version: str) -> tuple[int, ...]:
    """``_release("77.0.3") == (77, 0, 3)`` (leading numeric parts only)."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def _wheel_name_matches(filename: str, name: str, version: str) -> bool:
    """Whether ``filename`` is a pure-Python wheel (``...-none-any.whl``) of
    ``name==version``; names compare normalised (``Foo.Bar`` = ``foo_bar``)."""
    parts = filename[:-4].split("-") if filename.endswith(".whl") else []
    return (len(parts) in (5, 6) and parts[-2:] == ["none", "any"]
            and re.sub(r"[-_.]+", "_", parts[0]).lower() == re.sub(r"[-_.]+", "_", name).lower()
            and parts[1] == version)


def fetch_wheel(name: str, version: str, *, cache: Path | str | None = None,
                quiet: bool = True) -> Path:
    """``fetch_wheel("micropip", MICROPIP_VERSION)``: a pure-Python wheel of
    ``name==version`` for Pyodide's Python, from the cache ``build/wheels/`` or else
    downloaded once from the package index by pip.

    Raises :class:`WebBuildError` if pip cannot download it (no network, no such
    version) or the download is not one sound pure-Python wheel.
    """
    cache = Path(cache) if cache else REPO_ROOT / "build" / "wheels"
    hits = sorted(p for p in cache.glob("*.whl") if _wheel_name_matches(p.name, name, version)) \
        if cache.is_dir() else []
    if hits:
        return hits[0]
    progress(quiet, f"downloading {name}=={version} (wheel for Python {PYODIDE_PYTHON})...")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="datasync-dl-", dir=cache) as tmp:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
              "--disable-pip-version-check", "--python-version", PYODIDE_PYTHON,
              "--only-binary=:all:", "--implementation", "py", "--abi", "none",
              "--platform", "any", "-d", tmp, f"{name}=={version}"],
             f"downloading the {name} {version} wheel (needs the package index: "
             "`make install` fetches it once into build/wheels/)")
        got = [p for p in Path(tmp).iterdir() if _wheel_name_matches(p.name, name, version)]
        if len(got) != 1:
            raise WebBuildError(
                f"pip did not produce one pure-Python wheel of {name} {version}; got "
                f"{sorted(p.name for p in Path(tmp).iterdir())}: pin a version of {name} "
                "that is published as a py3-none-any wheel")
        with zipfile.ZipFile(got[0]) as z:  # a truncated download must not enter the cache
            if z.testzip() is not None:
                raise WebBuildError(f"downloaded {got[0].name} is corrupt (nothing was "
                                    "cached): run the build again")
        hit = cache / got[0].name
        os.replace(got[0], hit)
    return hit
