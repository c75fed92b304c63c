"""Identifiers: parse, validate and normalise ``prefix/suffix`` handles (handle.md §1).

Owns ``Identifier`` — the handle exactly as the client wrote it, its storage key, prefix and
suffix — and prefix ancestry for longest-prefix matching.  Validity and the key come from
``native.normalize_key`` so both hot-path twins and the general path share one rule; this
module only adds a human reason when the rule says no.  Imports ``errors`` and ``native``.
"""

from __future__ import annotations

import dataclasses

import native
from resolver.errors import InvalidIdentifier

MAX_HANDLE = 2048
MAX_PREFIX = 255
NA_PREFIX = "0.NA"


@dataclasses.dataclass(frozen=True, slots=True)
class Identifier:
    """A valid handle.  ``text`` echoes the client; ``key`` is what the store is keyed by."""

    text: str
    key: bytes

    @classmethod
    def parse(cls, raw: str | bytes, *, case_sensitive: bool = False) -> "Identifier":
        """Validate ``raw`` (str, or bytes that must be UTF-8); raise ``InvalidIdentifier``."""
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
        key = native.normalize_key(data, case_sensitive)
        if key is None:
            raise InvalidIdentifier(explain_invalid(data))
        return cls(data.decode("utf-8"), key)

    @property
    def prefix_key(self) -> bytes:
        """Normalised prefix (``88.118.8``), the key of the ``prefixes`` database."""
        return self.key[: self.key.find(b"/")]

    @property
    def suffix_key(self) -> bytes:
        return self.key[self.key.find(b"/") + 1 :]

    @property
    def is_prefix_handle(self) -> bool:
        """True for ``0.NA/<prefix>`` — the handle that describes a prefix."""
        return self.prefix_key == NA_PREFIX.encode()

    @property
    def prefix(self) -> str:
        """The prefix as written (``0.NA`` for a name that had no ``/``)."""
        return self.text.partition("/")[0] if "/" in self.text else NA_PREFIX

    def __str__(self) -> str:
        return self.text


def key_of(raw: str, *, case_sensitive: bool = False) -> bytes:
    """Just the storage key of a handle (bulk paths: no ``Identifier`` object); the same rule
    and errors as ``Identifier.parse``."""
    data = raw.encode("utf-8", "surrogatepass")
    key = native.normalize_key(data, case_sensitive)
    if key is None:
        raise InvalidIdentifier(explain_invalid(data))
    return key


def ancestry(prefix: bytes) -> list[bytes]:
    """``88.118.8`` → ``[88.118.8, 88.118, 88]``: the candidates of a longest-prefix match."""
    out = [prefix]
    while b"." in prefix:
        prefix = prefix.rpartition(b".")[0]
        out.append(prefix)
    return out


def explain_invalid(data: bytes) -> str:
    """Why ``native.normalize_key`` refused ``data`` (for error messages only)."""
    if not data:
        return "Empty handle invalid"
    if len(data) > MAX_HANDLE:
        return f"Handle longer than {MAX_HANDLE} bytes"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "Handle is not valid UTF-8"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text):
        return "Handle contains a control character"
    prefix, slash, suffix = text.partition("/")
    if slash and not suffix:
        return "Handle has an empty suffix"
    if len(prefix.encode()) > MAX_PREFIX:
        return f"Prefix longer than {MAX_PREFIX} bytes"
    if not prefix or "" in prefix.split("."):
        return "Prefix has an empty segment"
    return "Invalid handle"
