"""Every Python and command-line block of README.md, run as written (the JS and
HTML blocks run in Chromium: tests/browser/test_readme_in_browser.py).

A block that is a fragment (it uses a ``db`` it does not open) runs in a namespace
that gives it what the text around it says it has; its text is not changed."""
from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import datasync
from helpers import native_only, readme_blocks

ROOT = Path(__file__).resolve().parents[1]
pytestmark = native_only


def test_the_readme_has_the_blocks_these_tests_run() -> None:
    """A new block must get a test: fail when the count changes."""
    counts = {lang: len(readme_blocks(lang)) for lang in ("python", "js", "html", "", "sh")}
    assert counts == {"python": 5, "js": 6, "html": 3, "": 1, "sh": 2}, counts


def test_the_first_python_block_runs_as_a_script_twice(tmp_path: Path) -> None:
    script = tmp_path / "readme.py"
    script.write_text(readme_blocks("python")[0])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "[{'id': 1, 'body': 'HELLO'}]"  # as its comment says
    again = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr  # the store persisted: two notes now
    assert again.stdout.strip() == "[{'id': 1, 'body': 'HELLO'}, {'id': 2, 'body': 'HELLO'}]"


async def _run_fragment(code: str, namespace: dict[str, Any], seconds: float) -> str:
    """Run ``code`` (top-level await allowed) in ``namespace``; stop it after
    ``seconds`` (a block that follows changes forever); returns what it printed."""
    compiled = compile(code, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = eval(compiled, namespace)
        if asyncio.iscoroutine(result):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(result, seconds)
    return out.getvalue()


async def test_the_change_stream_block_prints_each_change(tmp_path: Path) -> None:
    db = await datasync.open(str(tmp_path / "app.dsdb"), cdc=True)
    await db.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
    await db.execute("INSERT INTO notes(body) VALUES ('hello')")
    await db.execute("UPDATE notes SET body = 'bye'")
    printed = await _run_fragment(readme_blocks("python")[1],
                                  {"db": db, "last_seq": 0}, seconds=1.0)
    ops = [line.split()[1] for line in printed.splitlines()]
    assert ops == ["schema", "insert", "update"], printed
    await db.close()


async def test_the_encryption_block_rekeys_and_only_the_new_key_opens(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    cwd = os.getcwd()
    os.chdir(tmp_path)  # the block names "app.dsdb"
    try:
        namespace: dict[str, Any] = {"datasync": datasync, "os": os}
        await _run_fragment(readme_blocks("python")[2], namespace, seconds=60)
        db = namespace["db"]
        await db.execute("CREATE TABLE t(x)")
        await db.close()
        with pytest.raises(datasync.WrongKeyError):
            await datasync.open("app.dsdb", encryption_key="a long passphrase")
        assert b"CREATE TABLE t(x)" not in Path("app.dsdb").read_bytes()  # encrypted
        db = await datasync.open("app.dsdb", encryption_key=namespace["new_key"])
        assert await db.query("SELECT name FROM sqlite_master") == [{"name": "t"}]
        await db.close()
    finally:
        os.chdir(cwd)


def test_every_command_line_in_the_readme_runs(tmp_path: Path) -> None:
    """The command-line block with its placeholders filled in: each command runs."""
    migrations = tmp_path / "migrations"
    filled = {'["SQL" ...]': '"INSERT INTO t VALUES (1)" "SELECT x FROM t"',
              "STORE": str(tmp_path / "cli.dsdb"), '"SQL"': '"CREATE TABLE t(x)"',
              "OUT.sqlite": str(tmp_path / "out.sqlite"),
              "IN.sqlite": str(tmp_path / "out.sqlite"),
              "[DIR]": str(migrations), "DIR": str(migrations)}
    migrations.mkdir()
    (migrations / "0001_notes.sql").write_text(
        "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);\n-- down\nDROP TABLE notes;\n")
    ran = []
    for line in readme_blocks("")[0].splitlines():
        command = line.split("#")[0].strip()
        for placeholder, value in filled.items():
            command = command.replace(placeholder, value)
        command = re.sub(r"\[(--[\w-]+)(?: [\w.]+)?\]", "", command)  # optional flags
        args = shlex.split(command)[3:]  # after "python -m datasync"
        if args[0] == "serve":
            args += ["--port", "0", "--help"]  # it would serve until stopped
        if args[0] == "build":
            args += ["--help"]  # the browser suite builds for real
        if args[0] == "import":
            args[2] = str(tmp_path / "imported.dsdb")
        proc = subprocess.run([sys.executable, "-m", "datasync", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (line, proc.stderr)
        ran.append((args[0], proc.stdout))
    out = dict(ran)
    assert out["sql"].strip() == '{"x": 1}', out["sql"]  # a JSON line per row
    assert [a for a, _ in ran] == ["sql", "inspect", "export", "import", "migrate",
                                   "migrations", "build", "serve"]
    assert '"applied": [1]' in out["migrate"], out["migrate"]
    assert "applied" in out["migrations"] and "notes" in out["migrations"], out["migrations"]


def test_the_sync_blocks_start_a_server_and_a_replica_writes_through_it(tmp_path: Path) -> None:
    """The shell block (server + token), then the replica block, as written; the
    test adds only waiting for the port and stopping the server."""
    shims = tmp_path / "bin"
    shims.mkdir()
    shim = shims / "python"  # the block says `python`: this one (a script, so that a
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # venv stays a venv)
    shim.chmod(0o755)
    (tmp_path / "replica.py").write_text(readme_blocks("python")[3])
    script = readme_blocks("sh")[0] + (
        'SERVER=$!\ntrap \'kill $SERVER; wait $SERVER || true\' EXIT\n'
        'for i in $(seq 200); do python -c "import socket; '
        'socket.create_connection((\'127.0.0.1\', 8765), 0.2)" 2>/dev/null && break; '
        'sleep 0.1; done\n'
        'python replica.py\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{shims}:{os.environ['PATH']}"}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[{'body': 'written on the primary'}]\n0\n", proc.stdout
    assert (tmp_path / "primaries").is_dir()


def test_the_postgres_block_starts_two_servers_that_serve_one_primary(
        tmp_path: Path, pg_dsn: str) -> None:
    """The second shell block, as written, with DATASYNC_POSTGRES naming a throw-away
    cluster: a replica writes through the first process, one of the second reads it."""
    shims = tmp_path / "bin"
    shims.mkdir()
    shim = shims / "python"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    (tmp_path / "replicas.py").write_text(
        "import asyncio, datasync, sys\n"
        "async def main():\n"
        "    token = open('token.txt').read().strip()\n"
        "    a = await datasync.open('a.dsdb', sync_url='http://127.0.0.1:8765/pgnotes',"
        " auth_token=token)\n"
        "    await a.execute('CREATE TABLE IF NOT EXISTS notes(body TEXT)')\n"
        "    await a.execute('INSERT INTO notes VALUES (?)', ('through 8765',))\n"
        "    b = await datasync.open('b.dsdb', sync_url='http://127.0.0.1:8766/pgnotes',"
        " auth_token=token)\n"
        "    print(await b.query('SELECT body FROM notes'))\n"
        "    await a.close(); await b.close()\n"
        "asyncio.run(main())\n")
    script = ('export DATASYNC_SECRET="$(python -c \'import secrets; print(secrets.token_hex(32))\')"\n'
              + readme_blocks("sh")[1] + (
        'trap \'kill $(jobs -p); wait || true\' EXIT\n'
        'for port in 8765 8766; do for i in $(seq 200); do python -c "import socket; '
        'socket.create_connection((\'127.0.0.1\', $port), 0.2)" 2>/dev/null && break; '
        'sleep 0.1; done; done\n'
        'python -m datasync token --database pgnotes > token.txt\n'
        'python replicas.py\n'))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{shims}:{os.environ['PATH']}",
           "DATASYNC_POSTGRES": pg_dsn}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[{'body': 'through 8765'}]\n", proc.stdout


def test_the_app_layer_block_migrates_runs_a_live_query_and_rolls_back(tmp_path: Path) -> None:
    """The migrations / live query / metrics block, run as a script as written."""
    script = tmp_path / "app.py"
    script.write_text(readme_blocks("python")[4])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "{'from': 0, 'to': 2, 'applied': [1, 2], 'reverted': []}"
    assert lines[1:3] == ["open notes: 0", "open notes: 1"]  # now, then after the insert
    assert lines[3] == """['notes'] CREATE INDEX IF NOT EXISTS "idx_notes_tag" ON "notes"("tag")"""
    statements = ast.literal_eval(lines[4].split("}")[0] + "}")
    assert statements["transaction"] == 2 and statements["write"] >= 3, lines[4]
    assert lines[5] == "{'from': 2, 'to': 1, 'applied': [], 'reverted': [2]}"
