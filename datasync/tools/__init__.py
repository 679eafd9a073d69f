"""Native-only tooling: the command line, the browser bundle's build, the local server.

Example::

    from datasync.tools.build import ensure_web
    from datasync.tools.serve import serving

    manifest = ensure_web("web")          # web/: Pyodide, the wheels, manifest.json
    with serving(port=0) as server:       # a background thread on a free port
        print(server.url + "demo/")

Modules, each one concern:

- ``cli``: ``python -m datasync sql|inspect|export|import|build|serve``.
- ``wheels``: the datasync wheel the browser installs, and pinned wheels from PyPI.
- ``build``: the ``web/`` folder (the Pyodide runtime, the wheels) and its manifest.
- ``serve``: the static server for the repository (MIME types, COOP/COEP, stopping on
  SIGINT/SIGTERM).

None of this runs in the browser, so none of it is downloaded there: nothing outside
this package imports it (``datasync/__main__.py`` imports the command line only when
run).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import DatasyncError

#: The repository root (this file is ``<root>/datasync/tools/__init__.py``).
REPO_ROOT = Path(__file__).resolve().parents[2]


class WebBuildError(DatasyncError):
    """The browser bundle cannot be built; the message says what to run or install.

    Example: ``except WebBuildError as exc: print(exc)  # e.g. "... run `npm ci` ..."``
    """


class PortInUseError(DatasyncError, OSError):
    """``python -m datasync serve`` cannot listen: the port is taken. The message says
    how to pick another (``--port N``, ``make demo PORT=N``, ``--port 0``).

    Example: ``except PortInUseError as exc: print(exc)``
    """


def progress(quiet: bool, msg: str) -> None:
    """``progress(quiet, "building...")``: one line of progress on stderr, unless quiet."""
    if not quiet:
        print(msg, file=sys.stderr, flush=True)
