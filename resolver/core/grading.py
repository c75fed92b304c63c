"""Data grading on read: THE one rule deciding which values a reader may see (issue 5 §6).

Owns ``Grade`` (GB/T 43697-2024 一般 / 重要 / 核心 — general, important, core; idis.md §3),
``Reader`` (what is known about who asks and how), ``effective_grade``, ``visible`` and
``filter_values``, and the write-side rule ``permissions_for``.  Every front-end decides
visibility through ``visible``: the general resolution path (``core.select``), the
authenticated REST read and the authenticated native read (``registry.service.Registry.read``,
``registry.native_admin``).  Pure: imports the model only.

The rule
--------
The grade of a value is the larger of

* the grade its metadata template gives its index (``grades``: index → Grade, empty when the
  identifier has no template or the caller does not know it), and
* IMPORTANT when the value lacks public read (``PERM_PUBLIC_READ``), else GENERAL — the Handle
  System's own per-value bit (handle.md §2.1): a value without public read needs an authorised
  reader whatever its template says.

A value of grade

=========  ================================================================================
GENERAL    is visible to everyone (anonymous callers included).
IMPORTANT  is visible to an authenticated reader that may read the identifier's restricted
           values (``may_read``: READ_VALUE in one of its HS_ADMIN values — handle.md §2.3 —
           or a grant; server admins with full access hold it too).
CORE       is visible only to an authenticated *owner* (an identity in the identifier's own
           HS_ADMIN set or in that of its enterprise prefix ``0.NA/<prefix>``, directly or
           through HS_VLIST groups, with a right beyond READ_VALUE and LIST_HANDLES) that may
           also read IMPORTANT values, over TLS, never in a datagram (UDP) answer.
=========  ================================================================================

The rule is monotone: a reader that sees a grade sees every lower one.  (Requiring
``may_read`` for CORE as well keeps it so: an owner through the prefix alone, without
READ_VALUE on the identifier, sees neither its important nor its core values — the Handle
System's READ_VALUE stays the gate of every restricted value.)

Why the fast paths need no grades
---------------------------------
``native.http_resolve`` / ``native.handle_resolve`` and the anonymous general path only ever
serve values with public read (handle.md §2.1, resolver docs).  Registration keeps the
invariant that makes that enough: ``permissions_for`` clears public read (and public write) of
every IMPORTANT or CORE template field and sets admin read/write, on every write through the
registration service and the import engine (``registry.templates.Templates.apply``).  So an
anonymous or UDP reader never meets an IMPORTANT or CORE value without the fast path knowing
templates.  Records written around the registration service (``idnode load``) are not held to
it; ``Registry.read`` still applies the template grades.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Iterable, Mapping

from resolver.values import (
    PERM_ADMIN_READ, PERM_ADMIN_WRITE, PERM_PUBLIC_READ, PERM_PUBLIC_WRITE, HandleValue,
)  # fmt: skip


class Grade(enum.IntEnum):
    """Data grade (GB/T 43697-2024); the order is the severity."""

    GENERAL = 0
    IMPORTANT = 1
    CORE = 2

    @classmethod
    def parse(cls, text: str) -> "Grade":
        """``"general"`` / ``"important"`` / ``"core"`` (ASCII case-insensitive); ValueError."""
        if isinstance(text, str) and text.isascii():
            member = cls.__members__.get(text.upper())
            if member is not None:
                return member
        raise ValueError(f"not a grade: {text!r} (general, important, core)")

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclasses.dataclass(frozen=True, slots=True)
class Reader:
    """Who reads, as far as visibility is concerned.

    ``authenticated``: an identity was proved.  ``may_read``: it may read the identifier's
    restricted values (READ_VALUE or a grant).  ``owner``: it is in the identifier's own or its
    enterprise prefix's HS_ADMIN set.  ``tls``: the answer travels over TLS.  ``datagram``:
    the answer is a UDP datagram.
    """

    authenticated: bool = False
    may_read: bool = False
    owner: bool = False
    tls: bool = False
    datagram: bool = False


#: Nobody in particular: sees GENERAL values only.
ANONYMOUS = Reader()


def effective_grade(value: HandleValue, grades: Mapping[int, Grade]) -> Grade:
    """max(template grade of the value's index, IMPORTANT without public read else GENERAL)."""
    own = Grade.GENERAL if value.permissions & PERM_PUBLIC_READ else Grade.IMPORTANT
    template = grades.get(value.index, Grade.GENERAL) if grades else Grade.GENERAL
    return max(own, template)


def visible(grade: Grade, reader: Reader) -> bool:
    """May ``reader`` see a value of ``grade``?  (module docstring: the table)"""
    if grade <= Grade.GENERAL:
        return True
    if not reader.authenticated:
        return False
    if grade == Grade.IMPORTANT:
        return reader.may_read
    return reader.may_read and reader.owner and reader.tls and not reader.datagram


def filter_values(values: Iterable[HandleValue], grades: Mapping[int, Grade],
                  reader: Reader) -> tuple[HandleValue, ...]:  # fmt: skip
    """The values ``reader`` may see, in their order."""
    return tuple(v for v in values if visible(effective_grade(v, grades), reader))


def permissions_for(grade: Grade, permissions: int) -> int:
    """The permission bits a template field of ``grade`` is stored with: GENERAL keeps what
    was given; IMPORTANT and CORE lose public read and public write and get admin read and
    admin write (the write-side invariant of the module docstring)."""
    if grade <= Grade.GENERAL:
        return permissions
    return (permissions & ~(PERM_PUBLIC_READ | PERM_PUBLIC_WRITE)) | PERM_ADMIN_READ \
        | PERM_ADMIN_WRITE  # fmt: skip
