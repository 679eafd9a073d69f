"""Fixtures shared by the native suites live in helpers.py (one module name per
helper file: tests/browser has a conftest of its own)."""
from helpers import backend_kind, db_name, make_backend  # noqa: F401  (fixtures)
