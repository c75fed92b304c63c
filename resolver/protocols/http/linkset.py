"""RFC 9264 linksets (``application/linkset+json``) of an identifier's URL-like values.

Owns the relation types the proxy uses and the JSON shape.  One context object per identifier::

    {"linkset": [{
        "anchor": "https://node.example/88.118.8/demo-1",
        "alternate": [{"href": "https://example.com/sn/demo-1", "title": "URL, index 1"}],
        "describedby": [{"href": "https://node.example/api/handles/88.118.8/demo-1",
                         "type": "application/json"}]
    }]}

* ``anchor``: this node's proxy URL of the identifier (``GET /{identifier}``).
* ``alternate`` (IANA link relation, HTML §4.6.7): every URL-like target of the record —
  ``URL``/``URN``/``URI`` values and the ``href`` of each ``10320/loc`` location, in value-index
  order.  Each is a place the identified thing can be reached under; the proxy redirects a
  browser to one of them (``resolver.core.locations``).  ``item`` (RFC 6573) would claim the
  identifier names a collection, which it need not.
* ``describedby`` (IANA, POWDER): the identifier's Handle record in the REST JSON
  (``/api/handles/{identifier}``), type ``application/json`` — the metadata about the thing.
* Target attribute ``title``: the value type and index the target came from.

Relations with no target are left out (RFC 9264 §4.2.2: a relation member holds a non-empty
array).  Hrefs are URIs: the caller turns IRIs into URIs first.  Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import orjson

CONTENT_TYPE = "application/linkset+json"
#: The relation of each URL-like target of the record.
TARGET_REL = "alternate"
#: The relation of the record's REST JSON.
RECORD_REL = "describedby"


@dataclasses.dataclass(frozen=True, slots=True)
class Link:
    """One link from the anchor: relation type, target URI, optional target attributes."""

    rel: str
    href: str
    title: str | None = None
    type: str | None = None


def record_links(targets: Iterable[tuple[str, str]], record_href: str) -> list[Link]:
    """The links of an identifier: ``(href, title)`` per URL-like target, then its record."""
    links = [Link(TARGET_REL, href, title) for href, title in targets]
    links.append(Link(RECORD_REL, record_href, None, "application/json"))
    return links


def linkset(anchor: str, links: Iterable[Link]) -> dict:
    """The RFC 9264 JSON document: one context object for ``anchor``, relations in the order
    they first appear in ``links``."""
    context: dict = {"anchor": anchor}
    for link in links:
        target: dict = {"href": link.href}
        if link.title is not None:
            target["title"] = link.title
        if link.type is not None:
            target["type"] = link.type
        context.setdefault(link.rel, []).append(target)
    return {"linkset": [context]}


def body(anchor: str, links: Iterable[Link]) -> bytes:
    return orjson.dumps(linkset(anchor, links))
