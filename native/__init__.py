"""Hot-path selector: the Cython extension when built, else its pure-Python twin.

Exports ``normalize_key``, ``http_resolve``, ``handle_resolve``, ``json_escape``,
``pack_json_values``, ``encode_jsonl_line``, ``encode_jsonl_lines``, ``encode_csv_row``,
``encode_csv_lines``, ``UdpPump``, ``RecordCache``, ``DnsZone``, ``dns_answer``, ``BATCH`` and
``IMPLEMENTATION`` (``"cython"`` or ``"python"``).
``IDNODE_NO_EXTENSIONS=1`` forces the twin at run time.  Both twins take bytes, parsed JSON,
CSV rows or py-lmdb objects and return bytes (or tuples and lists of bytes) or None; see
``_hotpath_py`` for the contracts.  This package imports nothing of ours (checked by tests/meta).
"""

import os

from native import _hotpath_py as python_twin

NO_EXTENSIONS = os.environ.get("IDNODE_NO_EXTENSIONS", "") not in ("", "0")

cython_twin = None
if not NO_EXTENSIONS:
    try:
        from native import _hotpath as cython_twin  # type: ignore[no-redef]
    except ImportError:  # not built: the pure twin answers
        cython_twin = None

_impl = cython_twin if cython_twin is not None else python_twin
IMPLEMENTATION = "cython" if cython_twin is not None else "python"

normalize_key = _impl.normalize_key
http_resolve = _impl.http_resolve
handle_resolve = _impl.handle_resolve
json_escape = _impl.json_escape
pack_json_values = _impl.pack_json_values
encode_jsonl_line = _impl.encode_jsonl_line
encode_jsonl_lines = _impl.encode_jsonl_lines
encode_csv_row = _impl.encode_csv_row
encode_csv_lines = _impl.encode_csv_lines
UdpPump = _impl.UdpPump
RecordCache = _impl.RecordCache
DnsZone = _impl.DnsZone
dns_answer = _impl.dns_answer
BATCH = _impl.BATCH

__all__ = ["IMPLEMENTATION", "normalize_key", "http_resolve", "handle_resolve", "json_escape",
           "pack_json_values", "encode_jsonl_line", "encode_jsonl_lines", "encode_csv_row",
           "encode_csv_lines", "UdpPump", "RecordCache", "DnsZone", "dns_answer", "BATCH"]
