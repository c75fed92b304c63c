"""The authority handler: answers for identifiers under prefixes homed in the store, and refers
queries for derived prefixes delegated elsewhere.

A prefix is held when its prefix handle ``0.NA/<prefix>`` is in the ``prefixes`` database.
A miss under a held prefix is authoritative (``NOT_FOUND``); a prefix not held passes on.

Prefix referrals (handle.md §4 item 3; reference ``HandleServer.errorIfNotHaveHandle`` →
``getPrefixReferralResponseIfAppropriate``).  A query for the prefix handle ``0.NA/<P>`` that
is not held walks P's ancestors (``0.NA/88.118.8`` → ``0.NA/88.118`` → ``0.NA/88``); the first
held ancestor with public ``HS_SITE.PREFIX`` / ``HS_NA_DELEGATE`` / ``HS_SERV.PREFIX`` values
answers ``PREFIX_REFERRAL`` carrying exactly those values: the ancestor has delegated all its
derived prefixes to the service they name.  As the reference:

* a held ``0.NA/<P>`` is answered itself (the exact prefix handle wins over any referral);
* an ancestor whose ``.PREFIX`` values are all without public read refers nothing, and the walk
  goes on to the next ancestor;
* the request's type and index filters do not apply to the referral values;
* ``do_not_refer`` (DNRF) turns referrals off.

Referrals depend on the data only, not on the node's ``role``: the reference server has no
such switch and refers whenever it holds an ancestor with ``.PREFIX`` values.  Where the
reference (a root server homing ``0.NA``) then answers RC 100, a node that finds no referral
passes on (``NOT_RESPONSIBLE`` unless a later handler claims the prefix).  An identifier that
is not a prefix handle is never referred: a prefix not held passes on as before.
"""

from __future__ import annotations

from resolver.core.request import ResolveRequest, ResolveResult
from resolver.core.select import select, type_matches
from resolver.errors import Outcome
from resolver.identifier import ancestry
from resolver.record import unpack
from resolver.store import Store

#: Reference ``Common.DERIVED_PREFIX_SITE_AND_SERVICE_HANDLE_TYPES``.
PREFIX_TYPES = ("HS_SITE.PREFIX", "HS_NA_DELEGATE", "HS_SERV.PREFIX")
REFERRAL_MESSAGE = "Prefix referral"


class AuthorityHandler:
    name = "authority"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def resolve(self, request: ResolveRequest) -> ResolveResult | None:
        ident = request.identifier
        if ident.is_prefix_handle:
            blob = self.store.get_prefix(ident.suffix_key)
            if blob is None:
                return None if request.do_not_refer else self.referral(ident.suffix_key)
        else:
            if self.store.get_prefix(ident.prefix_key) is None:
                return None
            blob = self.store.get_record(ident.key)
            if blob is None:
                return ResolveResult(Outcome.NOT_FOUND)
        return select(unpack(blob), request)

    def referral(self, prefix: bytes) -> ResolveResult | None:
        """The public ``.PREFIX`` values of the nearest held ancestor of ``prefix`` that has
        some, as a ``PREFIX_REFERRAL``; None when no ancestor delegates it."""
        for ancestor in ancestry(prefix)[1:]:
            blob = self.store.get_prefix(ancestor)
            if blob is None:
                continue
            values = tuple(v for v in unpack(blob)
                           if type_matches(v.type, PREFIX_TYPES) and v.public_read)  # fmt: skip
            if values:
                return ResolveResult(Outcome.PREFIX_REFERRAL, values, REFERRAL_MESSAGE)
        return None
