"""Fixtures of the unit tests: real LMDB stores in pytest's tmp_path and the hot-path twins."""

from __future__ import annotations

import pytest

from native import _hotpath_py
from resolver.store.lmdb_store import LmdbStore

try:  # when the extension is not built only the pure twin is tested here; tests/parity
    from native import _hotpath  # checks that it is built whenever it should be
except ImportError:
    _hotpath = None

TWINS = [pytest.param(_hotpath_py, id="python")]
if _hotpath is not None:
    TWINS.append(pytest.param(_hotpath, id="cython"))


@pytest.fixture(scope="session", params=TWINS)
def twin(request):
    """Each available hot-path twin module (normalize_key, json_escape, http_resolve)."""
    return request.param


@pytest.fixture
def store(tmp_path):
    s = LmdbStore(tmp_path / "store", map_size=64 << 20)
    yield s
    s.close()
