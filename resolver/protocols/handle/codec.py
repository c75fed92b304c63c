"""Building Handle responses to requests: version negotiation, request digests, error replies.

Sans-IO.  ``respond(request_env, request_payload, header, rc, body)`` returns the complete
response message (envelope + payload) for one request; splitting into UDP packets is
``resolver.protocols.handle.udp``'s job, framing on TCP is nothing more than sending it.
"""

from __future__ import annotations

import dataclasses
import hashlib

from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    Body, Envelope, ErrorResponse, Header, Message, envelope_flags,
)  # fmt: skip


def negotiate(env: Envelope) -> tuple[int, int]:
    """Version of the reply: min(the client's suggested version, ours) (HNv9 AbstractResponse)."""
    suggested = env.suggested
    return min(suggested, (C.OUR_MAJOR, C.OUR_MINOR))


def digest_of(version: tuple[int, int], request_header_and_body: bytes) -> tuple[int, bytes]:
    """Request digest for a reply at ``version``: < 2.1 MD5 (old format), 2.1–2.6 SHA-1,
    ≥ 2.7 SHA-256 (AbstractResponse.takeDigestOfRequest)."""
    if version < (2, 1):
        return C.HASH_MD5_OLD, hashlib.md5(request_header_and_body).digest()
    if version >= (2, 7):
        return C.HASH_SHA256, hashlib.sha256(request_header_and_body).digest()
    return C.HASH_SHA1, hashlib.sha1(request_header_and_body).digest()


def respond(env: Envelope, payload: bytes, header: Header, rc: int, body: Body,
            *, version: tuple[int, int] | None = None) -> bytes:  # fmt: skip
    """The reply to the request ``env`` + ``payload`` whose header is ``header``.

    The reply copies the request's op code, flags, site serial, recursion count and expiration
    (HNv9 ``takeValuesFrom``), carries the request id and session id, is written at the
    negotiated version with ours suggested, and starts with a digest of the request's header
    and body when the request set RD.
    """
    version = version or negotiate(env)
    digest = None
    if header.opflags & C.FLAG_REQUEST_DIGEST:
        digest = digest_of(version, payload[: C.HEADER_SIZE + header.body_length])
    reply = Message(
        Envelope(version[0], version[1], envelope_flags(), env.session_id, env.request_id, 0, 0),
        dataclasses.replace(header, rc=rc, body_length=0),
        body,
        digest,
    )  # fmt: skip
    return reply.to_wire()


def error(env: Envelope, payload: bytes, header: Header, rc: int, message: str = "",
          *, version: tuple[int, int] | None = None) -> bytes:  # fmt: skip
    return respond(env, payload, header, rc, ErrorResponse(message.encode("utf-8")), version=version)
