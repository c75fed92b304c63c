"""REST response bodies in the exact shapes of the Handle.net v9 API (handle.md §7).

Shapes (key order matters — clients and our parity tests compare bytes):
* resolution hit: ``{"responseCode":1,"handle":H,"values":[V…]}``
* error:          ``{"responseCode":RC[,"message":M][,"values":[]],"handle":H}`` — ``values``
  only for responseCode 200 of a resolution, ``handle`` only when the request named one
  (reference ``GsonUtility.serializeResponseToRequest``).
* listing:        ``{"responseCode":1,"prefix":P,"totalCount":"N"[,"page":p,"pageSize":s],"handles":[…]}``
* write success:  ``{"responseCode":1,"handle":H}``
* template violation (idnode extension, issue 5): the error shape with a last member
  ``"errors":[{"path","field","index","message"}]``, one per violated field.
Each V is ``resolver.valuejson.value_to_json``; the stored JSON section holds the same bytes.

Request bodies of writes (``parse_values_body``): a JSON array of values, ``{"values": [...]}``
with an optional ``"handle"`` that must name the same handle, or one value object (handle.md
§7.1, §8 — pyhandle sends the wrapper).
"""

from __future__ import annotations

import orjson

from resolver.errors import InvalidValue, MalformedRequest
from resolver.protocols.handle.codes import ResponseCode
from resolver.record import value_json
from resolver.valuejson import iso_utc, value_from_json
from resolver.values import HandleValue

CONTENT_TYPE = "application/json; charset=UTF-8"
JSONP_CONTENT_TYPE = "application/javascript; charset=UTF-8"


def resolution_body(handle: str, values: tuple[HandleValue, ...] | list[HandleValue]) -> bytes:
    head = orjson.dumps({"responseCode": int(ResponseCode.SUCCESS), "handle": handle})
    return head[:-1] + b',"values":[' + b",".join(value_json(v) for v in values) + b"]}"


def referral_body(handle: str, values: tuple[HandleValue, ...] | list[HandleValue]) -> bytes:
    """A prefix referral (RC 303) as the reference serializes its ServiceReferralResponse
    (GsonUtility ``ResponseGsonTypeHierarchyAdapter`` + ``serializeResponseToRequest``):
    ``{"responseCode":303,"values":[V…],"handle":H}`` — no ``referralHandle``, the referral
    handle being empty; ``handle`` is the request's, appended last."""
    return (b'{"responseCode":%d,"values":[' % ResponseCode.PREFIX_REFERRAL
            + b",".join(value_json(v) for v in values) + b'],"handle":'
            + orjson.dumps(handle) + b"}")  # fmt: skip


def ok_body(handle: str) -> bytes:
    return orjson.dumps({"responseCode": int(ResponseCode.SUCCESS), "handle": handle})


def parse_values_body(body: bytes, same_handle=None) -> list[HandleValue]:
    """The values of a PUT body.  ``same_handle(text) -> bool`` checks a wrapper's
    ``"handle"``; a mismatch is ``MalformedRequest``, bad JSON too, a bad value ``InvalidValue``."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"Request body is not JSON: {exc}") from None
    if isinstance(obj, dict) and "values" in obj:
        named = obj.get("handle")
        if named is not None and (not isinstance(named, str) or
                                  (same_handle is not None and not same_handle(named))):
            raise MalformedRequest("Handle in body does not match the handle in the URL")
        obj = obj["values"]
    elif isinstance(obj, dict):
        obj = [obj]
    if not isinstance(obj, list):
        raise InvalidValue("expected an array of handle values")
    return [value_from_json(v) for v in obj]


def parse_batch_body(body: bytes, make_item) -> list:
    """A batch request: ``{"items": [...]}`` or a bare array of ``{"op","handle","values"}``.
    ``make_item(op, handle, values, error)`` builds each item; an item whose values do not
    parse is made with its error (the batch goes on without it).  The body as a whole must be
    JSON with items, else ``MalformedRequest``."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"Request body is not JSON: {exc}") from None
    if isinstance(obj, dict):
        obj = obj.get("items")
    if not isinstance(obj, list):
        raise MalformedRequest('expected {"items": [...]}')
    items = []
    for raw in obj:
        if not isinstance(raw, dict) or not isinstance(raw.get("handle"), str):
            items.append(make_item("", "", (), MalformedRequest('an item needs "op" and "handle"')))
            continue
        op, handle, error, values = str(raw.get("op", "")), raw["handle"], None, ()
        listed = raw.get("values") or []
        try:
            if not isinstance(listed, list):
                raise InvalidValue('"values" must be an array of handle values')
            values = tuple(value_from_json(v) for v in listed)
        except InvalidValue as exc:
            error = exc
        items.append(make_item(op, handle, values, error))
    return items


def batch_body(txn_id: int, results) -> bytes:
    """``{"responseCode":1,"txnId":N,"results":[{"handle","responseCode"[,"message"]}]}``."""
    out = []
    for handle, rc, message in results:
        item: dict = {"handle": handle, "responseCode": int(rc)}
        if message:
            item["message"] = message
        out.append(item)
    return orjson.dumps({"responseCode": 1, "txnId": txn_id, "results": out})


def error_body(rc: int, handle: str | None = None, message: str = "", *,
               empty_values: bool = False, errors=None) -> bytes:  # fmt: skip
    """``errors``: the per-field violations of a metadata template (``FieldError`` objects,
    ``resolver.errors.TemplateViolation.errors``), appended as ``"errors":[{"path","field",
    "index","message"}]``; None (the default) leaves the Handle.net shape unchanged."""
    obj: dict = {"responseCode": int(rc)}
    if message:
        obj["message"] = message
    if empty_values:
        obj["values"] = []
    if handle:
        obj["handle"] = handle
    if errors is not None:
        obj["errors"] = [e.to_json() for e in errors]
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


#: Change-log actions by number (resolver/store/schema.py ACTION_*).
ACTION_NAMES = {1: "create", 2: "delete", 3: "update", 4: "home", 5: "unhome", 6: "import"}


def changes_body(changes) -> bytes:
    """``GET /api/v1/changes``: ``{"responseCode":1,"changes":[…],"next":N}`` — each change
    ``{"txnId","time","action","op","handle","identity","before","after"}`` (time ISO-8601 UTC
    to the millisecond, digests SHA-256 hex or null; an import chunk adds ``"created"``,
    the identifiers it created, and its "after" is the SHA-256 of their records concatenated); ``next`` is the ``after`` that continues
    the listing (the last txnId; 0 when empty)."""
    out = []
    last = 0
    for c in changes:
        key = c.key.decode("utf-8", "replace")
        ms = f"{c.time_ms % 1000:03d}"
        out.append({
            "txnId": c.txn_id,
            "time": iso_utc(c.time_ms // 1000).replace("Z", f".{ms}Z"),
            "action": ACTION_NAMES.get(c.action, str(c.action)),
            "op": c.op,
            "handle": f"0.NA/{key}" if c.action in (4, 5) else key,
            "identity": c.identity,
            "before": c.before.hex() if c.before else None,
            "after": c.after.hex() if c.after else None,
        })  # fmt: skip
        if c.detail:  # an import chunk: every identifier it created ("after" digests them all)
            out[-1]["created"] = [k.decode("utf-8", "replace") for k in c.detail]
        last = c.txn_id
    return orjson.dumps({"responseCode": 1, "changes": out, "next": last})


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
