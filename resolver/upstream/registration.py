"""Prefix registration upstream (issue 7 §2): keep this node's prefix handles ``0.NA/<prefix>``
at every top-level node pointing at this node's site.

A secondary node is reached through the prefix handles the national top-level nodes hold
(handle.md §4 items 2–3; idis.md §1.4 "开通服务寻址"): a resolver asks a top-level node for
``0.NA/88.121`` and reads the ``HS_SITE`` values (handle.md §2.4) there.  ``PrefixRegistrar``
makes those values ours and keeps them so, with the authenticated native admin operations
(handle.md §3.3 OC 100 / 102 / 104, §5 challenge → answer through
``HandleClient.request_authenticated``).  It runs in the node's upstream agent
(``resolver.upstream.agent``): one ``check_once()`` at start, then one every ``interval``.

Contract of ``await PrefixRegistrar.check_once()``
==================================================

**What is registered.**  The configured ``prefixes`` (the node's own, e.g. ``88.121``) and every
prefix ``held()`` returns that lies *under* one of them (the enterprise prefixes the node
allocated and homes, e.g. ``88.121.7``); held prefixes outside the configured ones are not ours
to register and are ignored.  Prefixes are compared by their normalised key
(``Identifier``: case-folded) and handled parents first, so a parent handle exists at the
upstream before its derived prefixes are created under it.

**Per upstream, per prefix** — the upstream's own copy is read with OC_RESOLUTION of
``0.NA/<prefix>`` over TCP, public values only, flags AU | PO | RD | DNRF (no REC: the
upstream must answer from its own data, not recurse; DNRF: no referral instead of the answer):

==========================================  =========================================  ========
upstream holds                              action                                     state
==========================================  =========================================  ========
nothing (RC 100 or 301) and an ancestor     none: the upstream refers the whole        delegated
read this round has an ``HS_SITE.PREFIX``   subtree to us (handle.md §4 item 3)
/ ``HS_NA_DELEGATE`` naming our site
nothing (RC 100 or 301)                     OC_CREATE_HANDLE: ``HS_SITE`` (index 1) =  created
                                            our site + ``HS_ADMIN`` (index 100) naming
                                            our identity, every right but LIST_HANDLES
                                            (0x7FF, handle.md §2.3) so we can keep it
                                            current and add derived prefixes under it
the handle, an ``HS_SITE`` equal to ours    none                                       registered
the handle, ``HS_SITE`` values, none ours   OC_MODIFY_VALUE of the one at index 1,     repaired
                                            else of the first (its TTL and
                                            permissions kept, data = our site)
the handle, no ``HS_SITE``                  OC_ADD_VALUE of ``HS_SITE`` at index 1     created
                                            (or the first index free among the values
                                            we see; RC 201 when a value without public
                                            read holds it: failed, never overwritten)
anything else (RC 303, 401, 403, …) or no   none                                       failed
usable reply
==========================================  =========================================  ========

"Our site" is exactly ``our_site`` (the bytes of this node's HS_SITE record, serial
included): a change of address, port, serial or key is re-registered at the next check.  A
site "names our site" for delegation when it lists the same servers (address and
interfaces; serial, attributes and keys aside), since the upstream writes its own copy.

A derived prefix whose handle the upstream does hold is kept current even under a delegation
to us: at the upstream that handle is answered before any referral (handle.md §4 item 3).

An upstream that gives no usable reply (``UpstreamUnavailable``), refuses our credential (RC
403) or sheds load (RC 3) fails the rest of its prefixes for this round at once: no timeout
per prefix, and no feeding its failed-authentication limit once per prefix.  Upstreams are
checked concurrently; within one, up to ``concurrency`` prefixes of one depth at a time.

**State** per (upstream, prefix) — ``status()["upstreams"]["host:port"][prefix]``::

    {"state": "registered" | "created" | "repaired" | "delegated" | "failed" | "pending",
     "message": text (why it failed, what was done), "checked": UNIX time of the last check,
     "changed": UNIX time of our last write there (None: never), "action": that write
     ("created" | "repaired"; None: never)}

``created`` / ``repaired`` last until the next check, which finds ``registered``; ``action``
and ``changed`` keep the last write.  ``status()`` also gives ``identity``, ``interval``,
``prefixes`` (the last plan), ``last_check`` and ``counters`` (checks, created, repaired,
failed).  Prefixes no longer planned are dropped from the state; nothing is ever deleted
upstream (an unhomed enterprise prefix's handle stays until the upstream removes it).

How the upstream authorises the writes (``registry.authz``, handle.md §5): the node's
``identity`` must be provable there (its HS_SECKEY / HS_PUBKEY value held by the upstream) and
hold MODIFY_VALUE / ADD_VALUE in an HS_ADMIN of ``0.NA/<prefix>`` (a national node allocating
``88.121`` writes ``0.NA/88.121`` with ``HS_ADMIN 300:0.NA/88.121`` and the secondary's key at
index 300), ADD_DERIVED_PREFIX in the parent's for a prefix it creates, or be one of the
upstream's ``server_admins``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from typing import Callable, Iterable, Sequence

from resolver.errors import IdnodeError, InvalidIdentifier
from resolver.identifier import Identifier, ancestry
from resolver.protocols.handle import auth as A
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.codes import ResponseCode
from resolver.protocols.handle.message import ResolutionRequest, ResolutionResponse, ValuesBody
from resolver.upstream.client import ADMIN_FLAGS, Auth, HandleClient, UpstreamUnavailable
from resolver.values import ADMIN_TYPE, AdminRecord, HandleValue, SiteInfo

log = logging.getLogger("idnode.upstream.registration")

SITE_TYPE = "HS_SITE"
#: Values of a prefix handle delegating every derived prefix (handle.md §2.2, §4 item 3).
DELEGATION_TYPES = ("HS_SITE.PREFIX", "HS_NA_DELEGATE")
#: Where our HS_SITE goes in a handle we create or complete (TM9 §3.6 conventions).
SITE_INDEX = 1
ADMIN_INDEX = 100
#: Every HS_ADMIN right but LIST_HANDLES, as Handle.net's default prefix admin (handle.md §2.3).
ADMIN_PERMISSIONS = 0x7FF
#: Reading the upstream's own copy: authoritative, public values, our digest, no referral.
READ_FLAGS = (C.FLAG_AUTHORITATIVE | C.FLAG_PUBLIC_ONLY | C.FLAG_REQUEST_DIGEST
              | C.FLAG_DO_NOT_REFER)  # fmt: skip
DEFAULT_INTERVAL = 300.0
STATES = ("pending", "registered", "created", "repaired", "delegated", "failed")
_ABSENT = (100, 301)  # handle not found / that prefix doesn't live here (with DNRF)
#: Refusals that hold for every prefix at that upstream: the rest of the round is failed at
#: once instead of being sent (a wrong credential would otherwise feed the upstream's
#: failed-authentication limit once per prefix).
_FATAL = (ResponseCode.SERVER_TOO_BUSY, ResponseCode.AUTHENTICATION_FAILED)


@dataclasses.dataclass(slots=True)
class PrefixState:
    """The registration of one prefix at one upstream (module docstring)."""

    state: str = "pending"
    message: str = ""
    checked: float | None = None
    changed: float | None = None
    action: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Refused(Exception):
    """The upstream answered, but not as we need: the prefix's check failed (message; ``rc``:
    the upstream's response code)."""

    def __init__(self, message: str, rc: int = 0) -> None:
        super().__init__(message)
        self.rc = rc


def plan_prefixes(configured: Iterable[str], held: Iterable[str | bytes]) -> list[str]:
    """The prefixes to register: ``configured`` plus each ``held`` prefix under one of them,
    normalised (``Identifier`` key text), without repeats, parents first (depth, then name)."""
    own = {_key(p) for p in configured}
    out = set(own)
    for p in held:
        try:
            key = _key(p)
        except InvalidIdentifier:
            continue  # nothing a store holds; never ours to register
        if any(a.decode() in own for a in ancestry(key.encode())[1:]):
            out.add(key)
    return sorted(out, key=lambda p: (p.count("."), p))


def _key(prefix: str | bytes) -> str:
    """``88.121`` / ``0.NA/88.121`` → the normalised prefix (``Identifier.parse`` rules)."""
    text = prefix.decode("utf-8") if isinstance(prefix, bytes) else prefix
    ident = Identifier.parse(text if "/" in text else f"0.NA/{text}")
    if not ident.is_prefix_handle:
        raise InvalidIdentifier(f"{text!r} is not a prefix")
    return ident.suffix_key.decode("utf-8")


def _servers(site: bytes) -> frozenset | None:
    """What makes a site "ours" for delegation: its servers' addresses and interfaces."""
    try:
        info = SiteInfo.from_bytes(site)
    except (IdnodeError, ValueError, IndexError):
        return None
    return frozenset((s.address, frozenset(s.interfaces)) for s in info.servers)


class PrefixRegistrar:
    """Registers and keeps current our prefix handles at the ``upstreams`` (module docstring).

    ``auth``: our credential there (``SecretKeyAuth`` / ``PublicKeyAuth``, whose ``identity``
    is the HS_ADMIN we write); ``our_site``: our HS_SITE record bytes; ``prefixes``: the
    configured ones; ``held()``: the prefixes homed here now (called once per check; what it
    raises is logged and the check goes on with the configured prefixes only).
    """

    name = "registration"  # the agent files our status under this key

    def __init__(self, upstreams: Sequence[tuple[str, int]], auth: Auth, our_site: bytes,
                 prefixes: Iterable[str], *, held: Callable[[], Iterable[str | bytes]] = tuple,
                 client: HandleClient | None = None, interval: float = DEFAULT_INTERVAL,
                 concurrency: int = 8, clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        if not upstreams:
            raise ValueError("registration needs at least one upstream")
        if interval <= 0 or concurrency < 1:
            raise ValueError("interval must be positive and concurrency at least 1")
        self.upstreams = tuple((h, int(p)) for h, p in upstreams)
        self.auth = auth
        self.identity = auth.identity
        self.admin_index, self.admin_handle = A.parse_identity(auth.identity)
        self.our_site = bytes(our_site)
        self._our_servers = _servers(self.our_site)
        self.prefixes = tuple(_key(p) for p in prefixes)
        if not self.prefixes:
            raise ValueError("registration needs at least one prefix")
        self.held = held
        self.client = client or HandleClient(udp_retry=(0.5,), tcp_timeout=5.0,
                                             total_timeout=10.0)  # fmt: skip
        self.interval = float(interval)
        self.concurrency = concurrency
        self.clock = clock
        self.plan: list[str] = list(self.prefixes)
        self.last_check: float | None = None
        self.states: dict[tuple[str, int], dict[str, PrefixState]] = {u: {} for u in self.upstreams}
        self.counters = {"checks": 0, "created": 0, "repaired": 0, "failed": 0}

    # -- the loop the agent runs -------------------------------------------------------------
    async def run(self) -> None:
        """``check_once()`` now and every ``interval`` seconds after one ends, until cancelled."""
        while True:
            try:
                await self.check_once()
            except Exception:  # never let one bad round end the registrations
                log.exception("E070 prefix registration: a check failed")
            await asyncio.sleep(self.interval)

    async def check_once(self) -> dict:
        """One round over every upstream and prefix (module docstring); returns ``status()``."""
        try:
            held = list(self.held())
        except Exception:
            log.exception("E070 prefix registration: cannot list the prefixes held here")
            held = []
        self.plan = plan_prefixes(self.prefixes, held)
        await asyncio.gather(*(self._check_upstream(u) for u in self.upstreams))
        self.counters["checks"] += 1
        self.last_check = self.clock()
        return self.status()

    def status(self) -> dict:
        return {
            "identity": self.identity,
            "interval": self.interval,
            "prefixes": list(self.plan),
            "last_check": self.last_check,
            "counters": dict(self.counters),
            "upstreams": {_name(u): {p: s.as_dict() for p, s in rows.items()}
                          for u, rows in self.states.items()},
        }  # fmt: skip

    # -- one upstream --------------------------------------------------------------------------
    async def _check_upstream(self, upstream: tuple[str, int]) -> None:
        rows = self.states[upstream]
        for gone in set(rows) - set(self.plan):
            del rows[gone]
        records: dict[str, tuple[HandleValue, ...]] = {}  # what the upstream holds, this round
        stop: list[str] = []  # why the rest of this round at this upstream is failed at once
        gate = asyncio.Semaphore(self.concurrency)

        async def one(prefix: str) -> None:
            async with gate:
                row = rows.setdefault(prefix, PrefixState())
                if stop:
                    self._fail(upstream, prefix, row, stop[0])
                    return
                try:
                    state, message = await self._reconcile(upstream, prefix, records)
                except (_Refused, IdnodeError) as exc:
                    message = getattr(exc, "message", None) or str(exc)
                    if isinstance(exc, UpstreamUnavailable) or getattr(exc, "rc", 0) in _FATAL:
                        stop.append(message)
                    self._fail(upstream, prefix, row, message)
                    return
                except Exception as exc:
                    log.exception("E070 prefix registration: checking %s at %s", prefix,
                                  _name(upstream))  # fmt: skip
                    self._fail(upstream, prefix, row, f"internal error: {exc!r}")
                    return
                now = self.clock()
                row.state, row.message, row.checked = state, message, now
                if state in ("created", "repaired"):
                    row.changed, row.action = now, state
                    self.counters[state] += 1
                    log.info("prefix registration: %s at %s: %s", prefix, _name(upstream),
                             message)  # fmt: skip

        # one depth at a time: a parent's handle exists (and was read) before its children
        for _depth, level in itertools.groupby(self.plan, key=lambda p: p.count(".")):
            await asyncio.gather(*(one(p) for p in level))

    def _fail(self, upstream, prefix: str, row: PrefixState, message: str) -> None:
        if row.state != "failed" or row.message != message:  # log changes, not every round
            log.warning("E071 prefix registration: %s at %s failed: %s", prefix,
                        _name(upstream), message)  # fmt: skip
        row.state, row.message, row.checked = "failed", message, self.clock()
        self.counters["failed"] += 1

    async def _reconcile(self, upstream, prefix: str,
                         records: dict[str, tuple[HandleValue, ...]]) -> tuple[str, str]:
        """(state, message) after making the upstream's ``0.NA/<prefix>`` ours (table)."""
        handle = f"0.NA/{prefix}"
        values = await self._read(upstream, handle)
        if values is None:
            delegator = self._delegated_by(prefix, records)
            if delegator is not None:
                return "delegated", f"0.NA/{delegator} delegates derived prefixes to our site"
            await self._write(upstream, C.OpCode.CREATE_HANDLE, handle, [
                HandleValue(SITE_INDEX, SITE_TYPE, self.our_site),
                HandleValue(ADMIN_INDEX, ADMIN_TYPE, AdminRecord(
                    self.admin_handle, self.admin_index, ADMIN_PERMISSIONS).to_bytes()),
            ])  # fmt: skip
            return "created", f"created {handle}"
        records[prefix] = values
        sites = [v for v in values if v.has_type(SITE_TYPE)]
        if any(v.data == self.our_site for v in sites):
            return "registered", ""
        if sites:
            ours = next((v for v in sites if v.index == SITE_INDEX), sites[0])
            new = ours.replace(data=self.our_site, timestamp=0)
            await self._write(upstream, C.OpCode.MODIFY_VALUE, handle, [new])
            return "repaired", f"replaced the HS_SITE at index {ours.index} of {handle}"
        taken = {v.index for v in values}
        index = SITE_INDEX if SITE_INDEX not in taken else next(
            i for i in range(1, len(taken) + 2) if i not in taken)  # fmt: skip
        new = HandleValue(index, SITE_TYPE, self.our_site)
        await self._write(upstream, C.OpCode.ADD_VALUE, handle, [new])
        return "created", f"added HS_SITE at index {index} to {handle}"

    def _delegated_by(self, prefix: str, records) -> str | None:
        """The nearest ancestor read this round whose .PREFIX site is ours, or None."""
        for ancestor in ancestry(prefix.encode())[1:]:
            values = records.get(ancestor.decode())
            if values is None:
                continue
            if any(v.has_type(t) and self._our_servers is not None
                   and _servers(v.data) == self._our_servers
                   for v in values for t in DELEGATION_TYPES):  # fmt: skip
                return ancestor.decode()
        return None

    async def _read(self, upstream, handle: str) -> tuple[HandleValue, ...] | None:
        """The upstream's public values of ``handle``; None when it holds no such handle."""
        body = ResolutionRequest(handle.encode("utf-8"), (), ())
        reply = await self.client.send(C.OpCode.RESOLUTION, body, server=upstream, proto="tcp",
                                       opflags=READ_FLAGS)  # fmt: skip
        rc = reply.header.rc
        if rc in _ABSENT:
            return None
        if rc != 1 or not isinstance(reply.body, ResolutionResponse):
            raise _Refused(f"reading {handle}: {reply.summary(200)}", rc)
        return reply.body.values

    async def _write(self, upstream, opcode: int, handle: str,
                     values: list[HandleValue]) -> None:  # fmt: skip
        """One authenticated write (challenge answered with ``auth``); ``_Refused`` unless RC 1."""
        body = ValuesBody(handle.encode("utf-8"), tuple(values))
        reply = await self.client.request_authenticated(opcode, body, self.auth, server=upstream,
                                                        opflags=ADMIN_FLAGS)  # fmt: skip
        if reply.header.rc != 1:
            verb = {C.OpCode.CREATE_HANDLE: "creating", C.OpCode.MODIFY_VALUE: "modifying",
                    C.OpCode.ADD_VALUE: "adding HS_SITE to"}[opcode]  # fmt: skip
            raise _Refused(f"{verb} {handle}: {reply.summary(200)}", reply.header.rc)


def _name(upstream: tuple[str, int]) -> str:
    host, port = upstream
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
