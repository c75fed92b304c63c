"""Statistics for owners and server admins: the node's counters (schema.STATS) read back and
summed per prefix, per enterprise and per hour (issue 7 §6; idis.md §1.4 statistics; Crossref's
per-prefix resolution report).

``Statistics(registry).report(identity, prefix, first_hour, last_hour)`` → a JSON-able dict::

    {"prefix": "88.118" | null, "from": ISO, "to": ISO,          # [from, to): whole UTC hours
     "totals": FIGURES,
     "prefixes":    [{"prefix": "88.118.8", "org": "Example Co" | null, **FIGURES}, ...],
     "enterprises": [{"org": "Example Co", "prefixes": ["88.118.8"], **FIGURES}, ...],
     "hours": [{"hour": ISO, **FIGURES}, ...]}                    # with series="hour" only

    FIGURES = {"registrations": {"created": n, "updated": n, "deleted": n},
               "resolutions": {"total": n, "http": {"ok": n, ...}, "handle": {...},
                               "dns": {...}},                     # by front-end and outcome
               "upstream": {"queries": n}}

Outcomes are ``resolver.errors.Outcome`` values (``ok``, ``not_found``, ``prefix_referral``…);
absent ones are zero.  Prefixes are the normalised ones (what the store keys by); an
enterprise is the organisation named by the ``ORG`` value of its prefix handles
(``registry.operator``); prefixes without one (the node's own) are listed but form no
enterprise.

Who sees what: ``prefix=None`` (the whole node, including requests that named no valid
identifier, listed under the prefix ``""``) is for server admins; a prefix is for server admins
and its owners — an identity that an HS_ADMIN value of ``0.NA/<prefix>`` or of a held ancestor
prefix handle reaches (directly or through HS_VLIST groups), with any right.  The report then
covers that prefix and every prefix derived from it.  Foreign prefixes (identifiers resolved
upstream) have no owner here: server admins only.
"""

from __future__ import annotations

import datetime

from registry.authz import Perm
from registry.operator import ORG_TYPE
from registry.service import OPERATOR
from resolver.errors import AuthenticationNeeded, Forbidden, InvalidIdentifier, MalformedRequest
from resolver.identifier import ancestry
from resolver.record import unpack

SERIES = ("hour",)
_FAMILIES = {"reg": "registrations", "res": "resolutions", "up": "upstream"}
_REGISTRATION = {"create": "created", "update": "updated", "delete": "deleted"}
_UPSTREAM = {"query": "queries"}
#: Hours the store's u32 hour key can hold.
MAX_HOUR = 0xFFFFFFFF


def hour_text(hour: int) -> str:
    """UTC ISO 8601 of the start of ``hour`` (hours since 1970)."""
    return datetime.datetime.fromtimestamp(hour * 3600, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_figures() -> dict:
    return {"registrations": dict.fromkeys(_REGISTRATION.values(), 0),
            "resolutions": {"total": 0}, "upstream": dict.fromkeys(_UPSTREAM.values(), 0)}


def add_metric(figures: dict, metric: bytes, n: int) -> None:
    """Add a counter (``reg.create``, ``res.dns.ok``, ``up.query``) to ``figures``."""
    family, _, rest = metric.decode("ascii", "replace").partition(".")
    if family == "reg" and rest in _REGISTRATION:
        figures["registrations"][_REGISTRATION[rest]] += n
    elif family == "res" and "." in rest:
        frontend, _, outcome = rest.partition(".")
        res = figures["resolutions"]
        res["total"] += n
        by = res.setdefault(frontend, {})
        by[outcome] = by.get(outcome, 0) + n
    elif family == "up" and rest in _UPSTREAM:
        figures["upstream"][_UPSTREAM[rest]] += n
    else:  # a counter this version does not know (written by a newer one): shown as is
        other = figures.setdefault("other", {})
        other[metric.decode("ascii", "replace")] = other.get(metric.decode("ascii", "replace"),
                                                              0) + n  # fmt: skip


class Statistics:
    """Reads the counters of one registration service's store (module docstring)."""

    def __init__(self, registry) -> None:
        self.registry = registry
        self.store = registry.store

    def report(self, identity, prefix: str | None, first_hour: int, last_hour: int, *,
               series: str | None = None) -> dict:  # fmt: skip
        """The report of ``prefix`` (None: the whole node) over the hours ``first_hour`` to
        ``last_hour`` inclusive.  Raises ``AuthenticationNeeded`` / ``Forbidden`` /
        ``InvalidIdentifier`` (a bad prefix) / ``MalformedRequest`` (a bad range or series)."""
        if not 0 <= first_hour <= last_hour + 1 or last_hour > MAX_HOUR:
            raise MalformedRequest("'from' must not be after 'to'")
        if series is not None and series not in SERIES:
            raise MalformedRequest(f"series must be one of {', '.join(SERIES)}")
        key = None if prefix is None else self._prefix_key(prefix)
        self._authorize(identity, key)
        rows = list(self.store.stats(key, first_hour, last_hour)) if first_hour <= last_hour \
            else []  # fmt: skip
        orgs = self._orgs({p for p, _, _, _ in rows} | ({key} if key else set()))
        totals, per_prefix, hours = empty_figures(), {}, {}
        for p, hour, metric, n in rows:
            add_metric(totals, metric, n)
            add_metric(per_prefix.setdefault(p, empty_figures()), metric, n)
            if series == "hour":
                add_metric(hours.setdefault(hour, empty_figures()), metric, n)
        prefixes = [{"prefix": p.decode("utf-8", "replace"), "org": orgs.get(p), **figs}
                    for p, figs in sorted(per_prefix.items())]  # fmt: skip
        enterprises: dict[str, dict] = {}
        for entry in prefixes:
            org = entry["org"]
            if org is None:
                continue
            ent = enterprises.setdefault(org, {"org": org, "prefixes": [], **empty_figures()})
            ent["prefixes"].append(entry["prefix"])
        for p, _hour, metric, n in rows:
            org = orgs.get(p)
            if org is not None:
                add_metric(enterprises[org], metric, n)
        out = {"prefix": None if key is None else key.decode("utf-8"),
               "from": hour_text(first_hour), "to": hour_text(last_hour + 1),
               "totals": totals, "prefixes": prefixes,
               "enterprises": sorted(enterprises.values(), key=lambda e: e["org"])}  # fmt: skip
        if series == "hour":
            out["hours"] = [{"hour": hour_text(h), **figs} for h, figs in sorted(hours.items())]
        return out

    # -- who and what --------------------------------------------------------------------------
    def _prefix_key(self, prefix: str) -> bytes:
        name = prefix[5:] if prefix.upper().startswith("0.NA/") else prefix
        if not name or "/" in name:
            raise InvalidIdentifier(f"{prefix[:64]!r} is not a prefix")
        return self.registry.parse(f"0.NA/{name}").suffix_key

    def _authorize(self, identity, key: bytes | None) -> None:
        if identity is None:
            raise AuthenticationNeeded("Authentication needed to read statistics")
        if identity is OPERATOR:
            return
        with self.store.view() as view:
            authz = self.registry._authorizer(view)
            if authz.is_server_admin(identity):
                return
            if key is None:
                raise Forbidden(f"{identity} may not read the node's statistics: server admins "
                                "only; owners ask for their prefix")  # fmt: skip
            for candidate in ancestry(key):
                blob = view.get_prefix(candidate) or view.get_disabled(candidate)
                if blob is not None and authz.rights(identity, unpack(bytes(blob))) != Perm(0):
                    return
        raise Forbidden(f"{identity} may not read the statistics of {key.decode('utf-8')}: "
                        "its owners (HS_ADMIN of its prefix handle) and server admins only")

    def _orgs(self, keys: set[bytes]) -> dict[bytes, str]:
        """The organisation of each prefix held (homed or disabled) that names one."""
        out = {}
        with self.store.view() as view:
            for key in keys:
                blob = (view.get_prefix(key) or view.get_disabled(key)) if key else None
                if blob is None:
                    continue
                org = next((v.data.decode("utf-8", "replace") for v in unpack(bytes(blob))
                            if v.has_type(ORG_TYPE)), None)  # fmt: skip
                if org is not None:
                    out[key] = org
        return out
