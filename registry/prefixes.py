"""Prefix handles: the ``0.NA/<prefix>`` record written when a prefix is homed here."""

from __future__ import annotations

import time

from resolver.record import Record, pack
from resolver.values import AdminRecord, HandleValue

#: Every HS_ADMIN right but LIST_HANDLES (0x7FF), as Handle.net's default prefix admin.
PREFIX_ADMIN_PERMISSIONS = 0x7FF


def default_prefix_handle(prefix: str, *, now: int | None = None) -> bytes:
    """Stored record of ``0.NA/<prefix>`` with one HS_ADMIN naming ``300:0.NA/<prefix>``."""
    admin = AdminRecord(f"0.NA/{prefix}", 300, PREFIX_ADMIN_PERMISSIONS)
    ts = int(time.time()) if now is None else now
    return pack(Record([HandleValue(100, "HS_ADMIN", admin.to_bytes(), timestamp=ts)]))
