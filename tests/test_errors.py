"""The error contract: every error is a named, exported class, raised by name."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import datasync
from datasync import errors

SOURCE = Path(datasync.__file__).parent


def test_every_error_class_is_exported_by_the_package() -> None:
    classes = {name for name, obj in vars(errors).items()
               if inspect.isclass(obj) and issubclass(obj, Exception)
               and obj.__module__ == errors.__name__}
    assert classes <= set(datasync.__all__)
    assert all(issubclass(getattr(errors, n), errors.DatasyncError) for n in classes)


def test_no_module_raises_the_bare_base_class() -> None:
    bare = []
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name == "DatasyncError":
                    bare.append(f"{path.relative_to(SOURCE)}:{node.lineno}")
    assert bare == []


def test_every_error_says_what_it_is_for() -> None:
    for name in datasync.__all__:
        obj = getattr(datasync, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert (obj.__doc__ or "").strip(), f"{name} has no docstring"
