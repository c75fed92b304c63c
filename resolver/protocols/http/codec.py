"""REST response bodies in the exact shapes of the Handle.net v9 API (handle.md §7).

Shapes (key order matters — clients and our parity tests compare bytes):
* resolution hit: ``{"responseCode":1,"handle":H,"values":[V…]}``
* error:          ``{"responseCode":RC[,"message":M][,"values":[]],"handle":H}`` — ``values``
  only for responseCode 200 of a resolution, ``handle`` only when the request named one
  (reference ``GsonUtility.serializeResponseToRequest``).
* listing:        ``{"responseCode":1,"prefix":P,"totalCount":"N"[,"page":p,"pageSize":s],"handles":[…]}``
Each V is ``resolver.valuejson.value_to_json``; the stored JSON section holds the same bytes.
"""

from __future__ import annotations

import orjson

from resolver.protocols.handle.codes import ResponseCode
from resolver.record import value_json
from resolver.values import HandleValue

CONTENT_TYPE = "application/json; charset=UTF-8"
JSONP_CONTENT_TYPE = "application/javascript; charset=UTF-8"


def resolution_body(handle: str, values: tuple[HandleValue, ...] | list[HandleValue]) -> bytes:
    head = orjson.dumps({"responseCode": int(ResponseCode.SUCCESS), "handle": handle})
    return head[:-1] + b',"values":[' + b",".join(value_json(v) for v in values) + b"]}"


def error_body(rc: int, handle: str | None = None, message: str = "", *,
               empty_values: bool = False) -> bytes:  # fmt: skip
    obj: dict = {"responseCode": int(rc)}
    if message:
        obj["message"] = message
    if empty_values:
        obj["values"] = []
    if handle:
        obj["handle"] = handle
    return orjson.dumps(obj)


def listing_body(prefix: str, total: int, handles: list[str], page: int | None,
                 page_size: int | None) -> bytes:  # fmt: skip
    obj: dict = {"responseCode": 1, "prefix": prefix, "totalCount": str(total)}
    if page is not None:
        obj["page"] = page
    if page_size is not None:
        obj["pageSize"] = page_size
    obj["handles"] = handles
    return orjson.dumps(obj)


def pretty(body: bytes) -> bytes:
    return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2)


def scrub_callback(callback: str) -> str:
    """JSONP callback names keep ``_ $ A-Z a-z``, digits after the first, and ≥ U+00A0;
    anything else becomes ``_`` (reference ``scrubCallbackParameter``)."""
    return "".join(
        c if c in "_$" or c.isascii() and c.isalpha() or (i and c.isdigit() and c.isascii())
        or ord(c) >= 0xA0 else "_"
        for i, c in enumerate(callback)
    )  # fmt: skip


def jsonp(callback: str, body: bytes) -> bytes:
    return scrub_callback(callback).encode("utf-8") + b"(" + body + b");"
