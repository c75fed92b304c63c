"""The handler contract of the resolution chain.

A handler is asked, in chain order, to resolve a request.  It returns a ``ResolveResult`` to
answer (the chain stops), or ``None`` to pass the request on ("not mine").  Handlers raise only
``IdnodeError`` subclasses; the engine turns anything else into ``Outcome.INTERNAL``.  The chain
is an ordered tuple built once from configuration: authority (prefixes held here) → cache →
upstream forwarder (peering issue).
"""

from __future__ import annotations

from typing import Protocol

from resolver.core.request import ResolveRequest, ResolveResult


class Handler(Protocol):
    name: str

    async def resolve(self, request: ResolveRequest) -> ResolveResult | None: ...
