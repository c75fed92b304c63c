"""Value selection for a resolution: permissions, then the index/type filters.

The general-path statement of the rule that ``native.http_resolve`` implements for its common
case; parity tests hold them together.
"""

from __future__ import annotations

from resolver.core.request import ResolveRequest, ResolveResult
from resolver.errors import Outcome
from resolver.values import HandleValue


def type_matches(vtype: str, types: tuple[str, ...]) -> bool:
    """Reference ``Util.isParentTypeInArray``: ``X.`` matches ``X`` and ``X.*``; ASCII-CI."""
    vt = vtype.encode("utf-8", "surrogateescape").upper()
    for t in types:
        t = t.encode("utf-8", "surrogateescape").upper()  # bytes that were not UTF-8 round-trip
        if t.endswith(b"."):
            if vt.startswith(t) or vt == t[:-1]:
                return True
        elif vt == t:
            return True
    return False


def select(values: tuple[HandleValue, ...], request: ResolveRequest) -> ResolveResult:
    filtering = bool(request.types or request.indexes)
    chosen = []
    restricted = False
    for v in values:
        if filtering and not (v.index in request.indexes or type_matches(v.type, request.types)):
            continue
        if not v.public_read and not request.authenticated:
            # Withheld from anonymous readers; asked for explicitly it needs authentication
            # (handle.md §2.1: values without public read need an authorised reader).
            restricted = True
            continue
        chosen.append(v)
    if restricted and not request.public_only:
        return ResolveResult(Outcome.AUTH_NEEDED, message="Authentication needed")
    if not chosen:
        return ResolveResult(Outcome.VALUES_NOT_FOUND)
    return ResolveResult(Outcome.OK, tuple(chosen))
