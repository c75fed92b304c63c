"""Test data: an enterprise prefix set up as Handle.net does, as JSON lines for ``idnode load``.

``enterprise(prefix, secret=..., pubkey=...)``: ``0.NA/<prefix>`` with an HS_ADMIN naming the
group ``200:0.NA/<prefix>``, the group's HS_VLIST, and the identities in it —
``300:<prefix>/ADMIN`` holding an HS_SECKEY (admin-read only) and, with ``pubkey`` (the
HS_PUBKEY value data), ``300:<prefix>/KEYS`` holding it.
"""

from __future__ import annotations

import base64

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
