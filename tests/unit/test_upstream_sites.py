"""Server selection inside a site (``resolver.upstream.sites``) against the reference's vectors.

Golden numbers: handle.md §2.4 (reference ``SiteInfo.getHandleHash``, verified in Python); the
site record is the verified HS_SITE encoding of the same section.
"""

from __future__ import annotations

import pytest

from resolver.errors import InvalidValue
from resolver.upstream.sites import (
    HASH_BY_ALL, HASH_BY_PREFIX, HASH_BY_SUFFIX, PROTO_HTTP, PROTO_HTTPS, PROTO_TCP, PROTO_UDP,
    handle_hash, query_interface, select_server,
)  # fmt: skip
from resolver.values import Interface, ServerInfo, SiteInfo

#: handle.md §2.4: primary site, serial 1, hash by all, desc=test, server 1 at 127.0.0.1,
#: TCP 2641 admin+query, UDP 2641 query, HTTP 8000 admin+query.
SITE_HEX = (
    "0001020b0001800200000000000000010000000464657363000000047465737400000001000000010000000000"
    "000000000000007f0000010000000000000003030100000a51020000000a51030200001f40"
)  # fmt: skip


@pytest.mark.parametrize(
    "handle, option, expected",
    [
        ("88.118.8/SN-2026-0001", HASH_BY_ALL, 1317183036),
        ("88.118.8/SN-2026-0001", HASH_BY_PREFIX, 1993617733),
        ("88.118.8/SN-2026-0001", HASH_BY_SUFFIX, 1058711982),
        ("0.NA/88.118.8", HASH_BY_ALL, 2081375286),
    ],
)
def test_reference_vectors(handle, option, expected):
    assert handle_hash(handle, option) == expected
    assert handle_hash(handle.encode(), option) == expected


def test_the_hash_is_ascii_case_insensitive():
    assert handle_hash("88.118.8/sn-2026-0001", HASH_BY_ALL) == 1317183036
    assert handle_hash("88.118.8/Sn-2026-0001", HASH_BY_SUFFIX) == 1058711982
    # Util.upperCase folds a-z only: a non-ASCII letter keeps its case
    assert handle_hash("88.118.8/ä", HASH_BY_ALL) != handle_hash("88.118.8/Ä", HASH_BY_ALL)


def test_the_prefix_is_the_part_before_the_first_slash():
    assert handle_hash("88.118.8/a/b", HASH_BY_PREFIX) == handle_hash("88.118.8", HASH_BY_SUFFIX)
    assert handle_hash("88.118.8/a/b", HASH_BY_SUFFIX) == handle_hash("x/a/b", HASH_BY_SUFFIX)


def test_a_handle_without_slash():
    # Util.getPrefixPart: "0.NA"; Util.getSuffixPart: the whole handle
    assert handle_hash("88.118.8", HASH_BY_PREFIX) == handle_hash("0.NA/x", HASH_BY_PREFIX)
    assert handle_hash("88.118.8", HASH_BY_SUFFIX) == 1993617733


@pytest.mark.parametrize("option", [-1, 3, 255])
def test_unknown_hash_option_is_invalid(option):
    with pytest.raises(InvalidValue, match="Unknown hash method"):
        handle_hash("88.118.8/x", option)


def _server(sid: int) -> ServerInfo:
    return ServerInfo(sid, ServerInfo.pack_address(f"10.0.0.{sid}"), b"",
                      (Interface(2, PROTO_UDP, 2641),))  # fmt: skip


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize(
    "option, h", [(HASH_BY_ALL, 1317183036), (HASH_BY_PREFIX, 1993617733),
                  (HASH_BY_SUFFIX, 1058711982)],  # fmt: skip
)
def test_select_server_indexes_the_array_not_the_server_id(n, option, h):
    # server ids in reverse order: the chosen one is servers[h % n], whatever its id
    servers = tuple(_server(sid) for sid in range(n + 40, 40, -1))
    site = SiteInfo(hash_option=option, servers=servers)
    assert select_server(site, "88.118.8/SN-2026-0001") is servers[h % n]


def test_select_server_spreads_by_the_hash_option():
    servers = tuple(_server(sid) for sid in (1, 2, 3))
    by_prefix = SiteInfo(hash_option=HASH_BY_PREFIX, servers=servers)
    # every identifier of one prefix goes to one server when hashing by prefix
    chosen = {select_server(by_prefix, f"88.118.8/SN-{i}").server_id for i in range(50)}
    assert chosen == {servers[1993617733 % 3].server_id}
    by_all = SiteInfo(hash_option=HASH_BY_ALL, servers=servers)
    assert {select_server(by_all, f"88.118.8/SN-{i}").server_id for i in range(50)} == {1, 2, 3}


def test_select_server_needs_servers():
    with pytest.raises(InvalidValue, match="no servers"):
        select_server(SiteInfo(servers=()), "88.118.8/x")


def test_reference_site_record():
    site = SiteInfo.from_bytes(bytes.fromhex(SITE_HEX))
    server = select_server(site, "88.118.8/SN-2026-0001")
    assert server.server_id == 1 and server.address_text == "127.0.0.1"
    assert query_interface(server, PROTO_UDP) == Interface(2, PROTO_UDP, 2641)
    assert query_interface(server, PROTO_TCP) == Interface(3, PROTO_TCP, 2641)
    assert query_interface(server, PROTO_HTTP) == Interface(3, PROTO_HTTP, 8000)
    assert query_interface(server, PROTO_HTTPS) is None


def test_query_interface_skips_admin_only_and_out_of_service():
    server = ServerInfo(1, ServerInfo.pack_address("10.0.0.1"), b"", (
        Interface(0, PROTO_UDP, 1000),  # out of service
        Interface(1, PROTO_UDP, 1001),  # admin only
        Interface(2, PROTO_TCP, 1002),
        Interface(2, PROTO_UDP, 1003),
        Interface(3, PROTO_UDP, 1004),
    ))  # fmt: skip
    assert query_interface(server, PROTO_UDP) == Interface(2, PROTO_UDP, 1003)
    assert query_interface(server, PROTO_TCP) == Interface(2, PROTO_TCP, 1002)
    assert query_interface(server, PROTO_HTTP) is None
