"""The selector picks the Cython twin whenever it may: a silently missing build fails here."""

from __future__ import annotations

import os

import native
from native import _hotpath_py


def _no_extensions() -> bool:
    return os.environ.get("IDNODE_NO_EXTENSIONS", "") not in ("", "0")


def test_selector_agrees_with_the_environment():
    assert native.NO_EXTENSIONS is _no_extensions()


def test_implementation():
    if _no_extensions():
        assert native.IMPLEMENTATION == "python"
        assert native.http_resolve is _hotpath_py.http_resolve
        assert native.normalize_key is _hotpath_py.normalize_key
        assert native.json_escape is _hotpath_py.json_escape
        assert native.pack_json_values is _hotpath_py.pack_json_values
        assert native.encode_jsonl_line is _hotpath_py.encode_jsonl_line
        assert native.encode_jsonl_lines is _hotpath_py.encode_jsonl_lines
        assert native.encode_csv_row is _hotpath_py.encode_csv_row
        assert native.encode_csv_lines is _hotpath_py.encode_csv_lines
    else:
        from native import _hotpath  # ImportError here: the extension was expected, not built

        assert native.IMPLEMENTATION == "cython"
        assert native.http_resolve is _hotpath.http_resolve
        assert native.normalize_key is _hotpath.normalize_key
        assert native.json_escape is _hotpath.json_escape
        assert native.pack_json_values is _hotpath.pack_json_values
        assert native.encode_jsonl_line is _hotpath.encode_jsonl_line
        assert native.encode_jsonl_lines is _hotpath.encode_jsonl_lines
        assert native.encode_csv_row is _hotpath.encode_csv_row
        assert native.encode_csv_lines is _hotpath.encode_csv_lines
        assert _hotpath.__file__.endswith((".so", ".pyd"))
