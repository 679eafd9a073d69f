"""Browser fixtures are defined in pyodide_page.py (a unique module name)."""
from pyodide_page import context, manifest, profile, pw, pypage, server  # noqa: F401
