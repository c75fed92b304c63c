"""The forwarder handler: answers a recursive request for a prefix this node does not hold by
asking the upstream nodes (issue 7 §3; handle.md §4 items 5 and 9c: the reference server
recurses for a client that set REC when ``allow_recursion`` is on).

It sits in the chain after ``AuthorityHandler``, so it only ever sees what authority passed on:
an identifier under a prefix not held, or a prefix handle that is neither held nor referred.
A request without ``recursive`` passes on too (the engine then answers ``NOT_RESPONSIBLE``,
RC 301), so a node with ``[upstream] recursion = false`` behaves exactly as before.

The link is injected and duck-typed (``core`` never imports ``upstream``; the composition root
hands in a ``resolver.upstream.link.UpstreamLink``)::

    async link.resolve(key: str, *, fresh: bool = False) -> ResolveResult

``key`` is the identifier's storage key as text (``Identifier.key``: the canonical form, so
that every spelling of one identifier shares one cache entry and one upstream query node-wide).
The link answers every value with public read that upstream gave (``OK``), or an outcome
(``NOT_FOUND``, ``VALUES_NOT_FOUND``, ``NOT_RESPONSIBLE``, ``RECURSION_LIMIT``,
``UPSTREAM_UNAVAILABLE``, ...); it never raises for an unreachable upstream.  ``fresh`` (the
request's ``authoritative``: Handle AT flag, REST ``auth``): the answer must come from the
identifier's primary site now, not from the node's cache.  Here the
request's own selection — types, indexes, ``public_only`` — is applied to the values with
``core.select``, the rule local answers follow, so a forwarded answer reads like a local one.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from resolver.core.engine import NOT_HERE
from resolver.core.request import ResolveRequest, ResolveResult
from resolver.core.select import select
from resolver.errors import Outcome


class Link(Protocol):
    async def resolve(self, key: str, *, fresh: bool = False) -> ResolveResult: ...


class ForwarderHandler:
    name = "forwarder"

    def __init__(self, link: Link) -> None:
        self.link = link

    async def resolve(self, request: ResolveRequest) -> ResolveResult | None:
        if not request.recursive:
            return None
        try:
            key = request.identifier.key.decode("utf-8")
        except UnicodeDecodeError:  # keys come from valid UTF-8; nothing to ask upstream for
            return None
        # AT: "bypass caches, primary only" (RFC 3652 §2.2.2.3; handle.md §3.2)
        result = await self.link.resolve(key, fresh=request.authoritative)
        if result.outcome is Outcome.OK:
            result = select(result.values, request)
        elif result.outcome is Outcome.NOT_RESPONSIBLE and not result.message:
            result = ResolveResult(Outcome.NOT_RESPONSIBLE, message=NOT_HERE)
        return dataclasses.replace(result, authoritative=False)  # not our data
