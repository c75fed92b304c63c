"""The extension is optional: a failed compile or IDNODE_NO_EXTENSIONS=1 leaves the pure twin,
and the build says which it made.  Runs setup.py on a copy of the tree (no network needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _copy_tree(tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    dst.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "native", dst / "native",
                    ignore=shutil.ignore_patterns("*.so", "*.c", "*.html", "__pycache__"))  # fmt: skip
    return dst


def _build(src: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace"],
        cwd=src, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _implementation(src: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "IDNODE_NO_EXTENSIONS"}
    # -S: no site-packages, so the copy is imported, not the editable install (native is stdlib-only)
    out = subprocess.run([sys.executable, "-S", "-c", "import native; print(native.IMPLEMENTATION)"],
                         cwd=src, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_compiler_failure_falls_back_to_the_pure_twin(tmp_path):
    src = _copy_tree(tmp_path)
    result = _build(src, CC="/bin/false", LDSHARED="/bin/false")
    assert result.returncode == 0, result.stderr
    assert "pure-Python hot path only" in result.stderr
    assert not list((src / "native").glob("_hotpath*.so"))
    assert _implementation(src) == "python"


def test_no_extensions_variable_skips_the_build(tmp_path):
    src = _copy_tree(tmp_path)
    result = _build(src, IDNODE_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert "IDNODE_NO_EXTENSIONS set" in result.stderr
    assert not list((src / "native").glob("_hotpath*.so"))
    assert _implementation(src) == "python"


def test_normal_build_makes_the_extension(tmp_path):
    src = _copy_tree(tmp_path)
    result = _build(src, **{"IDNODE_NO_EXTENSIONS": ""})
    assert result.returncode == 0, result.stderr
    assert "built the Cython hot path" in result.stderr
    assert list((src / "native").glob("_hotpath*.so"))
    assert _implementation(src) == "cython"


def test_every_package_is_installed():
    """``[tool.setuptools] packages`` lists packages one by one: a new package missing there
    works from the source tree and is silently left out of ``pip install .``."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])  # fmt: skip
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".")
             for top in ("native", "resolver", "registry")
             for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found == listed
