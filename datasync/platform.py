"""The one place that knows whether we run inside Pyodide.

Example::

    from datasync.platform import IN_PYODIDE
    if IN_PYODIDE:
        import js  # only importable in the browser
"""
from __future__ import annotations

import sys

#: True when running inside Pyodide (WebAssembly in a browser or in Node).
IN_PYODIDE: bool = sys.platform == "emscripten" or "pyodide" in sys.modules
