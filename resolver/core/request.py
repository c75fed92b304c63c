"""What every front-end hands the engine and gets back: frozen, protocol-free data types."""

from __future__ import annotations

import dataclasses

from resolver.errors import Outcome
from resolver.identifier import Identifier
from resolver.values import HandleValue


@dataclasses.dataclass(frozen=True, slots=True)
class ResolveRequest:
    """Resolve ``identifier``; empty ``types`` and ``indexes`` mean "all values".

    ``types`` are matched ASCII-case-insensitively; a type ending in ``.`` also matches its
    sub-types (handle.md §2.1).  A value is selected when its index is in ``indexes`` or its
    type matches ``types`` (the union, as the reference server).  ``public_only`` withholds
    values without public read; ``authenticated`` is False until registration brings identities.
    ``do_not_refer`` (Handle op flag DNRF, REST ``doNotRefer``): answer instead of referring —
    no prefix referral for a prefix handle that is not held (handle.md §3.2).
    ``recursive``: the client asks this node to resolve an identifier of a prefix it does not
    hold by asking the upstream nodes (Handle op flag REC, handle.md §3.2; REST and DNS set it
    whenever ``[upstream] recursion`` is on); only ``core.forwarder`` reads it.
    """

    identifier: Identifier
    types: tuple[str, ...] = ()
    indexes: tuple[int, ...] = ()
    public_only: bool = True
    authoritative: bool = False
    authenticated: bool = False
    do_not_refer: bool = False
    recursive: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ResolveResult:
    """``values``: the selected values (``OK``), or the referral values (``PREFIX_REFERRAL``).
    ``authoritative``: False for data this node does not hold — forwarded from upstream, or a
    takeover copy — so front-ends do not claim it (Handle AT bit in the reply, RFC 3652
    §2.2.2.3; DNS AA bit, RFC 1035 §4.1.1)."""

    outcome: Outcome
    values: tuple[HandleValue, ...] = ()
    message: str = ""
    authoritative: bool = True
