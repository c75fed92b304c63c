"""The Handle.net v9 JSON form of handle values (handle.md §7.2; reference ``GsonUtility``).

Owns ``value_to_json`` (what the REST API and the stored JSON section show) and
``value_from_json`` (the tolerant reader used by the loader and, later, by registration).
Output is exact: the same dict shapes and key order as the reference serializer, so that
``orjson.dumps`` of them is the body a Handle.net client expects.  Imports ``values``, ``errors``.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import struct
import time

from resolver.errors import InvalidValue
from resolver.values import (
    ADMIN_TYPE, DEFAULT_PERMISSIONS, DEFAULT_TTL, PUBKEY_TYPE, SITE_TYPES, TTL_ABSOLUTE,
    TTL_RELATIVE, VLIST_TYPE, AdminRecord, HandleValue, Interface, ServerInfo, SiteInfo,
    decode_public_key, decode_vlist, encode_public_key, encode_vlist,
)  # fmt: skip

_PROTOCOLS = {0: "UDP", 1: "TCP", 2: "HTTP", 3: "HTTPS"}
_PROTOCOL_CODES = {v: k for k, v in _PROTOCOLS.items()}


def iso_utc(seconds: int) -> str:
    """ISO-8601 UTC without milliseconds, as the reference ``FastDateFormat.ISO8601_NO_MS``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def parse_iso_utc(text: str) -> int:
    text = str(text).strip()
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S"):
        try:
            return calendar.timegm(time.strptime(text, fmt))
        except ValueError:
            continue
    # Fractional seconds of any precision, e.g. "2026-01-01T00:00:00.123456789Z".
    head, dot, _ = text.partition(".")
    if dot:
        try:
            return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            pass
    raise InvalidValue(f"bad timestamp {text!r}")


def looks_like_binary(data: bytes) -> bool:
    """Reference ``Util.looksLikeBinary``: not UTF-8, or a control byte other than 0x09–0x13."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    for b in data:
        if 0x09 <= b <= 0x13:
            continue
        if b < 0x20 or b == 0x7F:
            return True
    return False


def admin_permissions_text(mask: int) -> str:
    return format(mask & 0xFFF, "012b")


def _site_to_json(site: SiteInfo) -> dict:
    out: dict = {
        "version": site.version,
        "protocolVersion": f"{site.protocol_major}.{site.protocol_minor}",
        "serialNumber": site.serial,
        "primarySite": site.primary,
        "multiPrimary": site.multi_primary,
    }
    if site.hash_option != 2:
        out["hashOption"] = site.hash_option
    if site.hash_filter:
        out["hashFilter"] = site.hash_filter
    out["attributes"] = [{"name": n, "value": v} for n, v in site.attributes]
    servers = []
    for s in site.servers:
        try:
            key = {"format": "key", "value": decode_public_key(s.public_key)}
        except InvalidValue:
            key = {"format": "base64", "value": base64.b64encode(s.public_key).decode("ascii")}
        servers.append({
            "serverId": s.server_id,
            "address": s.address_text,
            "publicKey": key,
            "interfaces": [
                {"query": bool(i.type & 2), "admin": bool(i.type & 1),
                 "protocol": _PROTOCOLS.get(i.protocol, i.protocol), "port": i.port}
                for i in s.interfaces
            ],
        })  # fmt: skip
    out["servers"] = servers
    return out


def data_to_json(v: HandleValue) -> dict:
    """The ``data`` member: typed formats for the standard types, else string or base64."""
    t = v.type.upper()
    try:
        if t == ADMIN_TYPE:
            a = AdminRecord.from_bytes(v.data)
            value = {"handle": a.handle, "index": a.index,
                     "permissions": admin_permissions_text(a.permissions)}  # fmt: skip
            if a.legacy_byte_length:
                value["legacyByteLength"] = True
            return {"format": "admin", "value": value}
        if t == VLIST_TYPE:
            refs = decode_vlist(v.data)
            return {"format": "vlist", "value": [{"handle": h, "index": i} for h, i in refs]}
        if t in SITE_TYPES:
            return {"format": "site", "value": _site_to_json(SiteInfo.from_bytes(v.data))}
        if t == PUBKEY_TYPE:
            return {"format": "key", "value": decode_public_key(v.data)}
    except (InvalidValue, ValueError):
        pass  # as the reference: undecodable typed data falls back to string/base64
    if not looks_like_binary(v.data):
        return {"format": "string", "value": v.data.decode("utf-8")}
    return {"format": "base64", "value": base64.b64encode(v.data).decode("ascii")}


def value_to_json(v: HandleValue) -> dict:
    """One value as the reference ``HandleValueGsonTypeAdapter.serialize`` writes it."""
    out: dict = {"index": v.index, "type": v.type, "data": data_to_json(v)}
    if v.permissions != DEFAULT_PERMISSIONS:
        out["permissions"] = format(v.permissions & 0x0F, "04b")
    out["ttl"] = v.ttl if v.ttl_type == TTL_RELATIVE else iso_utc(v.ttl)
    if v.timestamp:
        out["timestamp"] = iso_utc(v.timestamp)
    if v.references:
        out["references"] = [{"handle": h, "index": i} for h, i in v.references]
    return out


# ---------------------------------------------------------------------------------------------
# Reading: tolerant of every input shape listed in handle.md §7.2 and §8.


_DECIMAL = re.compile(r"[+-]?[0-9]+")


def _int(x, what: str) -> int:
    if isinstance(x, bool):
        raise InvalidValue(f"{what} must be an integer")
    if isinstance(x, int):
        return x
    if isinstance(x, str) and _DECIMAL.fullmatch(x.strip()):
        return int(x.strip())
    raise InvalidValue(f"{what} must be an integer, got {x!r}")


def _admin_perms(p) -> int:
    if p is None:
        return 0
    if isinstance(p, bool):
        return 0xFFF if p else 0
    if isinstance(p, int):
        return p & 0xFFF
    if isinstance(p, str):
        if p == "*":
            return 0xFFF
        if p and set(p) <= {"0", "1"}:
            return int(p[-12:], 2)
        raise InvalidValue(f"bad admin permissions {p!r}")
    if isinstance(p, list):
        # array form: element i is bit i (reference permsArrayToArray)
        return sum(1 << i for i, x in enumerate(p[:12]) if x not in (None, False, 0, ""))
    raise InvalidValue(f"bad admin permissions {p!r}")


def _site_from_json(obj: dict) -> bytes:
    if any(k in obj for k in ("ServerList", "Address", "Port")):
        obj = {k[:1].lower() + k[1:]: v for k, v in obj.items()}
    major, _, minor = str(obj.get("protocolVersion", "2.11")).partition(".")
    attrs = obj.get("attributes", [])
    if isinstance(attrs, dict):
        attrs = [{"name": k, "value": v} for k, v in attrs.items()]
    servers = []
    for s in obj.get("servers", obj.get("serverList")) or []:
        key = s.get("publicKey", {"format": "base64", "value": ""})
        ifaces = []
        for i in s.get("interfaces", s.get("interfaceList")) or []:
            proto = i["protocol"]
            code = _PROTOCOL_CODES.get(proto) if isinstance(proto, str) else _int(proto, "protocol")
            if code is None:
                raise InvalidValue(f"unknown interface protocol {proto!r}")
            itype = (2 if i.get("query") else 0) | (1 if i.get("admin") else 0)
            ifaces.append(Interface(itype, code, _int(i["port"], "port")))
        servers.append(ServerInfo(_int(s["serverId"], "serverId"),
                                  ServerInfo.pack_address(s["address"]),
                                  data_from_json(key, "HS_SITE/publicKey"), tuple(ifaces)))  # fmt: skip
    site = SiteInfo(
        version=_int(obj.get("version", 1), "version"),
        protocol_major=int(major), protocol_minor=int(minor or 0),
        serial=_int(obj.get("serialNumber", 1), "serialNumber"),
        primary=bool(obj.get("primarySite", True)),
        multi_primary=bool(obj.get("multiPrimary", False)),
        hash_option=_int(obj.get("hashOption", 2), "hashOption"),
        hash_filter=str(obj.get("hashFilter", "")),
        attributes=tuple((str(a["name"]), str(a["value"])) for a in attrs),
        servers=tuple(servers),
    )  # fmt: skip
    return site.to_bytes()


def data_from_json(data, vtype: str = "") -> bytes:
    """The ``data`` member in any accepted form → raw bytes."""
    if isinstance(data, str):
        return data.encode("utf-8")
    if not isinstance(data, dict) or "format" not in data:
        raise InvalidValue(f"bad data for type {vtype!r}: expected a string or {{format, value}}")
    fmt = str(data["format"]).lower()
    value = data.get("value")
    try:
        if fmt == "string":
            return str(value).encode("utf-8")
        if fmt == "base64":
            return base64.b64decode(str(value), validate=True)
        if fmt == "hex":
            return bytes.fromhex(str(value))
        if fmt == "admin":
            return AdminRecord(str(value["handle"]), _int(value["index"], "admin index"),
                               _admin_perms(value.get("permissions")),
                               bool(value.get("legacyByteLength", False))).to_bytes()  # fmt: skip
        if fmt == "vlist":
            return encode_vlist([(str(r["handle"]), _int(r["index"], "vlist index")) for r in value])
        if fmt == "site":
            return _site_from_json(value)
        if fmt == "key":
            return encode_public_key(value)
    except (KeyError, TypeError, AttributeError, binascii.Error, ValueError, struct.error,
            OverflowError) as exc:  # fmt: skip
        if isinstance(exc, InvalidValue):
            raise
        raise InvalidValue(f"bad {fmt} data for type {vtype!r}: {exc}") from None
    raise InvalidValue(f"unknown data format {data['format']!r}")


def value_from_json(obj, *, now: int | None = None) -> HandleValue:
    """A value object (handle.md §7.2) → ``HandleValue``; missing ttl → 86400, timestamp → now.

    Raises ``InvalidValue`` — and nothing else — for any malformed input.
    """
    try:
        return _value_from_json(obj, now)
    except InvalidValue:
        raise
    except (KeyError, TypeError, AttributeError, ValueError, struct.error, OverflowError) as exc:
        raise InvalidValue(f"bad handle value: {type(exc).__name__}: {exc}") from None


def _value_from_json(obj, now: int | None) -> HandleValue:
    if not isinstance(obj, dict):
        raise InvalidValue("a handle value must be a JSON object")
    for key in ("index", "type", "data"):
        if key not in obj:
            raise InvalidValue(f"handle value without {key!r}")
    vtype = obj["type"]
    if not isinstance(vtype, str):
        raise InvalidValue("type must be a string")
    perms = DEFAULT_PERMISSIONS
    if "permissions" in obj:
        p = str(obj["permissions"])
        if p == "*":
            perms = 0x0F
        elif p and set(p) <= {"0", "1"}:
            perms = int(p[-4:], 2)
        else:
            raise InvalidValue(f"bad value permissions {p!r}")
    ttl, ttl_type = DEFAULT_TTL, TTL_RELATIVE
    if obj.get("ttl") is not None:
        t = obj["ttl"]
        if isinstance(t, str) and not _DECIMAL.fullmatch(t.strip()):
            ttl, ttl_type = parse_iso_utc(t), TTL_ABSOLUTE
        else:
            ttl = _int(t, "ttl")
    timestamp = parse_iso_utc(obj["timestamp"]) if obj.get("timestamp") else (
        int(time.time()) if now is None else now)  # fmt: skip
    refs = tuple((str(r["handle"]), _int(r["index"], "reference index"))
                 for r in obj.get("references") or ())  # fmt: skip
    return HandleValue(
        index=_int(obj["index"], "index"), type=vtype, data=data_from_json(obj["data"], vtype),
        ttl=ttl, ttl_type=ttl_type, timestamp=timestamp, permissions=perms, references=refs,
    ).validate()

