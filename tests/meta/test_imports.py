"""Every module of ``native``, ``resolver`` and ``registry`` imports on its own, in a fresh
interpreter, with warnings turned into errors (``python -W error -c "import X"``).

A module that only works after some other module was imported first, or that warns at import
time (deprecated APIs, unclosed resources), fails here.  The interpreters run in parallel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("native", "resolver", "registry")


def discover() -> list[str]:
    """Dotted names of every .py module in the packages (``__main__`` runs the CLI: excluded),
    plus the compiled Cython twin when it has been built."""
    names = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if "__pycache__" in parts or parts[-1] == "__main__":
                continue
            if parts[-1] == "__init__":
                parts.pop()
            names.append(".".join(parts))
    if any((REPO / "native").glob("_hotpath*.so")) or any((REPO / "native").glob("_hotpath*.pyd")):
        names.append("native._hotpath")
    return names


MODULES = discover()


def test_discovery_finds_the_packages():
    for name in ("native", "native._hotpath_py", "resolver", "resolver.cli", "resolver.errors",
                 "resolver.servers.http_app", "resolver.store.lmdb_store", "registry",
                 "registry.bulk"):  # fmt: skip
        assert name in MODULES, name


def _import(name: str) -> tuple[int, str]:
    r = subprocess.run([sys.executable, "-W", "error", "-c", f"import {name}"], cwd=REPO,
                       env=dict(os.environ), capture_output=True, text=True, timeout=120)  # fmt: skip
    return r.returncode, r.stderr


@pytest.fixture(scope="module")
def import_results() -> dict[str, tuple[int, str]]:
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
        return dict(zip(MODULES, pool.map(_import, MODULES)))


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(import_results, module):
    code, stderr = import_results[module]
    assert code == 0, f"python -W error -c 'import {module}' failed:\n{stderr}"
    assert stderr == "", f"import {module} wrote to stderr:\n{stderr}"
