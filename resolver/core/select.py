"""Value selection for a resolution: the index/type filters, then visibility by grade.

The general-path statement of the rule that ``native.http_resolve`` implements for its common
case; parity tests hold them together.  Which values a reader may see is decided by
``resolver.core.grading.visible`` (the one read rule); this module only applies it to a
selection and says what a refusal looks like.
"""

from __future__ import annotations

from typing import Mapping

from resolver.core.grading import Grade, Reader, effective_grade, visible
from resolver.core.request import ResolveRequest, ResolveResult
from resolver.errors import Outcome
from resolver.values import HandleValue

#: Why an authenticated reader gets nothing of what it selected.
WITHHELD = ("Insufficient permissions: the selected values need READ_VALUE, or are core data, "
            "served only over TLS to the identifier's owners")  # fmt: skip


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


def select(values: tuple[HandleValue, ...], request: ResolveRequest,
           grades: Mapping[int, Grade] | None = None,
           reader: Reader | None = None) -> ResolveResult:  # fmt: skip
    """The values of ``request``'s selection that ``reader`` may see.

    ``grades``: the template grade of each index (empty: none known, so only the values'
    public-read bits count).  ``reader``: default — from ``request.authenticated``, which
    front-ends set once they have checked READ_VALUE (``Reader(authenticated=may_read=...)``).

    A selected value the reader may not see is withheld.  Unless ``public_only``: an
    unauthenticated reader then gets AUTH_NEEDED (handle.md §2.1: such values need an
    authorised reader), an authenticated one FORBIDDEN when nothing visible remains.
    """
    if reader is None:
        reader = Reader(authenticated=request.authenticated, may_read=request.authenticated)
    grades = grades or {}
    filtering = bool(request.types or request.indexes)
    chosen = []
    restricted = False
    for v in values:
        if filtering and not (v.index in request.indexes or type_matches(v.type, request.types)):
            continue
        if not visible(effective_grade(v, grades), reader):
            restricted = True
            continue
        chosen.append(v)
    if restricted and not request.public_only:
        if not reader.authenticated:
            return ResolveResult(Outcome.AUTH_NEEDED, message="Authentication needed")
        if not chosen:
            return ResolveResult(Outcome.FORBIDDEN, message=WITHHELD)
    if not chosen:
        return ResolveResult(Outcome.VALUES_NOT_FOUND)
    return ResolveResult(Outcome.OK, tuple(chosen))
