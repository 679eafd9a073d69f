"""python -m datasync migrate / migrations: a directory of NNNN_name.sql files with
'-- down' sections (datasync/tools/migrate_cli.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datasync.errors import MigrationError
from datasync.tools import cli
from datasync.tools.migrate_cli import load_dir, parse_file
from helpers import native_only

pytestmark = native_only
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FILES = {
    "0001_notes.sql": "CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);\n"
                      "INSERT INTO notes(body) VALUES ('-- down is not alone here');\n"
                      "-- down\nDROP TABLE notes;\n",
    "0002_tags.sql": "CREATE TABLE tags(note INTEGER, tag TEXT);\r\n"
                     "CREATE INDEX tags_note ON tags(note);\r\n  -- DOWN  \r\n"
                     "DROP INDEX tags_note;\r\nDROP TABLE tags;\r\n",
    "0003_seen.sql": "ALTER TABLE notes ADD COLUMN seen INTEGER NOT NULL DEFAULT 0;\n",
    "README.md": "not a migration",
}


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_bytes(text.encode())
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_load_dir_reads_version_name_up_and_down_and_ignores_other_files(tmp_path: Path) -> None:
    ms = load_dir(write(tmp_path / "m", FILES))
    assert [(m["version"], m["name"]) for m in ms] == [(1, "notes"), (2, "tags"), (3, "seen")]
    assert "'-- down is not alone here'" in ms[0]["up"] and "DROP" not in ms[0]["up"]
    assert ms[0]["down"].strip() == "DROP TABLE notes;"
    assert ms[1]["down"].split() == ["DROP", "INDEX", "tags_note;", "DROP", "TABLE", "tags;"]
    assert ms[2]["down"] is None
    assert parse_file("12_x.sql", "SELECT 1\n-- down\n   \n")["down"] is None


def test_migrate_applies_the_directory_then_lists_it_and_a_lower_target_reverts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, folder = str(tmp_path / "app.dsdb"), str(write(tmp_path / "m", FILES))
    code, out, err = run(capsys, "migrate", store, folder, "--target", "2")
    assert code == 0, err
    assert json.loads(out) == {"from": 0, "to": 2, "applied": [1, 2], "reverted": []}
    code, out, _ = run(capsys, "migrations", store, folder)
    lines = [line.split() for line in out.splitlines()]
    assert [line[:3] for line in lines] == [["1", "notes", "applied"], ["2", "tags", "applied"],
                                           ["3", "seen", "pending"]]
    assert lines[0][3].endswith("Z") and len(lines[2]) == 3
    assert json.loads(run(capsys, "migrate", store, folder)[1])["applied"] == [3]
    code, out, _ = run(capsys, "migrations", store, "--json")  # no DIR: what was recorded
    assert [(r["version"], r["state"]) for r in json.loads(out)] == [
        (1, "applied"), (2, "applied"), (3, "applied")]
    # 3 has no down: nothing is reverted
    code, out, err = run(capsys, "migrate", store, folder, "--target", "0")
    assert code == 2 and err.startswith("error: IrreversibleMigrationError: ")
    (Path(folder) / "0003_seen.sql").write_text(FILES["0003_seen.sql"] + "-- down\n"
                                                "ALTER TABLE notes DROP COLUMN seen;\n")
    code, out, err = run(capsys, "migrate", store, folder, "--target", "1")
    assert code == 0, err
    assert json.loads(out)["reverted"] == [3, 2]


def test_a_changed_file_is_a_checksum_error_with_status_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, folder = str(tmp_path / "app.dsdb"), write(tmp_path / "m", FILES)
    assert run(capsys, "migrate", store, str(folder))[0] == 0
    # the down section and line endings may change; the up may not
    (folder / "0001_notes.sql").write_text(FILES["0001_notes.sql"].replace("\n", "\r\n") +
                                           "-- and a comment in the down\n")
    assert run(capsys, "migrate", store, str(folder))[0] == 0
    (folder / "0001_notes.sql").write_text(FILES["0001_notes.sql"].replace("body", "text"))
    code, _, err = run(capsys, "migrate", store, str(folder))
    assert code == 2 and err.startswith("error: MigrationChecksumError: migration 1 ('notes')")
    code, out, _ = run(capsys, "migrations", store, str(folder))
    assert out.split()[:3] == ["1", "notes", "changed"]


@pytest.mark.parametrize("files, message", [
    ({"0001_a.sql": "CREATE TABLE a(x)", "0003_c.sql": "CREATE TABLE c(x)"},
     "MigrationOrderError: migration version 3"),
    ({"0001_a.sql": "CREATE TABLE a(x)", "1_b.sql": "CREATE TABLE b(x)"},
     "MigrationOrderError"),
    ({"first.sql": "CREATE TABLE a(x)"}, "MigrationError: "),
    ({"0000_init.sql": "CREATE TABLE a(x)"}, "0000_init.sql: versions start at 1"),
    ({"README.txt": "not a migration"}, "no NNNN_name.sql files")])
def test_a_bad_directory_is_refused_with_status_2_before_the_store_is_made(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str],
        message: str) -> None:
    store = tmp_path / "app.dsdb"
    code, _, err = run(capsys, "migrate", str(store), str(write(tmp_path / "m", files)))
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert "NNNN_name.sql" in err or "renumber" in err
    assert not store.exists()


def test_a_missing_directory_or_store_is_status_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "migrate", str(tmp_path / "a.dsdb"), str(tmp_path / "nope"))
    assert code == 2 and "migrations directory" in err
    assert not (tmp_path / "a.dsdb").exists()
    code, _, err = run(capsys, "migrations", str(tmp_path / "none.dsdb"))
    assert code == 2 and "StoreNotFoundError" in err
    with pytest.raises(MigrationError):
        load_dir(tmp_path / "nope")


def test_a_failing_migration_file_stops_at_the_last_good_version(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "app.dsdb")
    folder = write(tmp_path / "m", {**FILES, "0002_tags.sql": "INSERT INTO nowhere VALUES (1)"})
    code, _, err = run(capsys, "migrate", store, str(folder))
    assert code == 2 and "MigrationFailedError: migration 2 ('tags')" in err
    out = run(capsys, "migrations", store, str(folder))[1]
    assert [line.split()[2] for line in out.splitlines()] == ["applied", "pending", "pending"]


def test_python_m_datasync_migrate_runs_end_to_end(tmp_path: Path) -> None:
    store, folder = str(tmp_path / "app.dsdb"), str(write(tmp_path / "m", FILES))
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-m", "datasync", "migrate", store, folder],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["to"] == 3
    listed = subprocess.run([sys.executable, "-m", "datasync", "migrations", store],
                            capture_output=True, text=True, env=env, timeout=120)
    assert [line.split()[1] for line in listed.stdout.splitlines()] == ["notes", "tags", "seen"]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_down_splits_the_file_whatever_its_line_endings(newline: str) -> None:
    # A CRLF file once ran its down inside its up: "applied", and the table gone.
    text = newline.join(["CREATE TABLE n(x);", "-- down", "DROP TABLE n;", ""])
    m = parse_file("0001_n.sql", text)
    assert "DROP" not in m["up"] and "CREATE TABLE n" in m["up"]
    assert m["down"].strip() == "DROP TABLE n;"
