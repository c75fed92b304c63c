"""Where an identifier sends a browser: the first URL value, or the ``10320/loc`` selection of
the Handle.net proxy (handle.md §2.2 type table; Technical Manual v9 §12).  Pure: values in, a
choice out; the client's country, address and the random source are handed in.

Owns ``choose`` (the redirect target), ``url_like`` (every URL-like value and location, for
the linkset), the ``10320/loc`` reader ``parse``, and ``to_uri`` (a target as a header-safe URI).

``10320/loc`` data (UTF-8 XML)::

    <locations chooseby="locatt,country,weighted">
      <location href="https://eu.example.com/x" weight="1" country="DE" id="0"/>
      <location href="https://cn.example.com/x" weight="2" country="CN" view="text"/>
    </locations>

* ``chooseby`` (or ``choose_by``) on the root lists the selection steps, applied in order;
  default ``locatt,address,country,score,weighted`` (the reference proxy's ``DEFAULT_CHOOSEBY``).
  Whenever one candidate is left it is the answer; after the last step, ``weighted``.
  - ``locatt``: each ``locatt`` request parameter ``name:value`` (or ``name``) keeps the
    locations whose attribute ``name`` equals ``value`` (or exists); no match keeps all.
  - ``address``: locations whose ``addresses`` (comma-separated CIDRs) hold the client's IP.
  - ``country``: locations whose ``country`` equals the client's country (case-insensitive);
    an unknown client country, or no match, keeps all.
  - ``score``: the locations with the highest ``score`` (default 0).
  - ``weighted``: a random pick in proportion to ``weight`` (default 1; negative counts as 0,
    a zero weight is never picked unless every weight is zero, then the pick is uniform).
* ``href_template`` stands in for a missing ``href``: ``{hdl}`` becomes the identifier
  percent-encoded as one URL component, ``{hdl:path}`` encoded as a path.
* With a ``10320/loc`` value present, URL values join the candidates as the reference's
  "legacy" locations: plain ``URL`` with weight ``urlWeight`` (root attribute; default 0 when a
  ``10320/loc`` parsed, 1 when none did), ``URL.*`` sub-types with ``urlSubtypeWeight`` (default
  0; ``urlWeight`` when there is no plain URL); ``no_legacy="true"`` leaves them out.
* Without one: the ``URL`` value of lowest index, else the ``URL.*`` sub-type of lowest index.

Not taken from the reference: namespace locations (``HS_NAMESPACE``, ``include``), ``http_sc``
(the redirect status is always 302), content negotiation by ``http_role``, GeoIP (the country
comes from a request header, see ``resolver.servers.http_proxy``).  A ``10320/loc`` value that
is not well-formed XML, or declares a DTD (entity expansion), is ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random as _random
import xml.etree.ElementTree as ET
from typing import Callable, Iterable
from urllib.parse import quote

from resolver.values import HandleValue

LOC_TYPE = "10320/loc"
URL_TYPE = "URL"
#: Value types whose data names the identified thing by URI (shown as links, in the linkset).
URI_TYPES = ("URL", "URN", "URI")
DEFAULT_CHOOSEBY = ("locatt", "address", "country", "score", "weighted")


@dataclasses.dataclass(frozen=True, slots=True)
class Location:
    """One candidate target.  ``index``/``type``: the value it came from; ``legacy``: a URL value
    rather than a ``<location>``; ``attributes``: the element's attributes, names lower-cased."""

    href: str
    weight: float = 1.0
    index: int = 0
    type: str = LOC_TYPE
    legacy: bool = False
    attributes: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.attributes:
            if k == name:
                return v
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class LocationSet:
    """One parsed ``10320/loc`` value: its root attributes (names lower-cased) and locations."""

    attributes: tuple[tuple[str, str], ...]
    locations: tuple[Location, ...]

    def attribute(self, name: str) -> str | None:
        for k, v in self.attributes:
            if k == name:
                return v
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Client:
    """What a selection may know of the client: ISO 3166 country code, IP address, and the
    ``locatt`` request parameters."""

    country: str | None = None
    address: str | None = None
    locatt: tuple[str, ...] = ()


def has_type(v: HandleValue, name: str) -> bool:
    """``name`` or a sub-type ``name.x`` of it, ASCII case-insensitive (handle.md §2.1)."""
    t = v.type.upper()
    n = name.upper()
    return t == n or t.startswith(n + ".")


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace").strip()


def parse(data: bytes, handle: str = "", index: int = 0) -> LocationSet | None:
    """A ``10320/loc`` value's XML, or None when it is not usable (see the module docstring)."""
    upper = data.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        return None
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    locs = []
    for el in root:
        if not isinstance(el.tag, str) or el.tag.lower() != "location":
            continue
        attrs = tuple((k.lower(), v) for k, v in el.attrib.items())
        loc = dict(attrs)
        href = loc.get("href")
        if href is None and "href_template" in loc:
            href = (loc["href_template"].replace("{hdl}", quote(handle, safe=""))
                    .replace("{hdl:path}", quote(handle, safe="/")))  # fmt: skip
        if not href:
            continue
        locs.append(Location(href.strip(), _weight(loc.get("weight"), 1.0), index, LOC_TYPE,
                             False, attrs))  # fmt: skip
    return LocationSet(tuple((k.lower(), v) for k, v in root.attrib.items()), tuple(locs))


def _weight(text: str | None, default: float) -> float:
    if text is None:
        return default
    try:
        w = float(text)
    except ValueError:
        return default
    return w if w == w and w not in (float("inf"), float("-inf")) else default


def _by_index(values: Iterable[HandleValue]) -> list[HandleValue]:
    return sorted(values, key=lambda v: v.index)


def first_url(values: Iterable[HandleValue]) -> Location | None:
    """The plain ``URL`` value of lowest index, else the ``URL.*`` sub-type of lowest index."""
    ordered = _by_index(values)
    for exact in (True, False):
        for v in ordered:
            if (v.type.upper() == URL_TYPE) if exact else has_type(v, URL_TYPE):
                href = _text(v.data)
                if href:
                    return Location(href, 1.0, v.index, v.type, True)
    return None


def candidates(values: Iterable[HandleValue], handle: str = ""
               ) -> tuple[tuple[str, ...], list[Location]] | None:  # fmt: skip
    """The selection steps and candidate locations when a ``10320/loc`` value is present;
    None when there is none (then the first URL value is the target)."""
    ordered = _by_index(values)
    loc_values = [v for v in ordered if has_type(v, LOC_TYPE)]
    if not loc_values:
        return None
    sets = [s for v in loc_values if (s := parse(v.data, handle, v.index)) is not None]
    locations = [loc for s in sets for loc in s.locations]

    def setting(name: str) -> str | None:  # the first set that says, as the reference
        return next((a for s in sets if (a := s.attribute(name)) is not None), None)

    chooseby_text = setting("choose_by") or setting("chooseby")
    chooseby = (tuple(x.strip().lower() for x in chooseby_text.split(","))
                if chooseby_text is not None else DEFAULT_CHOOSEBY)  # fmt: skip
    if (setting("no_legacy") or "").lower() != "true":
        urls = [v for v in ordered if has_type(v, URL_TYPE)]
        has_plain = any(v.type.upper() == URL_TYPE for v in urls)
        url_weight = _weight(setting("urlweight"), 0.0 if sets else 1.0)
        sub_weight = _weight(setting("urlsubtypeweight"), 0.0) if has_plain else url_weight
        for v in urls:
            href = _text(v.data)
            if href:
                w = url_weight if v.type.upper() == URL_TYPE else sub_weight
                locations.append(Location(href, w, v.index, v.type, True))
    return chooseby, locations


def choose(values: Iterable[HandleValue], client: Client = Client(), handle: str = "",
           rand: Callable[[], float] = _random.random) -> Location | None:  # fmt: skip
    """The redirect target of a record's (public) values, or None when there is none.
    ``rand`` returns a float in [0, 1): inject a fixed one for a deterministic pick."""
    values = tuple(values)
    found = candidates(values, handle)
    if found is None:
        return first_url(values)
    chooseby, locations = found
    for step in chooseby:
        if len(locations) <= 1:
            break
        if step == "locatt":
            for param in client.locatt:
                locations = _keep(locations, _by_locatt(locations, param))
        elif step == "address":
            locations = _keep(locations, _by_address(locations, client.address))
        elif step == "country":
            locations = _keep(locations, _by_country(locations, client.country))
        elif step == "score":
            locations = _by_score(locations)
        elif step == "weighted":
            break
    if not locations:
        return None
    if len(locations) == 1:
        return locations[0]
    return weighted(locations, rand)


def _keep(current: list[Location], narrowed: list[Location]) -> list[Location]:
    # A filter that matches nothing does not filter (reference chooseLocationFromValue).
    return narrowed or current


def _by_locatt(locations: list[Location], param: str) -> list[Location]:
    name, colon, want = param.partition(":")
    name = name.strip()
    return [loc for loc in locations
            if (got := loc.attribute(name)) is not None and (not colon or got == want)]  # fmt: skip


def _by_address(locations: list[Location], address: str | None) -> list[Location]:
    if not address:
        return []
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return []
    out = []
    for loc in locations:
        for cidr in (loc.attribute("addresses") or "").split(","):
            try:
                net = ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                continue
            if ip.version == net.version and ip in net:
                out.append(loc)
                break
    return out


def _by_country(locations: list[Location], country: str | None) -> list[Location]:
    if not country:
        return []
    c = country.strip().upper()
    return [loc for loc in locations if (loc.attribute("country") or "").strip().upper() == c]


def _by_score(locations: list[Location]) -> list[Location]:
    scores = [_weight(loc.attribute("score"), 0.0) for loc in locations]
    best = max(scores)
    return [loc for loc, s in zip(locations, scores) if s == best]


def weighted(locations: list[Location], rand: Callable[[], float] = _random.random) -> Location:
    """A pick in proportion to the weights, in document order: ``rand() * total`` falls in the
    span of one location (zero-weight locations have none); all zero → uniform."""
    weights = [max(0.0, loc.weight) for loc in locations]
    total = sum(weights)
    if total <= 0:
        return locations[min(int(rand() * len(locations)), len(locations) - 1)]
    r = rand() * total
    acc = 0.0
    for loc, w in zip(locations, weights):
        acc += w
        if w > 0 and r < acc:
            return loc
    return next(loc for loc, w in zip(reversed(locations), reversed(weights)) if w > 0)


def url_like(values: Iterable[HandleValue], handle: str = "") -> list[Location]:
    """Every URL-like target of a record, by value index: ``URL``/``URN``/``URI`` values (and
    their sub-types) and the locations of ``10320/loc`` values, duplicates of an href dropped."""
    out: list[Location] = []
    seen: set[str] = set()
    for v in _by_index(values):
        if has_type(v, LOC_TYPE):
            parsed = parse(v.data, handle, v.index)
            found = list(parsed.locations) if parsed is not None else []
        elif any(has_type(v, t) for t in URI_TYPES):
            href = _text(v.data)
            found = [Location(href, 1.0, v.index, v.type, True)] if href else []
        else:
            continue
        for loc in found:
            if loc.href not in seen:
                seen.add(loc.href)
                out.append(loc)
    return out


#: Characters an IRI keeps when made a URI: RFC 3986 reserved and unreserved, and ``%`` so that
#: escapes already present stay as they are.
_URI_SAFE = "!#$%&'()*+,/:;=?@[]~"


def to_uri(href: str) -> str:
    """An IRI as a URI (RFC 3987 §3.1): non-ASCII as UTF-8 percent-escapes; spaces and control
    characters escaped too, so a value can never split an HTTP header (``Location``, ``Link``)."""
    return quote(href, safe=_URI_SAFE)
