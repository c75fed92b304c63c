"""Fixtures of the parity tests: real LMDB stores loaded with the shared vectors, and the twins."""

from __future__ import annotations

import pytest

import native
import vectors
from resolver.store.lmdb_store import LmdbStore

try:
    from native import _hotpath as cython_twin
except ImportError as exc:  # judged in cython_twin_or_none: allowed only with IDNODE_NO_EXTENSIONS
    cython_twin = None
    CYTHON_IMPORT_ERROR: ImportError | None = exc
else:
    CYTHON_IMPORT_ERROR = None


@pytest.fixture(scope="session")
def cython_twin_or_none():
    """The Cython twin; None only when it is not built and IDNODE_NO_EXTENSIONS is set."""
    if cython_twin is None and not native.NO_EXTENSIONS:
        pytest.fail(f"native._hotpath is not importable and IDNODE_NO_EXTENSIONS is not set: "
                    f"{CYTHON_IMPORT_ERROR}")  # fmt: skip
    return cython_twin


def _loaded_store(path, case_sensitive: bool) -> LmdbStore:
    store = LmdbStore(path, map_size=256 << 20)
    store.write(vectors.changes(case_sensitive))
    return store


@pytest.fixture(scope="session")
def parity_stores(tmp_path_factory):
    """{case_sensitive: store} — the same vectors keyed both ways."""
    stores = {
        False: _loaded_store(tmp_path_factory.mktemp("parity-ci"), False),
        True: _loaded_store(tmp_path_factory.mktemp("parity-cs"), True),
    }
    yield stores
    for s in stores.values():
        s.close()


@pytest.fixture(scope="session")
def scratch_store(tmp_path_factory):
    """A store with homed prefixes only, for generated records (hypothesis)."""
    store = LmdbStore(tmp_path_factory.mktemp("parity-gen"), map_size=256 << 20)
    store.write([c for c in vectors.changes(False) if c.prefix])
    yield store
    store.close()
