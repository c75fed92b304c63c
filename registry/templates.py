"""Metadata templates (IDIS 元数据模板, idis.md §1.5): definition, storage, lifecycle, and the
validation of every identifier that names one.

Owns ``Template`` / ``Field`` (the model), ``parse_definition`` (a definition as the REST API
takes it), ``Templates`` (management for server and enterprise admins, and ``apply``: the check
run inside every registration write), the unique-value index, and the reference an instance
carries (``TEMPLATE_INDEX``, ``template_value``).  The read-side rule the field grades feed is
``resolver.core.grading``.

Model
-----
A template has a *scope* — an enterprise prefix (``88.118.8``) whose identifiers may use it, or
``node``: a server admin's template usable under every prefix — a *name* (``[A-Za-z0-9]``
then ``[A-Za-z0-9_.-]``, at most 64), a *version* (1, 2, 3 …: each ``define`` of an existing
name makes the next one), a description, an optional GB/T 4754 industry code (``C``,
``C/38``, ``C/38/384``, ``C/38/384/3841``: section, division, group, class, each extending the
previous), a *state* and its *fields*:

===========  =====================================================================================
name         1–128 characters, unique in the template
type         ``char`` (``maxLength`` ≤ 4000, default 4000; ``minLength`` default 0: characters,
             not bytes), ``numeric`` (``precision`` = most digits in all ≤ 38, default 38;
             ``scale`` = most digits after the point, default 0: SQL NUMERIC(p, s); plain
             decimal text ``[+-]digits[.digits]``), ``date`` (``YYYY-MM-DD``, a real date),
             ``url`` (absolute ``http``, ``https`` or ``ftp`` URL with a host, ≤ 4000
             characters), ``enum`` (``values``: 1–1000 distinct non-empty strings)
index        ≥ 2000 (IDIS: template attributes start at 2000, idis.md §1.3), unique in the
             template; default 2000 + the field's position
valueType    the Handle value ``type`` the field is stored under (default: the name); not
             ``HS_*``, not ``TEMPLATE``; unique in the template
required     bool (default false): a value at the index must be present and not empty
unique       bool (default false): no other identifier under the same prefix that uses a
             template of the same scope and name has the same value at that index
grade        ``general`` (default) | ``important`` | ``core`` (GB/T 43697-2024)
description  optional, ≤ 1024 characters
===========  =====================================================================================

Lifecycle: ``draft`` → ``published`` → ``withdrawn`` → ``published`` …  Only a published
template accepts new instances; instances of a withdrawn template stay readable and may be
changed and deleted.  Only a draft may be deleted (instances may name any other version).  A
version's fields never change once defined — the state is the only thing that does — which is
what makes caching parsed templates safe (the cache is also checked against the stored bytes).
Version numbers are max + 1 of the versions stored, so deleting the newest draft frees its
number; drafts have no instances, so nothing can name the freed number.

Who: a server admin (``Authorizer.is_server_admin``) or the local ``OPERATOR`` for any scope;
for a prefix scope also its enterprise admins — identities the authorizer allows to create
``<prefix>/<new suffix>`` (ADD_HANDLE in an HS_ADMIN of ``0.NA/<prefix>``, handle.md §5: the
registry's own rule for creating under that prefix).  Published and withdrawn templates are
readable by anyone (clients need the schema to read instances); drafts only by those who may
manage the scope.  A prefix scope must be homed here.

Stored (``meta`` database, in ``LmdbStore.update`` write transactions)::

    template:<scope>:<name>:<version, 10 digits>   orjson {"scope","name","version","state",
        "description","industry","fields":[…],"created","updated","author"}
    uniq:<prefix>:<scope>/<name>:<index>:<32 hex>  u64 LMDB write-txn id + identifier key

``<scope>`` is ``node`` or the normalised prefix; the 32 hex digits are the first 16 bytes of
SHA-256 of the value's canonical text (numeric: the normalised decimal, ``1.50`` = ``1.5``;
others: the data as stored).  Departure from "unique within the prefix": the unique index is
per template *scope/name* too (two templates of one prefix may both keep, say, a serial
number at 2001 without clashing); it spans every version of the name.

Instances
---------
An identifier is an instance when its value at ``TEMPLATE_INDEX`` (1001, type ``TEMPLATE``,
the IDIS convention, idis.md §1.3) holds ``<scope>/<name>/<version>``: ``88.118.8/battery/2``,
``node/steel/1``.  ``Templates.apply(view, ident, record, old)`` runs inside every write plan
(registry.service create/replace, add/modify/remove values, batch items, delete; the import
engine per line) and:

* returns ``record`` untouched when neither it nor ``old`` has a value at 1001 (one scan each);
* refuses (one ``TemplateViolation``, every violation a ``FieldError``): a value at 1001 not of
  type TEMPLATE or not naming a template; a template that does not exist, belongs to another
  prefix, or is not published (a withdrawn one is accepted only if ``old`` already named it);
  removing the 1001 value from an instance (delete the identifier instead); a value at an index
  ≥ 2000 that is not a field, or not of the field's value type; a value that does not fit its
  field; a missing or empty required field; a unique value another identifier holds;
* returns the record with the permissions of important and core fields set by
  ``grading.permissions_for`` (public read and write cleared, admin read and write set);
* maintains the unique index in the same transaction (entries of ``old`` no longer present are
  freed; a deletion, ``record=None``, frees them all).

Error paths are relative to the request body: ``values[<position in the given list>]`` plus
``.index``, ``.type`` or ``.data.value``, or ``values`` for what is missing (required fields,
the removed 1001 value).  ``given`` names that list when it is not ``record`` itself (adding
values to an existing record); values not in it are reported at ``values``.

The unique index tolerates writers that bypass templates (``idnode load``; an import line
whose insert is refused because the identifier exists): an entry committed by an earlier
transaction counts only while the identifier it names still holds that value under that
template; an entry written by the current transaction always counts (the records of the
transaction's earlier items are not visible to it until commit).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re
import struct
import time
from decimal import Decimal, InvalidOperation
from typing import Callable, Iterable, Sequence
from urllib.parse import urlsplit

import orjson

from registry.authz import Authorizer, Identity, Op
from resolver.core.grading import Grade, permissions_for
from resolver.errors import (
    AuthenticationNeeded, FieldError, Forbidden, HandleNotFound, InvalidIdentifier,
    MalformedRequest, NotResponsible, StoreError, TemplateViolation,
)  # fmt: skip
from resolver.identifier import Identifier
from resolver.record import Record, unpack
from resolver.store.lmdb_store import LmdbStore
from resolver.values import HandleValue

#: Where an instance names its template, and the value type (IDIS, idis.md §1.3).
TEMPLATE_INDEX = 1001
TEMPLATE_TYPE = "TEMPLATE"
#: Template fields live at this index and above (IDIS).
FIRST_FIELD_INDEX = 2000
MAX_INDEX = 0x7FFFFFFF
#: The scope of templates every prefix may use (server admins').
NODE_SCOPE = "node"

STATES = ("draft", "published", "withdrawn")
TYPES = ("char", "numeric", "date", "url", "enum")
MAX_CHAR = 4000  # idis.md §1.5: char data ≤ 4000
MAX_PRECISION = 38  # idis.md §1.5: numeric ≤ 38 digits
MAX_URL = 4000
MAX_FIELDS = 500
MAX_ENUM_VALUES = 1000
MAX_TEXT = 1024  # descriptions
MAX_FIELD_NAME = 128  # idis.md §1.2: value type ≤ 128
CACHE_SIZE = 256

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")
_INDUSTRY = re.compile(r"([A-T])(?:/([0-9]{2})(?:/([0-9]{3})(?:/([0-9]{4}))?)?)?")
_NUMERIC = re.compile(r"[+-]?([0-9]+)(?:\.([0-9]+))?")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TOP_KEYS = frozenset(("name", "description", "industry", "fields", "scope"))
_FIELD_KEYS = frozenset(("name", "type", "index", "valueType", "required", "unique", "grade",
                         "description", "maxLength", "minLength", "precision", "scale",
                         "values"))  # fmt: skip
_TYPE_KEYS = {"char": {"maxLength", "minLength"}, "numeric": {"precision", "scale"},
              "date": set(), "url": set(), "enum": {"values"}}  # fmt: skip
_TXN = struct.Struct(">Q")
#: A suffix no identifier is taken to have: the authorizer is asked about creating
#: ``<prefix>/<this>`` with the lookup of this one handle answering "absent" (``_may_manage``).
_PROBE_SUFFIX = "\u2400template-admin-probe"


# -- the model -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One metadata item of a template (module docstring: the table)."""

    name: str
    type: str
    index: int
    value_type: str
    required: bool = False
    unique: bool = False
    grade: Grade = Grade.GENERAL
    description: str = ""
    max_length: int = MAX_CHAR  # char
    min_length: int = 0  # char
    precision: int = MAX_PRECISION  # numeric
    scale: int = 0  # numeric
    values: tuple[str, ...] = ()  # enum

    def to_json(self) -> dict:
        out: dict = {"name": self.name, "type": self.type, "index": self.index,
                     "valueType": self.value_type, "required": self.required,
                     "unique": self.unique, "grade": self.grade.label}  # fmt: skip
        if self.description:
            out["description"] = self.description
        if self.type == "char":
            out["maxLength"] = self.max_length
            out["minLength"] = self.min_length
        elif self.type == "numeric":
            out["precision"] = self.precision
            out["scale"] = self.scale
        elif self.type == "enum":
            out["values"] = list(self.values)
        return out

    def check(self, data: bytes) -> str | None:
        """Why ``data`` does not fit this field, or None.  Empty data fits a field that is not
        required (no value); a required one is reported by the caller."""
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            return "is not UTF-8 text"
        if not text:
            return f"required field '{self.name}' is empty" if self.required else None
        kind = self.type
        if kind == "char":
            n = len(text)
            if n > self.max_length:
                return f"is {n} characters long; at most {self.max_length} allowed"
            if n < self.min_length:
                return f"is {n} characters long; at least {self.min_length} needed"
            return None
        if kind == "numeric":
            m = _NUMERIC.fullmatch(text)
            if m is None:
                return f"{_show(text)} is not a decimal number (digits, an optional sign and point)"
            whole = m.group(1).lstrip("0")
            frac = (m.group(2) or "").rstrip("0")
            if len(frac) > self.scale:
                return (f"{_show(text)} has {len(frac)} digits after the point; at most "
                        f"{self.scale} allowed")  # fmt: skip
            if len(whole) > self.precision - self.scale:
                return (f"{_show(text)} has {len(whole)} digits before the point; at most "
                        f"{self.precision - self.scale} allowed (precision {self.precision}, "
                        f"scale {self.scale})")  # fmt: skip
            return None
        if kind == "date":
            if _DATE.fullmatch(text):
                try:
                    datetime.date.fromisoformat(text)
                    return None
                except ValueError:
                    return f"{_show(text)} is not a calendar date"
            return f"{_show(text)} is not a date as YYYY-MM-DD"
        if kind == "url":
            return _url_problem(text)
        if text not in self.values:  # enum
            shown = ", ".join(self.values[:10]) + (", …" if len(self.values) > 10 else "")
            return f"{_show(text)} is not one of: {shown}"
        return None

    def canonical(self, data: bytes) -> bytes:
        """The text the unique index compares: numeric values as normalised decimals."""
        if self.type == "numeric":
            try:
                d = Decimal(bytes(data).decode("utf-8"))
                return format(d.normalize() if d else Decimal(0), "f").encode("ascii")
            except (InvalidOperation, UnicodeDecodeError, ValueError):
                pass
        return bytes(data)


def _show(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _url_problem(text: str) -> str | None:
    if len(text) > MAX_URL:
        return f"is {len(text)} characters long; at most {MAX_URL} allowed"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "a URL contains no spaces or control characters"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return f"{_show(text)} is not a URL"
    if parts.scheme.lower() not in ("http", "https", "ftp"):
        return f"{_show(text)} is not an absolute http, https or ftp URL"
    if not parts.hostname:
        return f"{_show(text)} names no host"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Template:
    """One version of a template (module docstring)."""

    scope: str
    name: str
    version: int
    state: str
    fields: tuple[Field, ...]
    description: str = ""
    industry: str | None = None
    created: int = 0
    updated: int = 0
    author: str = ""
    #: Derived: field by index; the grade of each field that is not GENERAL (grading).
    by_index: dict = dataclasses.field(init=False, compare=False, repr=False)
    grades: dict = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_index", {f.index: f for f in self.fields})
        object.__setattr__(self, "grades", {f.index: f.grade for f in self.fields
                                            if f.grade != Grade.GENERAL})  # fmt: skip

    @property
    def ref(self) -> str:
        """``<scope>/<name>/<version>``: the data of an instance's TEMPLATE value."""
        return template_ref(self.scope, self.name, self.version)

    def to_json(self) -> dict:
        return {"scope": self.scope, "name": self.name, "version": self.version,
                "state": self.state, "description": self.description,
                "industry": self.industry, "ref": self.ref,
                "fields": [f.to_json() for f in self.fields], "created": self.created,
                "updated": self.updated, "author": self.author}  # fmt: skip

    def stored(self) -> bytes:
        doc = self.to_json()
        del doc["ref"]
        return orjson.dumps(doc)

    @classmethod
    def from_stored(cls, blob: bytes) -> "Template":
        doc = orjson.loads(blob)
        fields = tuple(_field_from_json(f) for f in doc["fields"])
        return cls(doc["scope"], doc["name"], int(doc["version"]), doc["state"], fields,
                   doc.get("description") or "", doc.get("industry"), int(doc.get("created", 0)),
                   int(doc.get("updated", 0)), doc.get("author") or "")  # fmt: skip

    def replace(self, **kw) -> "Template":
        return dataclasses.replace(self, **kw)


def _field_from_json(f: dict) -> Field:
    return Field(f["name"], f["type"], int(f["index"]), f["valueType"], bool(f["required"]),
                 bool(f["unique"]), Grade.parse(f["grade"]), f.get("description") or "",
                 int(f.get("maxLength", MAX_CHAR)), int(f.get("minLength", 0)),
                 int(f.get("precision", MAX_PRECISION)), int(f.get("scale", 0)),
                 tuple(f.get("values", ())))  # fmt: skip


def template_ref(scope: str, name: str, version: int) -> str:
    """``88.118.8/battery/2``, ``node/steel/1``."""
    return f"{scope}/{name}/{version}"


def template_value(ref: str, *, timestamp: int = 0) -> HandleValue:
    """The value that makes an identifier an instance of the template ``ref``."""
    return HandleValue(TEMPLATE_INDEX, TEMPLATE_TYPE, ref.encode("utf-8"), timestamp=timestamp)


def _template_value(record: Iterable[HandleValue] | None) -> HandleValue | None:
    if record is None:
        return None
    for v in record:
        if v.index == TEMPLATE_INDEX:
            return v
    return None


# -- definitions -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Definition:
    """A parsed, valid template definition (what ``define`` stores as a new draft)."""

    name: str
    description: str
    industry: str | None
    fields: tuple[Field, ...]


def _value_type_problem(text) -> str | None:
    if not isinstance(text, str) or not text.strip():
        return "must be a non-empty string"
    if len(text) > MAX_FIELD_NAME:
        return f"is longer than {MAX_FIELD_NAME} characters"
    if text != text.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "contains control characters or surrounding spaces"
    if text.upper().startswith("HS_") or text.upper() == TEMPLATE_TYPE:
        return "HS_* and TEMPLATE are reserved value types"
    return None


def _int_prop(raw: dict, key: str, default: int, lo: int, hi: int, path: str, label: str,
              index, errors: list) -> int:  # fmt: skip
    v = raw.get(key, default)
    if type(v) is not int or not lo <= v <= hi:
        errors.append(FieldError(f"{path}.{key}", index, label,
                                 f"{key} must be an integer from {lo} to {hi}"))  # fmt: skip
        return default
    return v


def _parse_field(pos: int, raw, errors: list) -> Field | None:
    path = f"fields[{pos}]"
    if not isinstance(raw, dict):
        errors.append(FieldError(path, None, "", "a field is a JSON object"))
        return None
    before = len(errors)
    name = raw.get("name")
    label = name if isinstance(name, str) else ""
    index = raw.get("index", FIRST_FIELD_INDEX + pos)
    shown_index = index if type(index) is int else None

    def bad(key: str, message: str) -> None:
        errors.append(FieldError(f"{path}.{key}" if key else path, shown_index, label, message))

    for key in raw:
        if key not in _FIELD_KEYS:
            bad(key, f"unknown property {key[:40]!r}")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_FIELD_NAME \
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):  # fmt: skip
        bad("name", f"a field name is 1 to {MAX_FIELD_NAME} characters, no control characters")
    if type(index) is not int or not FIRST_FIELD_INDEX <= index <= MAX_INDEX:
        bad("index", f"index must be an integer from {FIRST_FIELD_INDEX} to {MAX_INDEX} "
                     "(IDIS: template fields start at 2000)")  # fmt: skip
    kind = raw.get("type")
    if kind not in TYPES:
        bad("type", f"type must be one of {', '.join(TYPES)}")
    else:
        for key in raw:
            if key in _FIELD_KEYS and any(key in ks for ks in _TYPE_KEYS.values()) \
                    and key not in _TYPE_KEYS[kind]:  # fmt: skip
                bad(key, f"{key} does not apply to a {kind} field")
    value_type = raw.get("valueType", name)
    if "valueType" in raw:
        problem = _value_type_problem(value_type)
        if problem:
            bad("valueType", f"valueType {problem}")
    elif isinstance(name, str):
        problem = _value_type_problem(name)
        if problem:
            bad("name", f"without a valueType the name is the value type, which {problem}")
    flags = {}
    for key in ("required", "unique"):
        flags[key] = raw.get(key, False)
        if type(flags[key]) is not bool:
            bad(key, f"{key} must be true or false")
    try:
        grade = Grade.parse(raw.get("grade", "general"))
    except ValueError:
        bad("grade", "grade must be general, important or core (GB/T 43697-2024)")
        grade = Grade.GENERAL
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_TEXT:
        bad("description", f"description must be a string of at most {MAX_TEXT} characters")
    props: dict = {}
    if kind == "char":
        props["max_length"] = _int_prop(raw, "maxLength", MAX_CHAR, 1, MAX_CHAR, path, label,
                                        shown_index, errors)  # fmt: skip
        props["min_length"] = _int_prop(raw, "minLength", 0, 0, props["max_length"], path,
                                        label, shown_index, errors)  # fmt: skip
    elif kind == "numeric":
        props["precision"] = _int_prop(raw, "precision", MAX_PRECISION, 1, MAX_PRECISION, path,
                                       label, shown_index, errors)  # fmt: skip
        props["scale"] = _int_prop(raw, "scale", 0, 0, props["precision"], path, label,
                                   shown_index, errors)  # fmt: skip
    elif kind == "enum":
        values = raw.get("values")
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_ENUM_VALUES \
                or not all(isinstance(x, str) and x and len(x) <= MAX_CHAR for x in values):
            bad("values", f"values must be a list of 1 to {MAX_ENUM_VALUES} non-empty strings")
        elif len(set(values)) != len(values):
            bad("values", "values must be distinct")
        else:
            props["values"] = tuple(values)
    if len(errors) > before:
        return None
    return Field(name, kind, index, value_type, flags["required"], flags["unique"], grade,
                 description, **props)  # fmt: skip


def parse_definition(body) -> Definition:
    """A definition from the REST body ``{name, description?, industry?, fields: [...]}``.

    Every problem is a ``FieldError`` with a path into the body (``name``, ``industry``,
    ``fields``, ``fields[3].type`` …); all of them are raised as one ``TemplateViolation``.
    A body that is not an object is ``MalformedRequest``."""
    if not isinstance(body, dict):
        raise MalformedRequest("a template definition is a JSON object")
    errors: list[FieldError] = []
    for key in body:
        if key not in _TOP_KEYS:
            errors.append(FieldError(key, None, "", f"unknown property {key[:40]!r}"))
    name = body.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        errors.append(FieldError("name", None, "", "a template name is 1 to 64 of A-Z a-z 0-9 "
                                                   "_ . - starting with a letter or digit"))
    description = body.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str) or len(description) > MAX_TEXT:
        errors.append(FieldError("description", None, "",
                                 f"description must be a string of at most {MAX_TEXT} "
                                 "characters"))  # fmt: skip
    industry = body.get("industry")
    if industry is not None and (not isinstance(industry, str) or not _industry_ok(industry)):
        errors.append(FieldError("industry", None, "", "industry must be a GB/T 4754 code: "
                                 "section letter, then division, group, class, each extending "
                                 "the previous (C/38/384/3841)"))  # fmt: skip
    raw_fields = body.get("fields")
    fields: list[tuple[int, Field]] = []
    if not isinstance(raw_fields, list) or not 1 <= len(raw_fields) <= MAX_FIELDS:
        errors.append(FieldError("fields", None, "",
                                 f"fields must be a list of 1 to {MAX_FIELDS} fields"))
    else:
        for pos, raw in enumerate(raw_fields):
            f = _parse_field(pos, raw, errors)
            if f is not None:
                fields.append((pos, f))
        dup_names: set[int] = set()
        for attr, what in (("name", "name"), ("index", "index"), ("value_type", "valueType")):
            seen: dict = {}
            for pos, f in fields:
                key = getattr(f, attr)
                key = key.upper() if attr == "value_type" else key  # types match ASCII-CI
                if attr == "value_type" and pos in dup_names and f.value_type == f.name:
                    continue  # the same clash as the name's (the name is the value type)
                if key in seen:
                    if attr == "name":
                        dup_names.add(pos)
                    errors.append(FieldError(f"fields[{pos}].{what}", f.index, f.name,
                                             f"{what} {getattr(f, attr)!r} is also the "
                                             f"{what} of fields[{seen[key]}]"))  # fmt: skip
                else:
                    seen[key] = pos
    if errors:
        raise TemplateViolation(errors)
    return Definition(name, description, industry, tuple(f for _pos, f in fields))


def _industry_ok(text: str) -> bool:
    m = _INDUSTRY.fullmatch(text)
    if m is None:
        return False
    _section, division, group, klass = m.groups()
    if group is not None and not group.startswith(division):
        return False
    return klass is None or klass.startswith(group)


# -- the service -----------------------------------------------------------------------------


def _is_operator(identity) -> bool:
    from registry.service import OPERATOR  # service imports this module: import at call time

    return identity is OPERATOR


def _who(identity) -> str:
    return "" if identity is None or _is_operator(identity) else str(identity)


class Templates:
    """Templates of one store (module docstring).  ``server_admins`` and ``case_sensitive`` as
    the registration service's (``Registry`` builds one from its own when given none)."""

    def __init__(self, store: LmdbStore, *, server_admins: Iterable[Identity] = (),
                 case_sensitive: bool = False, clock: Callable[[], float] = time.time,
                 cache_size: int = CACHE_SIZE) -> None:  # fmt: skip
        self.store = store
        self.server_admins = tuple(server_admins)
        self.case_sensitive = case_sensitive
        self.clock = clock
        self.cache_size = cache_size
        self._cache: dict[bytes, tuple[bytes, Template]] = {}

    # -- names and keys ------------------------------------------------------------------------
    def scope(self, text: str) -> str:
        """``node`` or the normalised prefix ``text`` names; ``InvalidIdentifier``."""
        if not isinstance(text, str) or not text:
            raise InvalidIdentifier("a template scope is a prefix or 'node'")
        if text.lower() == NODE_SCOPE:
            return NODE_SCOPE
        if text.upper().startswith("0.NA/"):
            text = text[5:]
        if "/" in text or ":" in text:
            raise InvalidIdentifier(f"{text[:64]!r} is not a prefix")
        ident = Identifier.parse(f"0.NA/{text}", case_sensitive=self.case_sensitive)
        Identifier.parse(text, case_sensitive=self.case_sensitive)  # segments well formed
        return ident.suffix_key.decode("utf-8")

    def parse_ref(self, text: str) -> tuple[str, str, int]:
        """``<scope>/<name>/<version>`` → (normalised scope, name, version); ValueError."""
        parts = text.split("/")
        if len(parts) != 3 or not _NAME.fullmatch(parts[1]) or not parts[2].isdigit() \
                or not parts[2].isascii() or len(parts[2]) > 10:  # fmt: skip
            raise ValueError("not <scope>/<name>/<version>")
        version = int(parts[2])
        if not 0 < version <= MAX_INDEX:
            raise ValueError("bad version")
        try:
            return self.scope(parts[0]), parts[1], version
        except InvalidIdentifier as exc:
            raise ValueError(exc.message) from None

    @staticmethod
    def _key(scope: str, name: str, version: int) -> bytes:
        return f"template:{scope}:{name}:{version:010d}".encode("utf-8")

    @staticmethod
    def _names_prefix(scope: str, name: str | None = None) -> bytes:
        return f"template:{scope}:{'' if name is None else name + ':'}".encode("utf-8")

    # -- reading -------------------------------------------------------------------------------
    def _load(self, view, scope: str, name: str, version: int,
              blob: bytes | None = None) -> Template | None:  # fmt: skip
        """The stored template (``blob``: its bytes, when already read), parsed once per
        distinct stored bytes: the cache can never answer a stale state."""
        key = self._key(scope, name, version)
        if blob is None:
            blob = view.get_meta(key)
            if blob is None:
                return None
        blob = bytes(blob)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == blob:
            return hit[1]
        try:
            template = Template.from_stored(blob)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"stored template {key.decode('utf-8', 'replace')} is corrupt: "
                             f"{exc}") from None  # fmt: skip
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[key] = (blob, template)
        return template

    def _versions(self, view, scope: str, name: str | None = None) -> list[Template]:
        """Every stored version of ``scope`` (of one ``name``), by name then version."""
        out = []
        for key, blob in view.meta_range(self._names_prefix(scope, name)):
            _t, _s, tname, version = bytes(key).decode("utf-8").split(":")
            out.append(self._load(view, scope, tname, int(version), blob))
        return out

    def of(self, view, record: Iterable[HandleValue]) -> Template | None:
        """The template an instance names (whatever its state), or None."""
        ref = self._ref_of(_template_value(record))
        return None if ref is None else self._load(view, *ref)

    def grades(self, view, record: Iterable[HandleValue]) -> dict[int, Grade]:
        """Index → grade of the record's template fields that are not GENERAL ({} for none);
        for ``resolver.core.grading``."""
        t = self.of(view, record)
        return t.grades if t is not None else {}

    # -- authorization ---------------------------------------------------------------------------
    def _authorizer(self, view, hide: bytes | None = None) -> Authorizer:
        def lookup(text: str) -> Record | None:
            try:
                ident = Identifier.parse(text, case_sensitive=self.case_sensitive)
            except InvalidIdentifier:
                return None
            if ident.key == hide:
                return None
            blob = (view.get_prefix(ident.suffix_key) if ident.is_prefix_handle
                    else view.get_record(ident.key))  # fmt: skip
            return None if blob is None else unpack(bytes(blob))

        return Authorizer(lookup, self.server_admins, case_sensitive=self.case_sensitive)

    def _homed(self, view, scope: str) -> None:
        if scope != NODE_SCOPE and view.get_prefix(scope.encode("utf-8")) is None:
            raise NotResponsible("That prefix doesn't live here")

    def _may_manage(self, view, identity, scope: str) -> None:
        """Raise unless ``identity`` may define and change templates of ``scope``."""
        self._homed(view, scope)
        if _is_operator(identity):
            return
        if identity is None:
            raise AuthenticationNeeded("Authentication needed")
        authz = self._authorizer(view)
        if authz.is_server_admin(identity):
            return
        if scope == NODE_SCOPE:
            raise Forbidden(f"{identity} may not manage node templates: server admins only")
        # The registry's rule for creating under the prefix (ADD_HANDLE in 0.NA/<scope>), asked
        # about a handle taken as absent so the overwrite rule of an existing one cannot apply.
        probe = Identifier.parse(f"{scope}/{_PROBE_SUFFIX}", case_sensitive=self.case_sensitive)
        try:
            self._authorizer(view, hide=probe.key).check(identity, Op.CREATE_HANDLE, probe.text)
        except Forbidden:
            raise Forbidden(f"{identity} may not manage templates of {scope}: only its "
                            "enterprise admins (ADD_HANDLE in 0.NA/" + scope + ") and server "
                            "admins may") from None  # fmt: skip

    def may_manage(self, identity, scope: str) -> bool:
        """May ``identity`` manage templates of ``scope`` (normalised)?"""
        with self.store.view() as view:
            try:
                self._may_manage(view, identity, scope)
                return True
            except (Forbidden, AuthenticationNeeded):
                return False

    # -- management ----------------------------------------------------------------------------
    def define(self, identity, scope: str, body) -> Template:
        """A new draft version of the template ``body["name"]`` (``parse_definition``) in
        ``scope``; its version is one more than the highest stored."""
        scope = self.scope(scope)
        if isinstance(body, dict) and "scope" in body:
            named = body["scope"]
            try:
                same = isinstance(named, str) and self.scope(named) == scope
            except InvalidIdentifier:
                same = False
            if not same:
                raise TemplateViolation([FieldError("scope", None, "",
                                                    "scope differs from the request's scope")])
        definition = parse_definition(body)
        made: list[Template] = []

        def plan(view):
            self._may_manage(view, identity, scope)
            versions = self._versions(view, scope, definition.name)
            version = max((t.version for t in versions), default=0) + 1
            now = int(self.clock())
            t = Template(scope, definition.name, version, "draft", definition.fields,
                         definition.description, definition.industry, now, now,
                         _who(identity))  # fmt: skip
            view.put_meta(self._key(scope, t.name, version), t.stored())
            made.append(t)
            return []

        self.store.update(plan, _who(identity))
        return made[0]

    def get(self, identity, scope: str, name: str, version: int | None = None) -> Template:
        """One version (the newest the caller may see when ``version`` is None)."""
        scope = self.scope(scope)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise HandleNotFound("Template not found")
        with self.store.view() as view:
            self._homed(view, scope)
            manager = self._manager(view, identity, scope)
            if version is None:
                seen = [t for t in self._versions(view, scope, name)
                        if manager or t.state != "draft"]  # fmt: skip
                t = seen[-1] if seen else None
            else:
                t = self._load(view, scope, name, version)
                if t is not None and t.state == "draft" and not manager:
                    t = None
        if t is None:
            raise HandleNotFound("Template not found")
        return t

    def list(self, identity, scope: str) -> list[dict]:
        """``[{"name", "latest", "versions": [{"version", "state"}]}]`` by name; drafts only
        for those who may manage the scope."""
        scope = self.scope(scope)
        with self.store.view() as view:
            self._homed(view, scope)
            manager = self._manager(view, identity, scope)
            by_name: dict[str, list[Template]] = {}
            for t in self._versions(view, scope):
                if manager or t.state != "draft":
                    by_name.setdefault(t.name, []).append(t)
        return [{"name": name, "latest": ts[-1].version,
                 "versions": [{"version": t.version, "state": t.state} for t in ts]}
                for name, ts in sorted(by_name.items())]  # fmt: skip

    def _manager(self, view, identity, scope: str) -> bool:
        if identity is None:
            return False
        try:
            self._may_manage(view, identity, scope)
            return True
        except (Forbidden, AuthenticationNeeded):
            return False

    def publish(self, identity, scope: str, name: str, version: int) -> Template:
        """draft or withdrawn → published (published: unchanged)."""
        return self._transition(identity, scope, name, version, "published")

    def withdraw(self, identity, scope: str, name: str, version: int) -> Template:
        """published → withdrawn (withdrawn: unchanged; a draft: ``MalformedRequest``)."""
        return self._transition(identity, scope, name, version, "withdrawn")

    def _transition(self, identity, scope: str, name: str, version: int, to: str) -> Template:
        def step(view, t: Template) -> Template:
            if t.state != to:
                if to == "withdrawn" and t.state == "draft":
                    raise MalformedRequest(f"{t.ref} is a draft: delete it instead of "
                                           "withdrawing it")  # fmt: skip
                t = t.replace(state=to, updated=int(self.clock()))
                view.put_meta(self._key(t.scope, name, version), t.stored())
            return t

        return self._change(identity, scope, name, version, step)

    def delete(self, identity, scope: str, name: str, version: int) -> Template:
        """Delete a draft (a published or withdrawn version may have instances: refused)."""

        def step(view, t: Template) -> Template:
            if t.state != "draft":
                raise MalformedRequest(f"{t.ref} is {t.state}: only drafts can be deleted "
                                       "(identifiers may name it); withdraw it instead")
            view.delete_meta(self._key(t.scope, name, version))
            return t

        return self._change(identity, scope, name, version, step)

    def _change(self, identity, scope: str, name: str, version: int, step) -> Template:
        """``step(view, template)`` on an existing version, for a manager of its scope, in one
        write transaction; → what ``step`` returns."""
        scope = self.scope(scope)
        out: list[Template] = []

        def plan(view):
            self._may_manage(view, identity, scope)
            t = self._load(view, scope, name, version) if _NAME.fullmatch(name or "") else None
            if t is None:
                raise HandleNotFound("Template not found")
            out.append(step(view, t))
            return []

        self.store.update(plan, _who(identity))
        return out[0]

    # -- instances -----------------------------------------------------------------------------
    def apply(self, view, ident: Identifier, record: Record | None, old: Record | None, *,
              given: Sequence[HandleValue] | None = None) -> Record | None:  # fmt: skip
        """Validate the new ``record`` of ``ident`` (None: deleted) against its template,
        inside the write transaction of ``view``; returns the record to store (module
        docstring).  ``old``: the record it replaces (None: created).  ``given``: the values
        as the request listed them, for error paths (default: ``record``)."""
        new_tv = _template_value(record)
        old_tv = _template_value(old)
        if new_tv is None and old_tv is None:
            return record
        old_t = self._instance_template(view, old_tv) if old_tv is not None else None
        old_entries = self._entries(ident, old_t, old) if old_t is not None else {}
        if record is None:
            self._release(view, ident, old_entries)
            return None
        listed = record if given is None else given
        positions: dict[int, int] = {}
        for pos, v in enumerate(listed):
            positions.setdefault(v.index, pos)

        def path(index: int, tail: str = "") -> str:
            pos = positions.get(index)
            return "values" if pos is None else f"values[{pos}]{tail}"

        if new_tv is None:
            raise TemplateViolation([FieldError(
                "values", TEMPLATE_INDEX, TEMPLATE_TYPE,
                f"the TEMPLATE value at index {TEMPLATE_INDEX} cannot be removed from an "
                "instance of a template; delete the identifier instead")])  # fmt: skip
        t, problem = self._usable(view, ident, new_tv, old_tv)
        if t is None:
            tail = ".type" if not new_tv.has_type(TEMPLATE_TYPE) else ".data.value"
            raise TemplateViolation([FieldError(path(TEMPLATE_INDEX, tail), TEMPLATE_INDEX,
                                                TEMPLATE_TYPE, problem)])  # fmt: skip
        errors: list[FieldError] = []
        out = []
        for v in record:
            f = t.by_index.get(v.index)
            if f is None:
                if v.index >= FIRST_FIELD_INDEX:
                    errors.append(FieldError(path(v.index, ".index"), v.index, v.type,
                                             f"index {v.index} is not a field of template "
                                             f"{t.ref}"))  # fmt: skip
                out.append(v)
                continue
            if not v.has_type(f.value_type):
                errors.append(FieldError(path(v.index, ".type"), v.index, f.name,
                                         f"field '{f.name}' at index {v.index} has value type "
                                         f"{f.value_type}, not {v.type[:128]}"))  # fmt: skip
            else:
                problem = f.check(v.data)
                if problem is not None:
                    errors.append(FieldError(path(v.index, ".data.value"), v.index, f.name,
                                             f"field '{f.name}' ({f.type}): {problem}"))
            out.append(v.replace(permissions=permissions_for(f.grade, v.permissions))
                       if f.grade != Grade.GENERAL else v)  # fmt: skip
        present = {v.index for v in record}
        for f in t.fields:
            if f.required and f.index not in present:
                errors.append(FieldError("values", f.index, f.name,
                                         f"required field '{f.name}' (index {f.index}, type "
                                         f"{f.value_type}) is missing"))  # fmt: skip
        new_entries = self._entries(ident, t, record) if not errors else {}
        for key, (f, v) in new_entries.items():
            if key in old_entries:
                continue
            holder = self._holder(view, key)
            if holder is not None and holder != ident.key:
                errors.append(FieldError(path(v.index, ".data.value"), v.index, f.name,
                                         f"field '{f.name}' is unique: another identifier "
                                         f"under {ident.prefix_key.decode('utf-8', 'replace')} "
                                         f"has this value"))  # fmt: skip
        if errors:
            raise TemplateViolation(errors)
        self._release(view, ident, {k: e for k, e in old_entries.items()
                                    if k not in new_entries})  # fmt: skip
        stamp = _TXN.pack(view.txn.id()) + ident.key
        for key in new_entries:
            if key not in old_entries or view.get_meta(key) is None:
                view.put_meta(key, stamp)
        return Record(out)

    def _ref_of(self, tv: HandleValue | None) -> tuple[str, str, int] | None:
        """(scope, name, version) a TEMPLATE value names, or None."""
        if tv is None or not tv.has_type(TEMPLATE_TYPE):
            return None
        try:
            return self.parse_ref(bytes(tv.data).decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    def _instance_template(self, view, tv: HandleValue) -> Template | None:
        ref = self._ref_of(tv)
        return None if ref is None else self._load(view, *ref)

    def _usable(self, view, ident: Identifier, tv: HandleValue,
                old_tv: HandleValue | None) -> tuple[Template | None, str]:  # fmt: skip
        """(the template ``tv`` names, "") if this identifier may be an instance of it, else
        (None, why)."""
        if not tv.has_type(TEMPLATE_TYPE):
            return None, (f"index {TEMPLATE_INDEX} is reserved for the {TEMPLATE_TYPE} value "
                          "(IDIS), naming the identifier's metadata template")  # fmt: skip
        try:
            text = bytes(tv.data).decode("utf-8")
            scope, name, version = self.parse_ref(text)
        except (ValueError, UnicodeDecodeError):
            return None, "a TEMPLATE value is <scope>/<name>/<version>, e.g. 88.118.8/battery/2"
        t = self._load(view, scope, name, version)
        ref = template_ref(scope, name, version)
        if t is None:
            return None, f"template {ref} does not exist"
        if scope != NODE_SCOPE and scope.encode("utf-8") != ident.prefix_key:
            return None, (f"template {ref} belongs to prefix {scope}; only identifiers under "
                          "it may use it")  # fmt: skip
        if t.state == "published":
            return t, ""
        if t.state == "withdrawn" and self._ref_of(old_tv) == (scope, name, version):
            return t, ""  # an existing instance of a withdrawn template stays one
        return None, (f"template {ref} is {t.state}: only a published template accepts new "
                      "instances")  # fmt: skip

    # -- the unique index ----------------------------------------------------------------------
    def _entries(self, ident: Identifier, t: Template, record: Iterable[HandleValue]
                 ) -> dict[bytes, tuple[Field, HandleValue]]:  # fmt: skip
        """uniq keys of ``record``'s unique fields (non-empty values of the right type)."""
        out = {}
        head = b"uniq:" + ident.prefix_key + f":{t.scope}/{t.name}:".encode("utf-8")
        for v in record:
            f = t.by_index.get(v.index)
            if f is None or not f.unique or not v.data or not v.has_type(f.value_type):
                continue
            digest = hashlib.sha256(f.canonical(v.data)).digest()[:16].hex()
            out[head + f"{f.index}:{digest}".encode("ascii")] = (f, v)
        return out

    def _holder(self, view, key: bytes) -> bytes | None:
        """The identifier key holding a unique entry (module docstring: when it counts)."""
        raw = view.get_meta(key)
        if raw is None:
            return None
        raw = bytes(raw)
        holder = raw[_TXN.size :]
        if _TXN.unpack_from(raw)[0] == view.txn.id():
            return holder  # written by this transaction
        blob = (view.get_prefix(holder[5:]) if holder.startswith(b"0.NA/")
                else view.get_record(holder))  # fmt: skip
        if blob is None:
            return None
        try:
            record = unpack(bytes(blob))
            ident = Identifier.parse(holder, case_sensitive=True)
        except (StoreError, InvalidIdentifier):
            return None
        t = self.of(view, record)
        if t is None or key not in self._entries(ident, t, record):
            return None  # a writer that bypassed templates changed it: the entry is stale
        return holder

    def _release(self, view, ident: Identifier, entries: dict) -> None:
        for key in entries:
            raw = view.get_meta(key)
            if raw is not None and bytes(raw)[_TXN.size :] == ident.key:
                view.delete_meta(key)
