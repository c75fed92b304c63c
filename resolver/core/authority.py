"""The authority handler: answers for identifiers under prefixes homed in the store.

A prefix is held when its prefix handle ``0.NA/<prefix>`` is in the ``prefixes`` database.
A miss under a held prefix is authoritative (``NOT_FOUND``); a prefix not held passes on.
"""

from __future__ import annotations

from resolver.core.request import ResolveRequest, ResolveResult
from resolver.core.select import select
from resolver.errors import Outcome
from resolver.record import unpack
from resolver.store import Store


class AuthorityHandler:
    name = "authority"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def resolve(self, request: ResolveRequest) -> ResolveResult | None:
        ident = request.identifier
        if ident.is_prefix_handle:
            blob = self.store.get_prefix(ident.suffix_key)
            if blob is None:
                return None
        else:
            if self.store.get_prefix(ident.prefix_key) is None:
                return None
            blob = self.store.get_record(ident.key)
            if blob is None:
                return ResolveResult(Outcome.NOT_FOUND)
        return select(unpack(blob), request)
