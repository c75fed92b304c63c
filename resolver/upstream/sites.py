"""Choosing the server of a site that answers for a handle, and its query interface.

Pure functions over ``resolver.values.SiteInfo`` (HS_SITE, RFC 3651 §3.2.2; handle.md §2.4):
peering uses them to send a query to the one server of a multi-server site that holds the
handle — any other server of the site answers RC 301 for it.

Server selection (reference ``SiteInfo.getHandleHash`` / ``determineServerNum``)::

    part  = prefix        (hashOption 0: the bytes before the first "/", "0.NA" without one)
          | suffix        (hashOption 1: the bytes after the first "/", the whole handle
                           without one)
          | whole handle  (hashOption 2, the HNv9 default)
    part  = ASCII upper case of the UTF-8 bytes (reference ``Util.upperCase``: a-z only)
    hash  = abs(int32 big-endian of the last 4 bytes of MD5(part))      (Java Math.abs)
    index = hash % numServers      → servers[index] (array position, not the serverId)

Interfaces (reference ``Interface``): type 0 out of service, 1 admin, 2 query, 3 admin+query;
protocol 0 UDP, 1 TCP, 2 HTTP, 3 HTTPS.  A resolution may use an interface of type 2 or 3.
"""

from __future__ import annotations

import hashlib

from resolver.errors import InvalidValue
from resolver.values import Interface, ServerInfo, SiteInfo

HASH_BY_PREFIX = 0
HASH_BY_SUFFIX = 1
HASH_BY_ALL = 2

TYPE_QUERY = 2
TYPE_ADMIN_AND_QUERY = 3

PROTO_UDP = 0
PROTO_TCP = 1
PROTO_HTTP = 2
PROTO_HTTPS = 3

_INT32_MIN = -(1 << 31)


def _part(handle: bytes, hash_option: int) -> bytes:
    slash = handle.find(b"/")
    if hash_option == HASH_BY_PREFIX:
        return b"0.NA" if slash < 0 else handle[:slash]
    if hash_option == HASH_BY_SUFFIX:
        return handle if slash < 0 else handle[slash + 1 :]
    if hash_option == HASH_BY_ALL:
        return handle
    raise InvalidValue(f"Unknown hash method: {hash_option}")


def handle_hash(handle: str | bytes, hash_option: int) -> int:
    """The reference ``SiteInfo.getHandleHash`` of ``handle``; ``InvalidValue`` for a hash
    option other than 0, 1, 2.

    Java's ``Math.abs`` leaves -2**31 negative; so does this (one hash value in 2**32), so the
    number is the reference's bit for bit.
    """
    data = handle.encode("utf-8") if isinstance(handle, str) else bytes(handle)
    digest = hashlib.md5(_part(data, hash_option).upper()).digest()  # bytes.upper: ASCII only
    h = int.from_bytes(digest[-4:], "big", signed=True)
    return h if h == _INT32_MIN else abs(h)


def select_server(site: SiteInfo, handle: str | bytes) -> ServerInfo:
    """The server of ``site`` responsible for ``handle`` under the site's hash option.

    ``InvalidValue`` for a site without servers or with an unknown hash option.  For the hash
    -2**31 Java's remainder is 0 (then both pick ``servers[0]``) or negative (the reference
    throws); Python's non-negative modulo still picks a server there.
    """
    if not site.servers:
        raise InvalidValue("HS_SITE lists no servers")
    return site.servers[handle_hash(handle, site.hash_option) % len(site.servers)]


def query_interface(server: ServerInfo, protocol: int) -> Interface | None:
    """The first interface of ``server`` that takes queries over ``protocol`` (``PROTO_UDP``,
    ``PROTO_TCP``, ...); None when it has none (reference ``Interface.canHandleRequest`` for a
    resolution)."""
    for iface in server.interfaces:
        if iface.protocol == protocol and iface.type in (TYPE_QUERY, TYPE_ADMIN_AND_QUERY):
            return iface
    return None
