"""The Handle protocol's general path: a decoded request → the engine → the reply bytes.

Shared by the UDP and TCP drivers; no sockets here.  ``HandleFrontEnd.answer(env, payload)``
returns the complete reply message (envelope included, unsplit) or None when the request gets
no reply at all (it is itself a response, or too broken to address a reply to).  The fast path
(``native.handle_resolve``) is tried by the drivers first; this module answers everything else,
with identical bytes wherever both answer (tests/parity).

Administration (handle.md §3.3, §5).  With an ``admin`` (``registry.native_admin.NativeAdmin``,
handed in by the composition root and duck-typed here: ``resolver`` never imports
``registry``), the op codes in ``admin.OPCODES`` — create/delete handle, add/remove/modify
value, list handles, the OC 200 challenge answer, home/unhome/list prefixes — go to
``admin.answer(env, payload, header, body, peer=, stream=)``, which owns the RC 402 challenge
→ OC 200 flow.  A resolution without the public-only flag whose selection includes values
without public read gets ``admin.challenge(...)`` (RC 402); once answered, the admin serves
the values to an identity with READ_VALUE.  Without an admin those op codes get RC 5 and such
a resolution a plain RC 402.

``peer`` (the client's IP address) lets the admin count failed authentications per client and
bind a challenge to the client it was sent to; ``stream`` says the transport is a byte stream
(TCP), over which a long handle list may be answered as several CN-continued messages.
"""

from __future__ import annotations

import dataclasses
import logging

from resolver.config import Config
from resolver.core import stats
from resolver.core.engine import Resolver
from resolver.core.request import ResolveRequest
from resolver.errors import IdnodeError, InvalidIdentifier, Outcome
from resolver.identifier import Identifier
from resolver.protocols.handle import codec
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.handle.message import (
    Envelope, HandleProtocolError, Header, Message, ReferralResponse, ResolutionRequest,
    ResolutionResponse, SiteInfoResponse,
)  # fmt: skip
from resolver.values import Interface, ServerInfo, SiteInfo

log = logging.getLogger("idnode.handle")

#: Op codes this node answers; every other one, known or not, gets RC 5 (handle.md §3.3).
SUPPORTED = frozenset((C.OpCode.RESOLUTION, C.OpCode.GET_SITE_INFO))


def site_info(config: Config) -> bytes:
    """Our HS_SITE record (RFC 3651 §3.2.2) from configuration: one primary server."""
    address = config.handle_advertise or (
        "127.0.0.1" if config.host in ("0.0.0.0", "", "::") else config.host)  # fmt: skip
    interfaces = (
        Interface(3, 1, config.handle_port),  # TCP: admin + query
        Interface(2, 0, config.handle_port),  # UDP: query
        Interface(3, 2, config.http_port),  # HTTP: admin + query
    )
    server = ServerInfo(1, ServerInfo.pack_address(address), config.site_public_key, interfaces)
    site = SiteInfo(serial=config.site_serial, attributes=(("desc", config.site_description),),
                    servers=(server,))  # fmt: skip
    return site.to_bytes()


class HandleFrontEnd:
    def __init__(self, resolver: Resolver, config: Config, *, site: bytes | None = None,
                 admin=None, tally: dict | None = None) -> None:  # fmt: skip
        self.resolver = resolver
        #: resolutions counted (``core.stats``); the drivers pass it to the fast path too
        self.tally = tally if tally is not None else {}
        self.case_sensitive = config.case_sensitive
        # handle.md §4 item 5: a prefix not held is RC 301 "or recursion if allow_recursion=yes
        # and REC flag" — [upstream] recursion is our allow_recursion.
        self.recursion = config.upstream_recursion
        self.site = site if site is not None else site_info(config)
        self.admin = admin
        self.admin_opcodes = frozenset(admin.OPCODES) if admin is not None else frozenset()

    async def answer(self, env: Envelope, payload: bytes, peer: str | None = None, *,
                     stream: bool = False) -> bytes | None:  # fmt: skip
        if len(payload) < C.HEADER_SIZE:
            return None  # no header: nothing to address a reply to
        header = Header.from_wire(payload)
        if header.rc != 0:
            return None  # a response sent to us: never answer one (no reflection loops)
        if env.major != C.OUR_MAJOR:
            # RC 4 "with our version": the reply is written at ours since the client's is unknown.
            return codec.error(env, payload, header, RC_FOR[Outcome.MALFORMED],
                               f"unsupported protocol version {env.major}.{env.minor}",
                               version=(C.OUR_MAJOR, C.OUR_MINOR))  # fmt: skip
        if env.compressed or env.encrypted:
            return codec.error(env, payload, header, RC_FOR[Outcome.MALFORMED],
                               "compressed or encrypted messages are not supported")  # fmt: skip
        try:
            msg = Message.from_parts(env, payload)
        except HandleProtocolError as exc:
            return codec.error(env, payload, header, RC_FOR[Outcome.MALFORMED], exc.message)
        try:
            admin_op = header.opcode in self.admin_opcodes
            if header.opcode not in SUPPORTED and not admin_op:
                return codec.error(env, payload, header, RC_FOR[Outcome.NOT_SUPPORTED],
                                   "Operation not supported")  # fmt: skip
            if header.opflags & C.FLAG_ENCRYPT:
                return codec.error(env, payload, header, RC_FOR[Outcome.NOT_SUPPORTED],
                                   "Encrypted responses need a session")  # fmt: skip
            if header.opcode == C.OpCode.GET_SITE_INFO:
                return codec.respond(env, payload, header, 1, SiteInfoResponse(self.site))
            if header.opcode != C.OpCode.RESOLUTION:
                return await self.admin.answer(env, payload, header, msg.body, peer=peer,
                                               stream=stream)  # fmt: skip
            return await self.resolution(env, payload, header, msg.body, peer)
        except IdnodeError as exc:
            return codec.error(env, payload, header, RC_FOR[exc.outcome], exc.message)
        except Exception:
            log.exception("E030 unexpected error answering op code %d", header.opcode)
            return codec.error(env, payload, header, RC_FOR[Outcome.INTERNAL], "Internal error")

    async def resolution(self, env: Envelope, payload: bytes, header: Header,
                         body: ResolutionRequest, peer: str | None = None) -> bytes:  # fmt: skip
        try:
            ident = Identifier.parse(body.handle, case_sensitive=self.case_sensitive)
        except InvalidIdentifier as exc:
            stats.count(self.tally, b"", exc.outcome)
            return codec.error(env, payload, header, RC_FOR[exc.outcome], exc.message)
        # Types are compared as bytes, as the reference does (Util.isParentTypeInArray): one
        # that is not UTF-8 matches nothing stored, but is no error.
        types = tuple(t.decode("utf-8", "surrogateescape") for t in body.types)
        # Values without public read are withheld from a request with the public-only flag;
        # without it, selecting one needs authentication (handle.md §2.1, §5; reference
        # HandleServer.checkReadAccess): the admin's challenge, or RC 402 when there is none.
        # The fast path declines exactly these requests (native: "withheld").
        public_only = header.has(C.FLAG_PUBLIC_ONLY)
        recursive = self.recursion and header.has(C.FLAG_RECURSIVE)
        request = ResolveRequest(ident, types, body.indexes, public_only=public_only,
                                 authoritative=header.has(C.FLAG_AUTHORITATIVE),
                                 do_not_refer=header.has(C.FLAG_DO_NOT_REFER),
                                 recursive=recursive)  # fmt: skip
        result = await self.resolver.resolve(request)
        stats.count(self.tally, ident.prefix_key, result.outcome)
        if result.outcome is Outcome.AUTH_NEEDED and self.admin is not None:
            return self.admin.challenge(env, payload, header, body, peer=peer)
        if not result.authoritative:
            # Forwarded or taken-over data: the reply copies the request's flags, but AT in a
            # response says "from a primary server of the handle's service" (RFC 3652
            # §2.2.2.3), which this node is not for it.
            header = dataclasses.replace(header, opflags=header.opflags & ~C.FLAG_AUTHORITATIVE)
        if result.outcome in (Outcome.OK, Outcome.PREFIX_REFERRAL):
            # A prefix referral (RC 303) is the reference's ServiceReferralResponse: an empty
            # referral handle, then the .PREFIX values (handle.md §3.4, §4 item 3).
            reply_body = (ResolutionResponse.of(body.handle, result.values)
                          if result.outcome is Outcome.OK
                          else ReferralResponse.of(b"", result.values))  # fmt: skip
            reply = codec.respond(env, payload, header, RC_FOR[result.outcome], reply_body)
            if len(reply) - C.ENVELOPE_SIZE <= C.MAX_MESSAGE:
                return reply
            # No peer accepts a message over 256 KiB (HNv9 MAX_MESSAGE_LENGTH).
            return codec.error(env, payload, header, RC_FOR[Outcome.INTERNAL],
                               f"reply longer than {C.MAX_MESSAGE} bytes: ask for fewer values "
                               "with type or index filters")  # fmt: skip
        return codec.error(env, payload, header, RC_FOR[result.outcome], result.message)
