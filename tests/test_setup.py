"""Set-up on a fresh machine: `make install` is the only step that downloads (into a
.venv, since Debian's Python refuses `pip install`, PEP 668); `make test`, `make demo`
and `make web` then run offline, with that venv's Python. Native, no browser."""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from datasync.tools import wheels
from helpers import native_only, readme_blocks

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [native_only, pytest.mark.skipif(shutil.which("make") is None,
                                              reason="needs make")]
#: What downloads: a package manager installing, or pip fetching a wheel.
DOWNLOADS = re.compile(r"\bnpm (ci|install)\b|\bpip (install|download)\b|-m venv\b")


def make_n(*args: str) -> str:
    """What ``make ARGS`` would run (``make -n``: printed, not run)."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_install_makes_a_venv_and_downloads_everything_the_other_targets_use() -> None:
    plan = make_n("install", "VENV=/nonexistent/venv", "PYTHON=/nonexistent/venv/bin/python")
    assert "python3 -m venv /nonexistent/venv" in plan
    assert '/nonexistent/venv/bin/python -m pip install' in plan
    assert "npm ci" in plan or "npm install" in plan
    assert "/nonexistent/venv/bin/python -m datasync build" in plan  # micropip, packaging
    assert "tests/browser/pyodide_page.py" in plan  # the wheels pytest needs in Pyodide
    # Another interpreter (PYTHON=...) is used as is: no venv is made for it.
    assert "-m venv" not in make_n("install", "PYTHON=/opt/py/bin/python3")


@pytest.mark.parametrize("target", ["test", "test-fast", "demo", "web", "example", "bench",
                                    "bench-postgres"])
def test_other_targets_download_nothing_and_use_the_venv(target: str) -> None:
    plan = make_n(target)
    assert not DOWNLOADS.search(plan), plan
    assert ".venv/bin/python " in plan, plan
    assert "/opt/py/bin/python3 " in make_n(target, "PYTHON=/opt/py/bin/python3")


def test_install_installs_the_build_backend_pyproject_names() -> None:
    """So `python -m datasync build` makes the browser wheel offline (no isolation)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    backend = re.search(r"^BUILD_BACKEND = (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert backend and [backend.group(1).strip()] == requires


def test_the_wheel_builds_offline_only_with_a_suitable_backend(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[build-system]\nrequires = ["setuptools>=1"]\n')
    assert wheels._backend_installed(tmp_path)  # setuptools is installed here
    pyproject.write_text('[build-system]\nrequires = ["setuptools>=100000"]\n')
    assert not wheels._backend_installed(tmp_path)
    pyproject.write_text('[build-system]\nrequires = ["hatchling"]\n')
    assert not wheels._backend_installed(tmp_path)
    assert wheels._backend_installed(ROOT), "run `make install` (it installs setuptools>=77)"


def test_ci_installs_into_the_venv_never_the_system_python() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.split("#")[0] for line in ci.splitlines()]
    assert not [c for c in commands if re.search(r"\bpip\b", c)], "PEP 668: pip installs only into .venv"
    assert "make install" in commands and "make test" in commands


def test_readme_quick_starts_name_no_wheel_version() -> None:
    """They install the wheels web/manifest.json names: a version bump cannot stale them."""
    versioned = re.compile(r"[\w.]+-\d[\w.+]*-py\w*-none-any\.whl")
    for lang in ("js", "html", "python", ""):
        for block in readme_blocks(lang):
            assert not versioned.search(block), block
