"""datasync.tools.serve: the local static server and ``datasync serve``'s refusals.
Native, no browser."""
from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from datasync import tools
from datasync.tools import cli, serve
from helpers import http_get as get
from helpers import parse_cli as _parse


@pytest.fixture
def site(tmp_path: Path) -> Path:
    for name, data in {"a.wasm": b"\0asm\1\0\0\0", "m.mjs": b"export const x = 1;\n",
                       "c.js": b"var x;\n", "w.whl": b"PK\5\6" + bytes(18),
                       "d.json": b"{}", "s.zip": b"PK\5\6" + bytes(18),
                       "index.html": b"<!doctype html><title>t</title>",
                       "style.css": b"p{}", "i.svg": b"<svg/>"}.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]\n")
    return tmp_path


def test_server_sends_the_mime_types_browsers_require(site) -> None:  # type: ignore[no-untyped-def]
    expected = {"a.wasm": "application/wasm", "m.mjs": "text/javascript",
                "c.js": "text/javascript", "d.json": "application/json",
                "s.zip": "application/zip", "index.html": "text/html", "style.css": "text/css",
                "i.svg": "image/svg+xml"}
    with serve.serving(root=site) as server:
        for name, mime in expected.items():
            status, headers, body = get(server.url + name)
            assert status == 200 and body == (site / name).read_bytes(), name
            assert headers["content-type"].split(";")[0] == mime, name
            assert headers["cache-control"] == "no-cache"
        status, headers, _ = get(server.url + "w.whl")
        assert headers["content-type"] in ("application/zip", "application/octet-stream")
        status, headers, body = get(server.url + "a.wasm", method="HEAD")
        assert status == 200 and body == b"" and headers["content-type"] == "application/wasm"


def test_server_answers_404_for_missing_and_hidden_files(site) -> None:  # type: ignore[no-untyped-def]
    with serve.serving(root=site) as server:
        assert get(server.url + "missing.wasm")[0] == 404
        assert get(server.url + "nope/deeper.mjs")[0] == 404
        assert get(server.url + ".git/config")[0] == 404
        assert get(server.url + "%2egit/config")[0] == 404
        assert get(server.url + "index.html?v=1")[0] == 200


def test_coop_coep_headers_only_with_the_option(site) -> None:  # type: ignore[no-untyped-def]
    isolation = ("cross-origin-opener-policy", "cross-origin-embedder-policy",
                 "cross-origin-resource-policy")
    with serve.serving(root=site) as server:
        _, headers, _ = get(server.url + "index.html")
        assert not [h for h in isolation if h in headers]
    with serve.serving(root=site, coop_coep=True) as server:
        _, headers, _ = get(server.url + "index.html")
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert headers["cross-origin-embedder-policy"] == "require-corp"
        assert headers["cross-origin-resource-policy"] == "same-origin"
        status, headers, _ = get(server.url + "missing.js")
        assert status == 404 and headers["cross-origin-embedder-policy"] == "require-corp"


def test_port_zero_binds_a_free_port_and_reports_its_url(site) -> None:  # type: ignore[no-untyped-def]
    with serve.serving(root=site, port=0) as one, serve.serving(root=site, port=0) as two:
        assert one.port != two.port and one.port > 0
        assert one.url == f"http://127.0.0.1:{one.port}/"
        assert get(two.url + "d.json")[0] == 200
    with pytest.raises(OSError):  # stopped: nothing listens any more
        conn = http.client.HTTPConnection("127.0.0.1", one.port, timeout=2)
        conn.request("GET", "/d.json")
        conn.getresponse()


def test_server_keeps_a_connection_alive_across_requests(site) -> None:  # type: ignore[no-untyped-def]
    with serve.serving(root=site) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for name in ("m.mjs", "a.wasm", "missing", "d.json"):
            conn.request("GET", "/" + name)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == (404 if name == "missing" else 200)
        conn.close()


def test_serve_command_refuses_a_busy_port_saying_how_to_pick_another(site, capsys) -> None:  # type: ignore[no-untyped-def]
    with serve.serving(root=site) as busy:
        status = cli.run_subcommand(_parse("serve", "--no-build", "--port", str(busy.port)))
        with pytest.raises(tools.PortInUseError) as caught:  # also an OSError
            serve.serve(port=busy.port)
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert f"port {busy.port} " in err and f"--port {busy.port + 1}" in err
    assert f"make demo PORT={busy.port + 1}" in err and str(caught.value) in err
    assert isinstance(caught.value, OSError)
