"""Every Python module of ``native``, ``resolver`` and ``registry`` opens with a docstring
saying what it owns (the project's rule for modules), and so does the Cython twin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FILES = sorted(p for pkg in ("native", "resolver", "registry") for p in (REPO / pkg).rglob("*.py")
               if "__pycache__" not in p.parts)  # fmt: skip


def test_files_found():
    names = {p.relative_to(REPO).as_posix() for p in FILES}
    assert {"native/__init__.py", "resolver/cli.py", "registry/bulk.py"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_module_opens_with_a_docstring(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    first = tree.body[0] if tree.body else None
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
        and isinstance(first.value.value, str), f"{path.relative_to(REPO)} has no module docstring"  # fmt: skip
    assert first.value.value.strip(), f"{path.relative_to(REPO)} has an empty docstring"


def test_cython_twin_opens_with_a_docstring():
    text = (REPO / "native" / "_hotpath.pyx").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines and lines[0].lstrip().startswith(('"""', "'''")), "native/_hotpath.pyx"
