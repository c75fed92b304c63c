"""Prefix referrals on the authority path (issue 7 §1; handle.md §4 item 3, reference
``HandleServer.getPrefixReferralResponseIfAppropriate``), over a real LMDB store.

A query for ``0.NA/<P>`` whose prefix handle is not held walks P's ancestors; the nearest held
one with public ``HS_SITE.PREFIX`` / ``HS_SERV.PREFIX`` values answers ``PREFIX_REFERRAL`` with
those values.  Also the Handle general path's RC 303 message built from such a result.
"""

from __future__ import annotations

import asyncio

import pytest

from resolver.config import Config
from resolver.core.authority import AuthorityHandler
from resolver.core.engine import Resolver
from resolver.core.request import ResolveRequest
from resolver.errors import Outcome
from resolver.identifier import Identifier
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    Envelope, Message, ReferralResponse, ResolutionRequest, ResolutionResponse,
)  # fmt: skip
from resolver.record import Record, pack
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.store import Change
from resolver.upstream.client import DEFAULT_FLAGS, prepare
from resolver.values import HandleValue, Interface, ServerInfo, SiteInfo

PUBLIC = 0x0E  # admin read/write, public read
PRIVATE = 0x0C  # admin read/write only


def site(address: str, serial: int = 1) -> bytes:
    server = ServerInfo(1, ServerInfo.pack_address(address), b"",
                        (Interface(3, 1, 2641), Interface(2, 0, 2641)))  # fmt: skip
    return SiteInfo(serial=serial, attributes=(("desc", address),), servers=(server,)).to_bytes()


def val(index: int, vtype: str, data: bytes, perms: int = PUBLIC) -> HandleValue:
    return HandleValue(index, vtype, data, timestamp=1767225600, permissions=perms)


ADMIN = val(100, "HS_ADMIN", b"\x0f\xff" + b"\0\0\0\x0d0.NA/88.118.8" + b"\0\0\0\xc8")
SITE_118 = val(1, "HS_SITE.PREFIX", site("192.0.2.118"))
SITE_88 = val(1, "HS_SITE.PREFIX", site("192.0.2.88"))


def hold(store, prefix: str, *values: HandleValue) -> None:
    """Home ``prefix`` with its prefix handle ``0.NA/<prefix>`` holding ``values``."""
    key = Identifier.parse(f"0.NA/{prefix}").suffix_key
    store.write([Change(key, pack(Record(values)), prefix=True)])


def resolve(store, handle: str, **kw):
    engine = Resolver([AuthorityHandler(store)])
    return asyncio.run(engine.resolve(ResolveRequest(Identifier.parse(handle), **kw)))


def test_held_ancestor_with_site_prefix_refers(store):
    desc = val(2, "DESC", b"national node")
    hold(store, "88.118", SITE_118, desc, ADMIN)
    result = resolve(store, "0.NA/88.118.8")
    assert result.outcome is Outcome.PREFIX_REFERRAL
    assert result.values == (SITE_118,)  # only the .PREFIX values, not DESC or HS_ADMIN


def test_the_walk_goes_up_several_levels(store):
    hold(store, "88.118", SITE_118)
    result = resolve(store, "0.NA/88.118.8.1")  # 88.118.8.1 → 88.118.8 (not held) → 88.118
    assert (result.outcome, result.values) == (Outcome.PREFIX_REFERRAL, (SITE_118,))
    assert resolve(store, "88.118.8.1.2.3").values == (SITE_118,)  # slashless = 0.NA/…


def test_the_nearest_ancestor_wins(store):
    hold(store, "88", SITE_88)
    hold(store, "88.118", SITE_118)
    assert resolve(store, "0.NA/88.118.8").values == (SITE_118,)
    assert resolve(store, "0.NA/88.119").values == (SITE_88,)


def test_an_ancestor_without_prefix_values_is_passed_over(store):
    hold(store, "88", SITE_88)
    hold(store, "88.118", val(2, "DESC", b"no delegation here"), ADMIN)
    assert resolve(store, "0.NA/88.118.8").values == (SITE_88,)


def test_the_held_exact_prefix_handle_wins(store):
    hold(store, "88.118", SITE_118)
    own = val(1, "HS_SITE", site("192.0.2.8"))
    hold(store, "88.118.8", own, ADMIN)
    result = resolve(store, "0.NA/88.118.8")
    assert (result.outcome, result.values) == (Outcome.OK, (own, ADMIN))
    result = resolve(store, "0.NA/88.118.8", types=("HS_SITE",))  # filters apply as usual
    assert (result.outcome, result.values) == (Outcome.OK, (own,))


def test_no_prefix_values_means_not_responsible(store):
    hold(store, "88.118", val(2, "DESC", b"x"), ADMIN)
    assert resolve(store, "0.NA/88.118.8").outcome is Outcome.NOT_RESPONSIBLE
    assert resolve(store, "0.NA/99.1").outcome is Outcome.NOT_RESPONSIBLE  # no ancestor held
    assert resolve(store, "0.NA/88").outcome is Outcome.NOT_RESPONSIBLE  # no ancestor at all


def test_non_public_prefix_values_are_not_served(store):
    secret_site = val(1, "HS_SITE.PREFIX", site("192.0.2.1"), PRIVATE)
    serv = val(2, "HS_SERV.PREFIX", b"0.NA/88.118.SERVICE")
    hold(store, "88.118", secret_site)
    assert resolve(store, "0.NA/88.118.8").outcome is Outcome.NOT_RESPONSIBLE
    hold(store, "88", SITE_88)  # a private-only ancestor is passed over, as the reference does
    assert resolve(store, "0.NA/88.118.8").values == (SITE_88,)
    hold(store, "88.118", secret_site, serv)  # mixed: the public one only
    assert resolve(store, "0.NA/88.118.8").values == (serv,)


def test_every_derived_prefix_type_and_any_case(store):
    values = (val(1, "hs_site.prefix", site("192.0.2.1")), val(2, "HS_NA_DELEGATE", site("::1")),
              val(3, "HS_SERV.PREFIX", b"0.NA/88.SERV"), val(4, "HS_SITE.PREFIX.X", b"x"),
              val(5, "HS_SITE", site("192.0.2.9")))  # fmt: skip
    hold(store, "88", *values)
    assert resolve(store, "0.NA/88.1").values == values[:3]


def test_do_not_refer_turns_referrals_off(store):
    hold(store, "88.118", SITE_118)
    result = resolve(store, "0.NA/88.118.8", do_not_refer=True)
    assert result.outcome is Outcome.NOT_RESPONSIBLE


def test_an_identifier_under_a_delegated_prefix_is_not_referred(store):
    hold(store, "88.118", SITE_118)
    assert resolve(store, "88.118.8/SN-1").outcome is Outcome.NOT_RESPONSIBLE  # RC 301


# -- the Handle general path: RC 303 ---------------------------------------------------------


def answer(store, handle: str, flags: int = DEFAULT_FLAGS) -> Message:
    fe = HandleFrontEnd(Resolver([AuthorityHandler(store)]), Config())
    wire = prepare(C.OpCode.RESOLUTION, ResolutionRequest(handle.encode()), opflags=flags).wire
    reply = asyncio.run(fe.answer(Envelope.from_wire(wire), wire[C.ENVELOPE_SIZE :]))
    return Message.from_wire(reply)


@pytest.mark.parametrize("flags", [DEFAULT_FLAGS, DEFAULT_FLAGS | C.FLAG_REQUEST_DIGEST])
def test_handle_reply_is_rc_303_with_the_values(store, flags):
    hold(store, "88.118", SITE_118, ADMIN)
    msg = answer(store, "0.NA/88.118.8", flags)
    assert msg.header.rc == 303 and msg.header.opcode == C.OpCode.RESOLUTION
    assert isinstance(msg.body, ReferralResponse)
    assert msg.body.handle == b""  # reference: ServiceReferralResponse(req, 303, new byte[0], …)
    assert msg.body.values == (SITE_118,)
    assert SiteInfo.from_bytes(msg.body.values[0].data).servers[0].address_text == "192.0.2.118"
    assert (msg.digest is not None) == bool(flags & C.FLAG_REQUEST_DIGEST)


def test_handle_reply_with_do_not_refer_flag_is_301(store):
    hold(store, "88.118", SITE_118)
    assert answer(store, "0.NA/88.118.8", DEFAULT_FLAGS | C.FLAG_DO_NOT_REFER).header.rc == 301
    msg = answer(store, "0.NA/88.118")  # the held prefix handle itself: RC 1
    assert msg.header.rc == 1 and isinstance(msg.body, ResolutionResponse)
    assert msg.body.values == (SITE_118,)
