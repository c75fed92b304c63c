"""Test data: an enterprise prefix set up as Handle.net does, as JSON lines for ``idnode load``.

``enterprise(prefix, secret=..., pubkey=...)``: ``0.NA/<prefix>`` with an HS_ADMIN naming the
group ``200:0.NA/<prefix>``, the group's HS_VLIST, and the identities in it —
``300:<prefix>/ADMIN`` holding an HS_SECKEY (admin-read only) and, with ``pubkey`` (the
HS_PUBKEY value data), ``300:<prefix>/KEYS`` holding it.  ``enterprise_changes``: the same as
store changes, for tests that write a store directly.
"""

from __future__ import annotations

import base64
import json

ALL = "011111111111"


def admin_value(prefix: str) -> dict:
    return {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
        "handle": f"0.NA/{prefix}", "index": 200, "permissions": ALL}}}  # fmt: skip


def enterprise(prefix: str, secret: str, pubkey: bytes | None = None) -> list[dict]:
    members = [{"handle": f"{prefix}/ADMIN", "index": 300}]
    lines = [{"handle": f"{prefix}/ADMIN", "values": [admin_value(prefix), {
        "index": 300, "type": "HS_SECKEY", "data": secret, "permissions": "1100"}]}]
    if pubkey is not None:
        members.append({"handle": f"{prefix}/KEYS", "index": 300})
        lines.append({"handle": f"{prefix}/KEYS", "values": [admin_value(prefix), {
            "index": 300, "type": "HS_PUBKEY",
            "data": {"format": "base64", "value": base64.b64encode(pubkey).decode()}}]})
    na = {"handle": f"0.NA/{prefix}", "values": [admin_value(prefix), {
        "index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": members}}]}
    return [na, *lines]


def enterprise_changes(prefix: str, secret: str | bytes, pubkey: bytes | None = None) -> list:
    """``enterprise(...)`` as ``resolver.store.Change`` objects (through ``idnode load``'s
    line parser, so both forms hold the same records)."""
    from registry.bulk import parse_line
    from resolver.record import pack
    from resolver.store import Change

    if isinstance(secret, bytes):
        secret = secret.decode()
    out = []
    for line in enterprise(prefix, secret, pubkey):
        parsed = parse_line(json.dumps(line), now=1)
        out.append(Change(parsed.key, pack(parsed.record), parsed.prefix))
    return out
