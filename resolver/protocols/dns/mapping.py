"""Identifier ↔ DNS name mapping: the names the DNS front-end answers for (issue 6 §1).

Owns ``to_dns_name`` / ``from_dns_name``, pure functions: no sockets, store or configuration —
the caller passes the apex and the node's case mode.  Prior art: ONS and the OID Resolution
System both reverse the identifier's hierarchy into DNS labels under a fixed apex
(``000024.0614141.sgtin.id.onsepc.com``, ``1.102.101818.156.16.2.oid-res.org``; reference
idis.md §2.3–2.4).

Contract
========

Shape (left to right, as presentation text; the name is always absolute, ``.``-terminated)::

    <suffix label(s)> . <prefix segment n> . … . <prefix segment 1> . <apex>

    88.118.8/SN-2026-0001   →  sn-2026-0001.8.118.88.id.idnode.test.
    88.118.8/SN_1           →  sb--knhf6mi.8.118.88.id.idnode.test.
    0.NA/88.118.8           →  sb--ha4c4mjrhaxdq.na.0.id.idnode.test.
    88.118.8  (no slash)    =  0.NA/88.118.8 (identifier.py's rule), the same name

What is mapped is the identifier's **storage key** (``resolver.identifier.key_of``): the prefix
ASCII-upper-cased; the suffix ASCII-upper-cased too unless ``case_sensitive`` (a ``0.NA/``
handle is folded whole in both modes, as the key is).  ``from_dns_name`` returns that key as
text — the **canonical form** — so ``from_dns_name(to_dns_name(x)) == key_of(x).decode()`` and
``Identifier.parse(result).key == Identifier.parse(x).key`` in the same case mode.  Every label
this module emits is lower-case; names are read ASCII-case-insensitively (RFC 4343).

Labels.  Every label emitted below the apex is 1–63 characters of ``[a-z0-9-]`` and is one of:

=============  =========================  ==================================================
form           text                       meaning
=============  =========================  ==================================================
plain          ``[a-z0-9]([a-z0-9-]*      the segment/suffix itself, lower-cased; never has
               [a-z0-9])?``, ≤ 63         ``--`` at positions 3–4 (RFC 5891 "R-LDH", the
                                          ``xn--`` space): that space is ours for markers
``uc--<p>``    ``uc--`` + plain, ≤ 63     suffix only, ``case_sensitive`` only: the suffix
                                          is ``<p>`` ASCII-upper-cased (``SN-1`` →
                                          ``uc--sn-1``); used when it has an upper-case
                                          letter, no lower-case one, and is plain otherwise
``sb--<b32>``  ``sb--`` + ≤ 59 base32      suffix chunk: RFC 4648 base32 of the suffix's
                                          UTF-8 bytes, lower-case, no ``=`` padding, cut
                                          into 59-character chunks, one label each, in
                                          order (first chunk leftmost; all full but the last)
``pb--<b32>``  ``pb--`` + ≤ 59 base32      prefix segment: base32 as above of the segment's
                                          bytes (≤ 36 bytes fit one label)
=============  =========================  ==================================================

Suffix: plain if the suffix (lower-cased when case-insensitive; exactly, when case-sensitive)
is a plain label; else ``uc--`` when that rule applies; else ``sb--`` chunks.  Prefix segments:
plain if the lower-cased segment is a plain label, else one ``pb--`` label; a segment that
fits neither (> 63 LDH characters, or > 36 bytes otherwise) raises ``InvalidIdentifier``.

Boundary, without knowing which prefixes exist: the suffix is the leftmost label, or — when
that label starts ``sb--`` — the maximal leading run of ``sb--`` labels; every label after it,
down to the apex, is a prefix segment (read right to left).  No prefix label can start
``sb--`` or ``uc--``, so the split is unique.  Because the encoding is a function of the key
and ``from_dns_name`` inverts it exactly, distinct keys never share a name.

Limits: the whole name (apex included) must be ≤ 255 octets in wire form (RFC 1035 §2.3.4:
Σ(1 + label length) + 1); otherwise ``InvalidIdentifier`` ("too long for a DNS name").  Under
the default apex (16 octets) and prefix ``88.118.8`` any plain suffix fits, and an encoded one
of up to 131 bytes; a long prefix or apex leaves less.

Apex: any absolute name whose labels are 1–63 of ``[A-Za-z0-9_-]``, with or without the
final dot, compared case-insensitively; ``.`` (the root) is allowed.  A bad apex is a
configuration error: ``ValueError``.

``from_dns_name`` returns ``None`` — a miss, not an error — for any name outside the apex, the
apex itself, and any name ``to_dns_name`` would not produce (garbage labels, non-canonical
base32, ``uc--`` when case-insensitive, …): it decodes, then re-encodes and compares.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re

from resolver.errors import InvalidIdentifier
from resolver.identifier import NA_PREFIX, key_of

DEFAULT_APEX = "id.idnode.test."
MAX_NAME_WIRE = 255  # RFC 1035 §2.3.4
MAX_LABEL = 63

SUFFIX_B32 = b"sb--"
SUFFIX_UPPER = b"uc--"
PREFIX_B32 = b"pb--"
B32_PER_LABEL = MAX_LABEL - 4
PREFIX_B32_MAX_BYTES = B32_PER_LABEL * 5 // 8  # 36 bytes → 58 base32 characters

_NA = NA_PREFIX.encode()
_PLAIN = re.compile(rb"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_APEX_LABEL = re.compile(rb"[a-z0-9_-]{1,63}\Z")
_NAME_CHARS = re.compile(rb"[a-z0-9_.-]*\Z")  # "_": apex labels may hold it (_APEX_LABEL)


def to_dns_name(identifier: str, apex: str = DEFAULT_APEX, *, case_sensitive: bool = False) -> str:
    """The DNS name of ``identifier`` under ``apex`` (absolute, lower-case, ``.``-terminated).

    Raises ``InvalidIdentifier`` for an invalid identifier or one too long for a DNS name,
    ``ValueError`` for a bad apex.
    """
    apex_labels = _apex(apex)
    key = key_of(identifier, case_sensitive=case_sensitive)
    prefix, _, suffix = key.partition(b"/")
    labels = _suffix_labels(suffix, case_sensitive and prefix != _NA)
    labels += [_prefix_label(seg) for seg in reversed(prefix.split(b"."))]
    labels += apex_labels
    wire = 1 + sum(1 + len(label) for label in labels)
    if wire > MAX_NAME_WIRE:
        raise InvalidIdentifier(f"Handle too long for a DNS name ({wire} octets > {MAX_NAME_WIRE})")
    return (b".".join(labels) + b".").decode("ascii")


def from_dns_name(
    name: str, apex: str = DEFAULT_APEX, *, case_sensitive: bool = False
) -> str | None:
    """The canonical identifier (its key as text) named by ``name``, or ``None`` if ``name`` is
    not under ``apex`` or is not a name ``to_dns_name`` produces.  ``ValueError``: bad apex."""
    own = _own_labels(name, apex)
    if own is None or len(own) < 2:  # a suffix and at least one prefix segment
        return None
    data = b".".join(own + list(_apex(apex)))
    key = _decode(own, case_sensitive)
    if key is None:
        return None
    try:
        text = key.decode("utf-8")
        again = to_dns_name(text, apex, case_sensitive=case_sensitive)
    except (UnicodeDecodeError, InvalidIdentifier):
        return None
    if again.encode("ascii") != data + b".":
        return None
    return key_of(text, case_sensitive=case_sensitive).decode("utf-8")


def prefix_of_dns_name(name: str, apex: str = DEFAULT_APEX) -> str | None:
    """The prefix (its key as text, upper-cased) whose segments are *all* the labels of
    ``name`` under ``apex`` — ``88.id.idnode.test.`` → ``88``, ``8.118.88.id.idnode.test.`` →
    ``88.118.8`` — or ``None`` if ``name`` is not under ``apex``, is the apex, or has a label
    ``to_dns_name`` would not write for a prefix segment.  The DNS front-end asks this of a name
    that names no identifier: if that prefix is held, or is an ancestor of one held, the name is
    an empty non-terminal (RFC 8020 §2: NODATA, never NXDOMAIN, or a resolver that minimises
    QNAMEs, RFC 9156, would give up on every name below it)."""
    own = _own_labels(name, apex)
    if not own:
        return None
    segments = []
    for label in reversed(own):
        segment = _unb32(label[4:]) if label.startswith(PREFIX_B32) else label
        if not segment:
            return None
        segment = segment.upper()  # a key's prefix is ASCII-upper-cased (identifier.key_of)
        try:
            if _prefix_label(segment) != label:  # canonical labels only
                return None
        except InvalidIdentifier:
            return None
        segments.append(segment)
    try:
        return b".".join(segments).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _own_labels(name: str, apex: str) -> list[bytes] | None:
    """The labels of ``name`` left of ``apex``, lower-cased (``[]`` for the apex itself), or
    None when ``name`` is not under ``apex`` or has characters no mapped name has."""
    apex_labels = _apex(apex)
    try:
        data = name.encode("ascii").lower()
    except UnicodeEncodeError:
        return None
    if data.endswith(b"."):
        data = data[:-1]
    if not data or not _NAME_CHARS.match(data):
        return None
    labels = data.split(b".")
    own = len(labels) - len(apex_labels)
    if own < 0 or tuple(labels[own:]) != apex_labels:
        return None
    return labels[:own]


# -- encoding -----------------------------------------------------------------------------------


def _plain(label: bytes) -> bool:
    return _PLAIN.match(label) is not None and label[2:4] != b"--"


def _b32(data: bytes) -> bytes:
    return base64.b32encode(data).rstrip(b"=").lower()


def _suffix_labels(suffix: bytes, case_sensitive: bool) -> list[bytes]:
    lower = suffix.lower()  # bytes.lower folds ASCII only, like the key's upper-casing
    if _plain(suffix if case_sensitive else lower):
        return [lower]
    # Case-sensitive and not plain: upper-case letters only (the IDIS habit) stay readable.
    if case_sensitive and suffix == suffix.upper() and len(lower) <= B32_PER_LABEL \
            and _plain(lower):  # fmt: skip
        return [SUFFIX_UPPER + lower]
    text = _b32(suffix)
    return [SUFFIX_B32 + text[i : i + B32_PER_LABEL] for i in range(0, len(text), B32_PER_LABEL)]


def _prefix_label(segment: bytes) -> bytes:
    lower = segment.lower()
    if _plain(lower):
        return lower
    if len(segment) <= PREFIX_B32_MAX_BYTES:
        return PREFIX_B32 + _b32(segment)
    raise InvalidIdentifier(
        "Prefix segment too long for a DNS name (a label holds 63 letters, digits and "
        f"hyphens, or {PREFIX_B32_MAX_BYTES} bytes of anything else)"
    )


# -- decoding (then re-encoded by from_dns_name, so it may be lenient) ---------------------------


def _unb32(text: bytes) -> bytes | None:
    try:
        return base64.b32decode(text.upper() + b"=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None


def _decode(labels: list[bytes], case_sensitive: bool) -> bytes | None:
    n, first = 1, labels[0]
    if first.startswith(SUFFIX_B32):
        while n < len(labels) and labels[n].startswith(SUFFIX_B32):
            n += 1
        suffix = _unb32(b"".join(label[4:] for label in labels[:n]))
    elif first.startswith(SUFFIX_UPPER):
        suffix = first[4:].upper()
    else:
        suffix = first  # plain: its case is settled below, once the prefix is known
    if suffix is None or n == len(labels):
        return None
    segments = []
    for label in reversed(labels[n:]):
        segment = _unb32(label[4:]) if label.startswith(PREFIX_B32) else label.upper()
        if segment is None:
            return None
        segments.append(segment)
    prefix = b".".join(segments)
    if suffix is first and (not case_sensitive or prefix == _NA):
        suffix = suffix.upper()
    return prefix + b"/" + suffix


@functools.lru_cache(maxsize=64)
def _apex(apex: str) -> tuple[bytes, ...]:
    """``apex`` → its labels, lower-cased (``()`` for the root); ``ValueError`` if not valid."""
    try:
        data = apex.encode("ascii").lower()
    except UnicodeEncodeError:
        raise ValueError(f"DNS apex {apex!r}: ASCII letters, digits, '-' and '_' only") from None
    if not data:
        raise ValueError("DNS apex is empty (use '.' for the root)")
    if data == b".":
        return ()
    if data.endswith(b"."):
        data = data[:-1]
    labels = data.split(b".")
    if not all(_APEX_LABEL.match(label) for label in labels):
        raise ValueError(f"DNS apex {apex!r}: labels are 1-63 of letters, digits, '-' and '_'")
    if 1 + sum(1 + len(label) for label in labels) > MAX_NAME_WIRE - 4:
        raise ValueError(f"DNS apex {apex!r} leaves no room for identifiers")
    return tuple(labels)
