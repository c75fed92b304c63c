"""Administration over the native Handle protocol: the RC 402 challenge → OC 200 answer flow and
the admin op codes, turned into ``registry.service.Registry`` calls for an authenticated identity.

``NativeAdmin`` is handed to ``resolver.servers.handle_frontend.HandleFrontEnd`` by the
composition root (duck-typed there).  It owns, per worker process, the pending challenges, and
answers the op codes in ``OPCODES`` (handle.md §3.3): OC_CREATE_HANDLE (100), DELETE_HANDLE
(101), ADD_VALUE (102), REMOVE_VALUE (103), MODIFY_VALUE (104), LIST_HANDLES (105), the answer
OC_CHALLENGE_RESPONSE (200), and for server admins OC_HOME_NA (300), UNHOME_NA (301),
LIST_HOMED_NAS (302).  It also serves the authenticated read: a resolution without the
public-only flag that selects values without public read (``challenge``, then ``_read``),
decided by the one read rule (``resolver.core.grading``): important values for READ_VALUE
holders, core values never (no TLS on the native protocol).

The flow (handle.md §5; RFC 3652 §3.5; reference ``HandleServer.createChallenge`` /
``processRequest`` / ``authenticateUser``)::

    client                                   server (this module)
    request R (op 100..105, 300..302,        cheap refusals first: invalid handle RC 102,
      or a restricted resolution)            prefix not homed RC 301, empty value list RC 202
                                             → RC 402, a NEW session id S in the envelope,
                                               RD set, body = digest(R header+body) + nonce(16)
                                               pending[S] = (R, nonce, digest, version, peer,
                                                             expiry ≤ 60 s)
    OC 200, session id S: auth type,         pending[S] taken (single use: gone whatever the
      key handle, key index, answer            outcome) — unknown, expired, already used or
                                               from another client address → RC 403
                                             over the failure limit → RC 3
                                             answer checked against the identity's HS_SECKEY /
                                               HS_PUBKEY values (auth.verify_challenge_answer)
                                               wrong → RC 403, counted as a failure
                                             R executed for the identity: the reply is R's
                                               (its op code, its digest when R set RD) with the
                                               OC 200's request id and session id S

Replies to R use ``RC_FOR`` for every outcome (no code outside that table): Forbidden → 401,
AuthenticationFailed → 403, TooManyAttempts → 3, and so on.

Decisions and departures:

* Pending challenges live in the worker that issued them: the answer must come back on the
  same TCP connection (the project's client and the reference client do that) or, over UDP,
  from the same socket.  At most ``max_pending`` of them and ``max_pending_bytes`` of
  challenged requests per worker; a new one evicts the oldest.
* A challenge is bound to the client address it was sent to (when the transport tells it):
  an answer from elsewhere is refused without consuming the challenge.
* An identity named with index 0 ("any key of that handle", TM9 §1.4) becomes the index of the
  key that verified, for both key types (the reference does so for HS_PUBKEY only): otherwise
  ``0:h`` would match no HS_ADMIN reference but ``0:h`` itself.
* HS_SECKEY answers are verified locally: the key handle must be held here (no OC 201
  three-party verification with another server).
* OC_MODIFY_VALUE needs every index to exist (RC 200 otherwise) and to allow admin write (RC
  401, as the reference); the check reads the record just before the write transaction, so a
  value removed in between is added back.
* The MINT flag on OC_CREATE_HANDLE appends a random UUID to the given handle (as the REST
  ``mintNewSuffix``); the reply carries the created handle (``CreateHandleResponse``).
* OC_UNHOME_NA deletes the prefix handle: in this store a prefix is homed exactly when its
  prefix handle is stored.  OC_HOME_NA of a prefix not homed writes the default prefix handle
  (``registry.prefixes``); of a homed one it changes nothing.  Both succeed idempotently.
* Lists: over TCP (``stream``) 50 handles per message, every message but the last with CN
  (reference ``LIST_HANDLES_PER_MSG``); over UDP one message, or RC 5 when it would exceed
  256 KiB.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import secrets
import time
import uuid
from typing import Callable

from registry.authz import Authorizer, Identity, Op
from registry.prefixes import default_prefix_handle
from registry.service import OPERATOR
from resolver.core.request import ResolveRequest, ResolveResult
from resolver.core.select import select
from resolver.errors import (
    AuthenticationFailed, Forbidden, HandleNotFound, IdnodeError, InvalidIdentifier,
    InvalidValue, MalformedRequest, NoSuchValue, NotResponsible, NotSupported, Outcome,
)  # fmt: skip
from resolver.protocols.handle import auth
from resolver.protocols.handle import codec
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.handle.message import (
    ChallengeAnswer, ChallengeBody, CreateHandleResponse, Envelope, Header, ListHandlesResponse,
    Opaque, ResolutionRequest, ResolutionResponse,
)  # fmt: skip
from resolver.record import Record, unpack
from resolver.store import Change
from resolver.values import PERM_ADMIN_WRITE

log = logging.getLogger("idnode.handle.admin")

#: Longest a challenge may wait for its answer (TM9 example ``max_auth_time`` = 60000 ms).
MAX_AUTH_SECONDS = 60.0
#: Pending challenges per worker; beyond it the oldest is forgotten.
MAX_PENDING = 1024
#: Bytes of challenged requests kept per worker (a request may be 256 KiB: without this
#: bound 1024 of them would pin 256 MiB); beyond it the oldest are forgotten.
MAX_PENDING_BYTES = 16 << 20
#: Key values of one identity tried against an answer (each PBKDF2 check costs ~10 ms).
MAX_KEYS = 16
#: Handles per list message over TCP (reference ``HandleServer.LIST_HANDLES_PER_MSG``).
LIST_PER_MESSAGE = 50

_OP = C.OpCode
_HANDLE_OPS = (_OP.CREATE_HANDLE, _OP.DELETE_HANDLE, _OP.ADD_VALUE, _OP.REMOVE_VALUE,
               _OP.MODIFY_VALUE)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class _Pending:
    """A challenged request waiting for its OC 200."""

    env: Envelope
    payload: bytes  # header + body + credential of the challenged request
    header: Header
    body: object
    nonce: bytes
    digest: bytes  # raw digest of the request's header + body, as sent in the challenge
    version: tuple[int, int]  # of the challenge (and of the final reply)
    peer: str | None
    expires: float


@dataclasses.dataclass(frozen=True, slots=True)
class _Ctx:
    """What a reply to the challenged request is built from, after its answer."""

    env: Envelope  # the request's version, the answer's request id and session id
    payload: bytes
    header: Header
    body: object
    version: tuple[int, int]

    def reply(self, rc: int, body) -> bytes:
        return codec.respond(self.env, self.payload, self.header, rc, body, version=self.version)

    def error(self, exc: IdnodeError) -> bytes:
        return codec.error(self.env, self.payload, self.header, RC_FOR[exc.outcome], exc.message,
                           version=self.version)  # fmt: skip


def _text(raw: bytes) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidIdentifier("Invalid UTF8 encoding") from None


def _na_form(text: str) -> str:
    """A prefix operand as the reference reads it: a slashless ``x`` means ``0.NA/x``."""
    return text if "/" in text else f"0.NA/{text}"


class NativeAdmin:
    """Admin op codes and the challenge flow for one worker (module docstring).

    ``registry``: ``registry.service.Registry``; ``authenticator``:
    ``registry.identities.Authenticator`` (its ``limiter`` counts failed answers per client
    address, shared with the REST front-end when the same object is passed to both).
    """

    OPCODES = frozenset((*_HANDLE_OPS, _OP.LIST_HANDLES, _OP.CHALLENGE_RESPONSE, _OP.HOME_NA,
                         _OP.UNHOME_NA, _OP.LIST_HOMED_NAS))  # fmt: skip

    def __init__(self, registry, authenticator, *, lifetime: float = MAX_AUTH_SECONDS,
                 max_pending: int = MAX_PENDING, max_pending_bytes: int = MAX_PENDING_BYTES,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        if not 0 < lifetime <= MAX_AUTH_SECONDS:
            raise ValueError(f"challenge lifetime must be in (0, {MAX_AUTH_SECONDS:g}] s")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.registry = registry
        self.authenticator = authenticator
        self.lifetime = lifetime
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.clock = clock
        self._pending: collections.OrderedDict[int, _Pending] = collections.OrderedDict()
        self._pending_bytes = 0

    @property
    def pending(self) -> int:
        """Challenges issued and not yet answered or expired."""
        self._purge()
        return len(self._pending)

    # -- entry points (HandleFrontEnd) ---------------------------------------------------------
    async def answer(self, env: Envelope, payload: bytes, header: Header, body, *,
                     peer: str | None = None, stream: bool = False) -> bytes | None:  # fmt: skip
        """Reply bytes for one decoded admin request or OC 200 (one message, or several
        back to back for a CN-continued list over a ``stream``)."""
        try:
            if header.opcode == _OP.CHALLENGE_RESPONSE:
                return await self._answered(env, payload, header, body, peer, stream)
            self._precheck(header, body)
            if header.opcode == _OP.LIST_HANDLES and self.registry.allow_anonymous_list:
                ctx = _Ctx(env, payload, header, body, codec.negotiate(env))
                return await self._execute(ctx, None, stream)
            return self.challenge(env, payload, header, body, peer=peer)
        except IdnodeError as exc:
            return codec.error(env, payload, header, RC_FOR[exc.outcome], exc.message)

    def challenge(self, env: Envelope, payload: bytes, header: Header, body, *,
                  peer: str | None = None) -> bytes:  # fmt: skip
        """RC 402 for the request: a new session id, RD set, the request's digest and a fresh
        nonce (handle.md §3.4); the request waits in ``pending`` for its answer."""
        version = codec.negotiate(env)
        digest = codec.digest_of(version, payload[: C.HEADER_SIZE + header.body_length])[1]
        nonce = auth.new_nonce()
        session = self._new_session_id()
        self._remember(session, _Pending(env, bytes(payload), header, body, nonce, digest,
                                         version, peer, self.clock() + self.lifetime))  # fmt: skip
        reply_env = dataclasses.replace(env, session_id=session)
        reply_header = dataclasses.replace(header, opflags=header.opflags | C.FLAG_REQUEST_DIGEST)
        return codec.respond(reply_env, payload, reply_header, RC_FOR[Outcome.AUTH_NEEDED],
                             ChallengeBody(nonce), version=version)  # fmt: skip

    # -- pending challenges -------------------------------------------------------------------
    def _new_session_id(self) -> int:
        while True:
            session = secrets.randbelow(0x7FFFFFFF) + 1  # positive int4, never 0 ("no session")
            if session not in self._pending:
                return session

    def _purge(self) -> None:
        # Entries are appended with one lifetime, so the oldest expires first.
        now = self.clock()
        while self._pending:
            session, first = next(iter(self._pending.items()))
            if first.expires > now:
                return
            self._forget(session)

    def _forget(self, session: int) -> _Pending:
        pending = self._pending.pop(session)
        self._pending_bytes -= len(pending.payload)
        return pending

    def _remember(self, session: int, pending: _Pending) -> None:
        self._purge()
        size = len(pending.payload)
        while self._pending and (len(self._pending) >= self.max_pending
                                 or self._pending_bytes + size > self.max_pending_bytes):
            self._forget(next(iter(self._pending)))
        self._pending[session] = pending
        self._pending_bytes += size

    def _take(self, session: int, peer: str | None) -> _Pending | None:
        """The pending challenge ``session`` if it is live and this client's; single use."""
        self._purge()
        pending = self._pending.get(session)
        if pending is None:
            return None
        if pending.peer is not None and peer is not None and pending.peer != peer:
            return None  # not consumed: a stranger cannot cancel someone's challenge
        return self._forget(session)

    # -- the answer ----------------------------------------------------------------------------
    async def _answered(self, env: Envelope, payload: bytes, header: Header, body, peer,
                        stream: bool) -> bytes:  # fmt: skip
        pending = self._take(env.session_id, peer)
        if pending is None:
            raise AuthenticationFailed("No pending challenge for this session: it expired, was "
                                       "already answered, or was never issued")  # fmt: skip
        if not isinstance(body, ChallengeAnswer):
            raise MalformedRequest("not a challenge answer")
        reply_env = Envelope(pending.env.major, pending.env.minor, pending.env.flags,
                             env.session_id, env.request_id, 0, 0)  # fmt: skip
        ctx = _Ctx(reply_env, pending.payload, pending.header, pending.body, pending.version)
        client = peer or ""
        try:
            self.authenticator.limiter.check(client)
            loop = asyncio.get_running_loop()
            identity = await loop.run_in_executor(None, self._verify, pending, body)
            if identity is None:
                self.authenticator.limiter.failed(client)
                log.info("authentication failed: %s key of %d:%s from %s",
                         body.auth_type.decode("ascii", "replace")[:16], body.key_index,
                         body.key_handle.decode("utf-8", "replace")[:256], client or "?")
                raise AuthenticationFailed("Authentication failed")
            # a success does not clear the client's failures (registry.identities)
            return await self._execute(ctx, identity, stream)
        except IdnodeError as exc:
            return ctx.error(exc)

    def _verify(self, pending: _Pending, body: ChallengeAnswer) -> Identity | None:
        """The identity the answer proves, or None.  Runs in a thread (PBKDF2, RSA)."""
        if body.auth_type not in (auth.SECKEY_TYPE, auth.PUBKEY_TYPE):
            return None
        try:
            claimed = Identity(body.key_index, _text(body.key_handle))
        except InvalidIdentifier:
            return None
        vtype = body.auth_type.decode("ascii")
        matched = None
        for index, key in self._keys(claimed, vtype)[:MAX_KEYS]:
            # every candidate is tried, so the time does not tell which one matched
            ok = auth.verify_challenge_answer(body.auth_type, key, pending.nonce, pending.digest,
                                              body.answer, version=pending.version)  # fmt: skip
            if ok and matched is None:
                matched = index
        if matched is None:
            return None
        return claimed if claimed.index else Identity(matched, claimed.handle)

    def _keys(self, identity: Identity, vtype: str) -> list[tuple[int, bytes]]:
        """(index, data) of the identity's ``vtype`` values; index 0: all of that handle."""
        if identity.index:
            return [(identity.index, d) for d in self.authenticator.key_values(identity, vtype)]
        try:  # the full record (OPERATOR reads every value), secrets included
            record = self.registry.read(OPERATOR, identity.handle)
        except IdnodeError:
            return []
        return [(v.index, v.data) for v in record or () if v.type == vtype]

    # -- before a challenge ----------------------------------------------------------------
    def _precheck(self, header: Header, body) -> None:
        """Refusals that need no identity (the reference answers them before challenging)."""
        op = header.opcode
        if op in _HANDLE_OPS:
            text = _text(body.handle)
            if op == _OP.CREATE_HANDLE and header.has(C.FLAG_MINT):
                text += "0"  # a suffix will be minted: the prefix part must be valid
            ident = self.registry.parse(text)
            if op in (_OP.ADD_VALUE, _OP.MODIFY_VALUE) and not body.values:
                raise InvalidValue("Value list was empty")
            if not ident.is_prefix_handle:
                with self.registry.store.view() as view:
                    if view.get_prefix(ident.prefix_key) is None:
                        raise NotResponsible("That prefix doesn't live here")
        elif op == _OP.LIST_HANDLES:
            ident = self.registry.parse(_na_form(_text(body.handle)))
            with self.registry.store.view() as view:
                if not ident.is_prefix_handle or view.get_prefix(ident.suffix_key) is None:
                    raise NotResponsible("That prefix doesn't live here")
        elif op in (_OP.HOME_NA, _OP.UNHOME_NA):
            if not self.registry.parse(_na_form(_text(body.handle))).is_prefix_handle:
                raise InvalidIdentifier("Handle is not a prefix handle")

    # -- execution -----------------------------------------------------------------------------
    async def _execute(self, ctx: _Ctx, identity: Identity | None, stream: bool) -> bytes:
        op, body, header = ctx.header.opcode, ctx.body, ctx.header
        loop = asyncio.get_running_loop()

        def run(fn, *args, **kw):
            # LMDB commits wait for the disk: never on the event loop (as the REST writes)
            return loop.run_in_executor(None, lambda: fn(*args, **kw))

        reg = self.registry
        if op == _OP.RESOLUTION:
            result = await run(self._read, identity, body, datagram=not stream)
            if result.outcome is not Outcome.OK:
                return codec.error(ctx.env, ctx.payload, header, RC_FOR[result.outcome],
                                   result.message, version=ctx.version)  # fmt: skip
            return ctx.reply(1, ResolutionResponse.of(body.handle, result.values))
        if op == _OP.CREATE_HANDLE:
            handle = _text(body.handle)
            if header.has(C.FLAG_MINT):
                handle += str(uuid.uuid4())
            res = await run(reg.create_handle, identity, handle, body.values,
                            overwrite=header.has(C.FLAG_OVERWRITE))  # fmt: skip
            return ctx.reply(1, CreateHandleResponse(res.handle.encode("utf-8")))
        if op == _OP.DELETE_HANDLE:
            await run(reg.delete_handle, identity, _text(body.handle))
        elif op == _OP.ADD_VALUE:
            await run(reg.put_values, identity, _text(body.handle), body.values,
                      overwrite=header.has(C.FLAG_OVERWRITE))  # fmt: skip
        elif op == _OP.MODIFY_VALUE:
            await run(self._modify, identity, _text(body.handle), body.values)
        elif op == _OP.REMOVE_VALUE:
            await run(reg.remove_values, identity, _text(body.handle), body.indexes)
        elif op == _OP.LIST_HANDLES:
            prefix = self.registry.parse(_na_form(_text(body.handle))).suffix_key.decode()
            _total, names = await run(reg.list_handles, identity, prefix)
            return self._list_reply(ctx, [n.encode("utf-8") for n in names], stream)
        elif op == _OP.LIST_HOMED_NAS:
            return self._list_reply(ctx, await run(self._homed, identity), stream)
        elif op in (_OP.HOME_NA, _OP.UNHOME_NA):
            await run(self._home, identity, _text(body.handle), op == _OP.HOME_NA)
        else:  # pragma: no cover - OPCODES and this dispatch are one list
            raise NotSupported("Operation not supported")
        return ctx.reply(1, Opaque(b""))

    def _list_reply(self, ctx: _Ctx, names: list[bytes], stream: bool) -> bytes:
        flags = ctx.header.opflags & ~C.FLAG_CONTINUOUS
        if not stream:
            reply = ctx.reply(1, ListHandlesResponse(tuple(names)))
            if len(reply) - C.ENVELOPE_SIZE > C.MAX_MESSAGE:
                raise NotSupported("too many handles for one message: list over TCP")
            return reply
        chunks = [names[i : i + LIST_PER_MESSAGE] for i in range(0, len(names), LIST_PER_MESSAGE)]
        out = []
        for n, chunk in enumerate(chunks or [[]]):
            more = C.FLAG_CONTINUOUS if n < len(chunks) - 1 else 0
            part = dataclasses.replace(ctx, header=dataclasses.replace(ctx.header,
                                                                       opflags=flags | more))
            out.append(part.reply(1, ListHandlesResponse(tuple(chunk))))
        return b"".join(out)

    # -- operations the service does not have --------------------------------------------------
    def _authorizer(self, view) -> Authorizer:
        reg = self.registry

        def lookup(text: str) -> Record | None:
            try:
                ident = reg.parse(text)
            except InvalidIdentifier:
                return None
            blob = (view.get_prefix(ident.suffix_key) if ident.is_prefix_handle
                    else view.get_record(ident.key))  # fmt: skip
            return None if blob is None else unpack(bytes(blob))

        return Authorizer(lookup, reg.server_admins, case_sensitive=reg.case_sensitive)

    def _read(self, identity: Identity, body: ResolutionRequest, *,
              datagram: bool = False) -> ResolveResult:  # fmt: skip
        """The authenticated read through the one read rule (``resolver.core.grading``): the
        selection with the values the identity may see — important ones (and values without
        public read) when it holds READ_VALUE on the handle (reference ``checkReadAccess``);
        core ones never (the native protocol has no TLS).  Forbidden (RC 401) when it selected
        restricted values without READ_VALUE, or when nothing it selected is visible to it."""
        ident = self.registry.parse(body.handle)
        types = tuple(t.decode("utf-8", "surrogateescape") for t in body.types)
        request = ResolveRequest(ident, types, body.indexes, public_only=False)
        with self.registry.store.view() as view:
            if ident.is_prefix_handle:
                blob = view.get_prefix(ident.suffix_key)
                if blob is None:
                    raise NotResponsible("That prefix doesn't live here")
            else:
                if view.get_prefix(ident.prefix_key) is None:
                    raise NotResponsible("That prefix doesn't live here")
                blob = view.get_record(ident.key)
                if blob is None:
                    raise HandleNotFound("Handle not found")
            values = tuple(unpack(bytes(blob)))
            record = Record(values)
            grades = self.registry.grades(view, record)
            result = select(values, request, grades)
            if result.outcome is not Outcome.AUTH_NEEDED:
                return result  # nothing restricted selected (any more): the plain answer
            reader = self.registry.reader(view, identity, ident, record, tls=False,
                                          datagram=datagram)  # fmt: skip
            if not reader.may_read:  # Forbidden, naming the missing right
                self._authorizer(view).check(identity, Op.READ_VALUE, ident.text, record=record)
        return select(values, request, grades, reader)

    def _modify(self, identity: Identity, handle: str, values) -> None:
        """OC_MODIFY_VALUE: every index must exist (RC 200), then as ADD with overwrite."""
        record = self.registry.read(OPERATOR, handle)
        if record is None:
            raise HandleNotFound("Handle not found")
        have = {v.index: v for v in record}
        missing = sorted(v.index for v in values if v.index not in have)
        if missing:
            raise NoSuchValue(f"No value at index {missing[0]}")
        for v in values:  # reference doModifyValue: without admin write nobody may write it
            if not have[v.index].permissions & PERM_ADMIN_WRITE:
                raise Forbidden(f"Value {v.index} is read-only")
        self.registry.put_values(identity, handle, values, overwrite=True)

    def _home(self, identity: Identity, text: str, home: bool) -> int:
        """OC_HOME_NA / OC_UNHOME_NA for server admins; the change is logged with the
        identity and the op code.  Returns the change-log id (0: nothing changed)."""
        reg = self.registry
        ident = reg.parse(_na_form(text))
        op = Op.HOME_NA if home else Op.UNHOME_NA

        def plan(view):
            self._authorizer(view).check(identity, op, ident.text)
            homed = view.get_prefix(ident.suffix_key) is not None
            if home and not homed:
                blob = default_prefix_handle(ident.suffix_key.decode("utf-8"))
                return [Change(ident.suffix_key, blob, prefix=True, op=int(_OP.HOME_NA))]
            if not home and homed:
                return [Change(ident.suffix_key, None, prefix=True, op=int(_OP.UNHOME_NA))]
            return []

        return reg.store.update(plan, str(identity))

    def _homed(self, identity: Identity) -> list[bytes]:
        """OC_LIST_HOMED_NAS: ``0.NA/<prefix>`` of every homed prefix, for server admins."""
        with self.registry.store.view() as view:
            if not self._authorizer(view).is_server_admin(identity):
                raise Forbidden(f"{identity} may not list homed prefixes: server admins only")
        return [b"0.NA/" + bytes(p) for p in self.registry.store.prefixes()]

