"""Metadata templates over a real LMDB store: definitions and their per-field errors, who may
manage them, the draft → published → withdrawn lifecycle, and the validation of instances on
every registration write (types, required, unique within the prefix, grade permissions).

Two enterprises as Handle.net sets them up (``0.NA/88.118.8`` grants its rights to the group
``200:0.NA/88.118.8`` naming ``300:88.118.8/ADMIN``; likewise 88.118.9) and a server admin
``300:0.NA/88.118``.  Every refusal also asserts that nothing was written.
"""

from __future__ import annotations

import pytest

from registry.authz import Identity
from registry.service import OPERATOR, Registry
from registry.templates import TEMPLATE_INDEX, parse_definition, template_value
from resolver.core.grading import Grade
from resolver.errors import (
    AuthenticationNeeded, Forbidden, HandleNotFound, InvalidValue, MalformedRequest,
    NotResponsible, Outcome, TemplateViolation,
)  # fmt: skip
from resolver.identifier import Identifier
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.http.codes import STATUS_FOR
from resolver.record import Record, pack, unpack
from resolver.store import Change
from resolver.values import (
    PERM_ADMIN_READ, PERM_ADMIN_WRITE, PERM_PUBLIC_READ, PERM_PUBLIC_WRITE, AdminRecord,
    HandleValue,
)  # fmt: skip
from tests.enterprises import enterprise_changes

T0 = 1_800_000_000
ALL = 0x7FF
A8 = Identity.parse("300:88.118.8/ADMIN")
A9 = Identity.parse("300:88.118.9/ADMIN")
ROOT = Identity.parse("300:0.NA/88.118")

BATTERY = {
    "name": "battery", "description": "Li-ion cells", "industry": "C/38/384/3841",
    "fields": [
        {"name": "serial", "type": "char", "maxLength": 8, "minLength": 3, "required": True,
         "unique": True},                                                     # 2000
        {"name": "capacity", "type": "numeric", "precision": 5, "scale": 2,
         "valueType": "CAPACITY_AH", "unique": True},                          # 2001
        {"name": "made", "type": "date", "required": True, "grade": "important"},  # 2002
        {"name": "manual", "type": "url"},                                    # 2003
        {"name": "chemistry", "type": "enum", "values": ["LFP", "NMC"], "grade": "core"},  # 2004
    ],
}  # fmt: skip


def v(index, vtype, data, perms=0x0E) -> HandleValue:
    return HandleValue(index, vtype, data if isinstance(data, bytes) else data.encode(),
                       permissions=perms, timestamp=1)  # fmt: skip


def admin_value(handle: str, index: int, perms: int = ALL, at: int = 100) -> HandleValue:
    return v(at, "HS_ADMIN", AdminRecord(handle, index, perms).to_bytes())


@pytest.fixture
def store(store):
    store.write(enterprise_changes("88.118.8", b"secret-8") + enterprise_changes("88.118.9", b"secret-9")
                + [Change(b"88.118", pack(Record([v(300, "HS_SECKEY", b"root", 0x0C)])),
                          prefix=True)])  # fmt: skip
    return store


@pytest.fixture
def reg(store) -> Registry:
    return Registry(store, server_admins=[ROOT], clock=lambda: T0)


@pytest.fixture
def tpl(reg):
    return reg.templates


@pytest.fixture
def battery(tpl):
    """88.118.8/battery/1, published."""
    t = tpl.define(A8, "88.118.8", BATTERY)
    return tpl.publish(A8, "88.118.8", "battery", t.version)


def fields(ref="88.118.8/battery/1", *, serial="SN-001", capacity="12.5", made="2026-03-01",
           manual="https://example.com/m.pdf", chemistry="LFP") -> list[HandleValue]:
    """An instance's values, in this order: [0] URL, [1] HS_ADMIN, [2] TEMPLATE, then the
    fields given (None leaves one out)."""
    out = [v(1, "URL", "https://example.com/p"), admin_value("0.NA/88.118.8", 200),
           template_value(ref)]  # fmt: skip
    for index, vtype, data in ((2000, "serial", serial), (2001, "CAPACITY_AH", capacity),
                               (2002, "made", made), (2003, "manual", manual),
                               (2004, "chemistry", chemistry)):  # fmt: skip
        if data is not None:
            out.append(v(index, vtype, data))
    return out


def _stored(store, handle: str) -> dict[int, HandleValue] | None:
    blob = store.get_record(Identifier.parse(handle).key)
    return None if blob is None else {x.index: x for x in unpack(blob)}


def _meta(store) -> list[tuple[bytes, bytes]]:
    with store.view() as view:
        return list(view.meta_range(b""))


def _violation(fn, *args, **kw) -> TemplateViolation:
    with pytest.raises(TemplateViolation) as info:
        fn(*args, **kw)
    return info.value


def _paths(exc: TemplateViolation) -> list[str]:
    return [e.path for e in exc.errors]


# -- definitions --------------------------------------------------------------------------------


def test_define_makes_numbered_drafts_with_defaults(tpl):
    t1 = tpl.define(A8, "88.118.8", BATTERY)
    assert (t1.scope, t1.name, t1.version, t1.state, t1.ref) == (
        "88.118.8", "battery", 1, "draft", "88.118.8/battery/1")
    assert [f.index for f in t1.fields] == [2000, 2001, 2002, 2003, 2004]  # 2000 + position
    assert [f.value_type for f in t1.fields][:2] == ["serial", "CAPACITY_AH"]  # default: name
    assert t1.fields[0].grade == Grade.GENERAL and t1.fields[4].grade == Grade.CORE
    assert (t1.author, t1.created, t1.industry) == (str(A8), T0, "C/38/384/3841")
    assert tpl.define(A8, "88.118.8", BATTERY).version == 2
    assert tpl.define(A8, "88.118.8", {**BATTERY, "name": "cell"}).version == 1
    doc = tpl.get(A8, "88.118.8", "battery", 1).to_json()
    assert doc["fields"][1] == {"name": "capacity", "type": "numeric", "index": 2001,
                                "valueType": "CAPACITY_AH", "required": False, "unique": True,
                                "grade": "general", "precision": 5, "scale": 2}  # fmt: skip
    assert tpl.get(A8, "88.118.8", "battery").version == 2  # newest without a version


def test_definition_errors_name_every_problem_with_its_path(tpl, store):
    before = _meta(store)
    body = {"name": "-bad name", "industry": "C/39/384", "colour": "red", "fields": [
        {"name": "a", "type": "text"},                                   # fields[0].type
        {"name": "b", "type": "char", "index": 1999},                     # fields[1].index
        {"name": "c", "type": "char", "maxLength": 4001},                 # fields[2].maxLength
        {"name": "d", "type": "numeric", "precision": 39},                # fields[3].precision
        {"name": "e", "type": "numeric", "precision": 4, "scale": 5},     # fields[4].scale
        {"name": "f", "type": "enum"},                                    # fields[5].values
        {"name": "g", "type": "date", "maxLength": 3},                    # fields[6].maxLength
        {"name": "h", "type": "url", "grade": "secret"},                  # fields[7].grade
        {"name": "i", "type": "char", "required": "yes"},                 # fields[8].required
        {"name": "HS_ADMIN", "type": "char"},                             # fields[9].name
        {"name": "k", "type": "char", "valueType": "TEMPLATE"},           # fields[10].valueType
        {"name": "m", "type": "char", "index": 2100},                     # fine
        {"name": "m", "type": "char", "index": 2101},                     # fields[12].name (dup)
        {"name": "n", "type": "char", "index": 2100},                     # fields[13].index (dup)
        "not an object",                                                  # fields[14]
    ]}  # fmt: skip
    exc = _violation(tpl.define, A8, "88.118.8", body)
    assert set(_paths(exc)) == {
        "name", "industry", "colour", "fields[0].type", "fields[1].index", "fields[2].maxLength",
        "fields[3].precision", "fields[4].scale", "fields[5].values", "fields[6].maxLength",
        "fields[7].grade", "fields[8].required", "fields[9].name", "fields[10].valueType",
        "fields[12].name", "fields[13].index", "fields[14]"}  # fmt: skip
    assert len(exc.errors) == 17
    dup = next(e for e in exc.errors if e.path == "fields[13].index")
    assert (dup.index, dup.field) == (2100, "n") and "fields[11]" in dup.message
    assert exc.outcome is Outcome.INVALID_VALUE and isinstance(exc, InvalidValue)
    assert (int(RC_FOR[exc.outcome]), STATUS_FOR[exc.outcome]) == (202, 400)
    assert exc.message.count(";") == 2 and exc.message.endswith("(and 14 more)")
    assert _meta(store) == before


@pytest.mark.parametrize("body,path", [
    ({"name": "x"}, "fields"),
    ({"name": "x", "fields": []}, "fields"),
    ({"name": "x", "description": 5, "fields": [{"name": "a", "type": "char"}]}, "description"),
    ({"name": "x", "fields": [{"name": "a", "type": "enum", "values": ["A", "A"]}]},
     "fields[0].values"),
    ({"name": "x", "fields": [{"name": "a", "type": "char", "valueType": "hs_seckey"}]},
     "fields[0].valueType"),
    ({"name": "x", "fields": [{"name": "a", "type": "char"}, {"name": "b", "type": "char",
                                                             "valueType": "A"}]},
     "fields[1].valueType"),  # value types match ASCII-case-insensitively
])  # fmt: skip
def test_more_definition_errors(body, path):
    assert _paths(_violation(parse_definition, body)) == [path]


@pytest.mark.parametrize("code,ok", [
    ("C", True), ("C/38", True), ("C/38/384", True), ("C/38/384/3841", True),
    ("M/75/751/7517", True), ("C/38/385/3841", False), ("C/3/384", False), ("c/38", False),
    ("Z/38", False), ("C/38/384/3841/1", False), ("C38", False),
])  # fmt: skip
def test_industry_codes_follow_gbt_4754(code, ok):
    body = {"name": "x", "industry": code, "fields": [{"name": "a", "type": "char"}]}
    if ok:
        assert parse_definition(body).industry == code
    else:
        assert _paths(_violation(parse_definition, body)) == ["industry"]


def test_a_body_that_is_not_an_object_is_malformed(tpl):
    with pytest.raises(MalformedRequest):
        tpl.define(A8, "88.118.8", [BATTERY])


# -- who may manage --------------------------------------------------------------------------------


def test_an_enterprise_admin_of_another_prefix_is_refused(tpl, battery, store):
    before = _meta(store)
    for call in (lambda: tpl.define(A9, "88.118.8", BATTERY),
                 lambda: tpl.withdraw(A9, "88.118.8", "battery", 1),
                 lambda: tpl.publish(A9, "88.118.8", "battery", 1)):  # fmt: skip
        with pytest.raises(Forbidden, match="may not manage templates of 88.118.8"):
            call()
    assert _meta(store) == before
    assert tpl.get(None, "88.118.8", "battery", 1).state == "published"


def test_node_templates_are_for_server_admins(tpl, store):
    with pytest.raises(Forbidden, match="server admins only"):
        tpl.define(A8, "node", BATTERY)
    with pytest.raises(AuthenticationNeeded):
        tpl.define(None, "node", BATTERY)
    assert tpl.define(ROOT, "NODE", BATTERY).scope == "node"
    assert tpl.define(OPERATOR, "node", BATTERY).version == 2
    assert tpl.define(ROOT, "88.118.9", BATTERY).scope == "88.118.9"  # any prefix


def test_a_scope_must_be_homed_here(tpl):
    with pytest.raises(NotResponsible):
        tpl.define(ROOT, "88.118.77", BATTERY)
    with pytest.raises(NotResponsible):
        tpl.list(None, "88.118.77")


def test_drafts_are_seen_only_by_those_who_manage_the_scope(tpl, battery):
    tpl.define(A8, "88.118.8", BATTERY)  # version 2, a draft
    tpl.define(A8, "88.118.8", {**BATTERY, "name": "draft-only"})
    assert tpl.get(None, "88.118.8", "battery").version == 1
    assert tpl.get(A9, "88.118.8", "battery").version == 1
    assert tpl.get(A8, "88.118.8", "battery").version == 2
    with pytest.raises(HandleNotFound):
        tpl.get(A9, "88.118.8", "battery", 2)
    with pytest.raises(HandleNotFound):
        tpl.get(None, "88.118.8", "draft-only")
    assert tpl.list(None, "88.118.8") == [
        {"name": "battery", "latest": 1, "versions": [{"version": 1, "state": "published"}]}]
    assert tpl.list(A8, "88.118.8") == [
        {"name": "battery", "latest": 2, "versions": [{"version": 1, "state": "published"},
                                                      {"version": 2, "state": "draft"}]},
        {"name": "draft-only", "latest": 1, "versions": [{"version": 1, "state": "draft"}]}]


# -- lifecycle -------------------------------------------------------------------------------------


def test_lifecycle_draft_published_withdrawn_published(tpl, store):
    tpl.define(A8, "88.118.8", BATTERY)
    with pytest.raises(MalformedRequest, match="is a draft"):
        tpl.withdraw(A8, "88.118.8", "battery", 1)
    assert tpl.publish(A8, "88.118.8", "battery", 1).state == "published"
    assert tpl.publish(A8, "88.118.8", "battery", 1).state == "published"  # idempotent
    assert tpl.withdraw(A8, "88.118.8", "battery", 1).state == "withdrawn"
    assert tpl.withdraw(A8, "88.118.8", "battery", 1).state == "withdrawn"
    assert tpl.publish(A8, "88.118.8", "battery", 1).state == "published"
    with pytest.raises(HandleNotFound):
        tpl.publish(A8, "88.118.8", "battery", 9)


def test_only_drafts_can_be_deleted(tpl, battery, store):
    for state in ("published", "withdrawn"):
        if state == "withdrawn":
            tpl.withdraw(A8, "88.118.8", "battery", 1)
        before = _meta(store)
        with pytest.raises(MalformedRequest, match=f"is {state}: only drafts"):
            tpl.delete(A8, "88.118.8", "battery", 1)
        assert _meta(store) == before
    t2 = tpl.define(A8, "88.118.8", BATTERY)
    with pytest.raises(Forbidden):
        tpl.delete(A9, "88.118.8", "battery", t2.version)
    assert tpl.delete(A8, "88.118.8", "battery", t2.version).version == 2
    with pytest.raises(HandleNotFound):
        tpl.get(A8, "88.118.8", "battery", 2)


# -- instances -------------------------------------------------------------------------------------


def test_a_valid_instance_is_stored_with_grade_permissions(reg, battery, store):
    values = fields()
    values[3] = values[3].replace(permissions=0x0F)  # public write asked for a general field
    values[5] = values[5].replace(permissions=0x0F)  # ... and for an important one
    reg.create_handle(A8, "88.118.8/B-1", values)
    got = _stored(store, "88.118.8/B-1")
    assert got[TEMPLATE_INDEX].data == b"88.118.8/battery/1"
    assert got[2000].permissions == 0x0F  # general: as given
    assert got[2001].permissions == 0x0E
    for index in (2002, 2004):  # important, core: no public read or write, admin read+write
        perms = got[index].permissions
        assert not perms & (PERM_PUBLIC_READ | PERM_PUBLIC_WRITE)
        assert perms & PERM_ADMIN_READ and perms & PERM_ADMIN_WRITE


def test_records_without_a_template_are_untouched(reg, battery, store):
    free = [v(1, "URL", "https://x"), v(2000, "ANYTHING", "goes", 0x0F),
            admin_value("0.NA/88.118.8", 200)]  # fmt: skip
    reg.create_handle(A8, "88.118.8/FREE", free)
    assert [(x.index, x.type, x.data, x.permissions) for x in _stored(store, "88.118.8/FREE")
            .values()] == [(x.index, x.type, x.data, x.permissions) for x in free]  # fmt: skip
    with reg.store.view() as view:
        assert reg.templates.apply(view, Identifier.parse("88.118.8/F"), Record(free), None) \
            == Record(free)  # fmt: skip


@pytest.mark.parametrize("change,pos,needle", [
    ({"serial": "AB"}, 3, "at least 3 needed"),
    ({"serial": "ABCDEFGHI"}, 3, "at most 8 allowed"),
    ({"capacity": "1234.5"}, 4, "digits before the point"),
    ({"capacity": "12.345"}, 4, "digits after the point"),
    ({"capacity": "1e3"}, 4, "not a decimal number"),
    ({"capacity": "12,5"}, 4, "not a decimal number"),
    ({"made": "2026-02-30"}, 5, "not a calendar date"),
    ({"made": "2026-2-3"}, 5, "YYYY-MM-DD"),
    ({"made": "2026-03-01T00:00"}, 5, "YYYY-MM-DD"),
    ({"manual": "mailto:a@b.c"}, 6, "http, https or ftp"),
    ({"manual": "/relative/path"}, 6, "http, https or ftp"),
    ({"manual": "https://exa mple.com"}, 6, "no spaces"),
    ({"manual": "https:///nohost"}, 6, "names no host"),
    ({"chemistry": "lfp"}, 7, "not one of: LFP, NMC"),
])  # fmt: skip
def test_each_type_is_checked(reg, battery, store, change, pos, needle):
    before = store.last_txn_id()
    exc = _violation(reg.create_handle, A8, "88.118.8/B-2", fields(**change))
    [err] = exc.errors
    assert err.path == f"values[{pos}].data.value" and err.index == 2000 + pos - 3
    assert needle in err.message and err.field in err.message
    assert store.last_txn_id() == before and _stored(store, "88.118.8/B-2") is None


@pytest.mark.parametrize("change", [
    {"serial": "序列号一二"}, {"serial": "ABCDEFGH"}, {"capacity": "999.99"},
    {"capacity": "-0.5"}, {"capacity": "007.10"}, {"capacity": "12"}, {"made": "2024-02-29"},
    {"manual": "ftp://files.example.com/a"}, {"manual": "HTTP://EXAMPLE.COM:8080/x?y#z"},
    {"chemistry": "NMC"}, {"manual": None}, {"manual": ""}, {"capacity": None},
])  # fmt: skip
def test_values_that_fit(reg, battery, change):
    # characters, not bytes: five CJK characters are 15 bytes and fit maxLength 8
    reg.create_handle(A8, "88.118.8/B-3", fields(**change))


def test_every_violation_of_a_record_is_reported(reg, battery, store):
    values = fields(serial=None, made="tomorrow", chemistry="LTO")
    values.append(v(2999, "EXTRA", "x"))
    values.append(v(2003, "MANUAL_URL", "https://a"))  # replaces the manual at 2003 below
    values = [x for i, x in enumerate(values) if not (x.index == 2003 and x.type == "manual")]
    exc = _violation(reg.create_handle, A8, "88.118.8/B-4", values)
    assert _paths(exc) == ["values[4].data.value", "values[5].data.value", "values[6].index",
                           "values[7].type", "values"]  # fmt: skip
    missing = exc.errors[-1]
    assert (missing.index, missing.field) == (2000, "serial")
    assert "required field 'serial' (index 2000, type serial) is missing" in missing.message
    assert "has value type manual, not MANUAL_URL" in exc.errors[3].message
    assert "index 2999 is not a field of template 88.118.8/battery/1" in exc.errors[2].message
    assert exc.message.endswith("(and 2 more)")


def test_a_required_field_must_not_be_empty(reg, battery):
    [err] = _violation(reg.create_handle, A8, "88.118.8/B-5", fields(made="")).errors
    assert err.path == "values[5].data.value" and "required field 'made' is empty" in err.message


@pytest.mark.parametrize("ref,needle", [
    ("88.118.8/battery/7", "does not exist"),
    ("88.118.8/cell/1", "does not exist"),
    ("88.118.8/battery", "<scope>/<name>/<version>"),
    ("88.118.9/battery/1", "belongs to prefix 88.118.9"),
])  # fmt: skip
def test_the_template_must_exist_and_be_the_prefixes(reg, tpl, battery, ref, needle):
    tpl.publish(ROOT, "88.118.9", "battery", tpl.define(ROOT, "88.118.9", BATTERY).version)
    [err] = _violation(reg.create_handle, A8, "88.118.8/B-6", fields(ref)).errors
    assert (err.path, err.index, err.field) == ("values[2].data.value", 1001, "TEMPLATE")
    assert needle in err.message


def test_only_a_published_template_accepts_new_instances(reg, tpl, battery):
    tpl.define(A8, "88.118.8", BATTERY)  # version 2: a draft
    [err] = _violation(reg.create_handle, A8, "88.118.8/B-7", fields("88.118.8/battery/2")).errors
    assert "is draft: only a published template" in err.message
    tpl.withdraw(A8, "88.118.8", "battery", 1)
    [err] = _violation(reg.create_handle, A8, "88.118.8/B-7", fields()).errors
    assert "is withdrawn" in err.message and err.path == "values[2].data.value"


def test_index_1001_holds_only_the_template_value(reg, battery):
    values = fields()
    values[2] = v(TEMPLATE_INDEX, "URL", "https://a")
    [err] = _violation(reg.create_handle, A8, "88.118.8/B-8", values).errors
    assert err.path == "values[2].type" and "reserved for the TEMPLATE value" in err.message


def test_a_node_template_serves_every_prefix(reg, tpl):
    tpl.publish(ROOT, "node", "battery", tpl.define(ROOT, "node", BATTERY).version)
    reg.create_handle(A8, "88.118.8/N-1", fields("node/battery/1"))
    nine = fields("NODE/battery/1")
    nine[1] = admin_value("0.NA/88.118.9", 200)
    reg.create_handle(A9, "88.118.9/N-1", nine)  # same serial: another prefix


def test_instances_of_a_withdrawn_template_stay_usable(reg, tpl, battery, store):
    reg.create_handle(A8, "88.118.8/W-1", fields())
    tpl.withdraw(A8, "88.118.8", "battery", 1)
    assert [x.data for x in reg.read(A8, "88.118.8/W-1") if x.index == 2000] == [b"SN-001"]
    reg.put_values(A8, "88.118.8/W-1", [v(2003, "manual", "https://example.com/v2")])
    reg.create_handle(A8, "88.118.8/W-1", fields(serial="SN-002"), overwrite=True)
    [err] = _violation(reg.put_values, A8, "88.118.8/W-1", [v(2003, "manual", "nope")]).errors
    assert err.path == "values[0].data.value"  # position in the values given
    reg.delete_handle(A8, "88.118.8/W-1")
    assert _stored(store, "88.118.8/W-1") is None


def test_moving_an_instance_to_another_template_needs_it_published(reg, tpl, battery):
    reg.create_handle(A8, "88.118.8/M-1", fields())
    tpl.define(A8, "88.118.8", BATTERY)
    moved = [template_value("88.118.8/battery/2")]
    assert "is draft" in _violation(reg.put_values, A8, "88.118.8/M-1", moved).errors[0].message
    tpl.publish(A8, "88.118.8", "battery", 2)
    reg.put_values(A8, "88.118.8/M-1", moved)
    tpl.withdraw(A8, "88.118.8", "battery", 1)
    back = [template_value("88.118.8/battery/1")]
    assert "is withdrawn" in _violation(reg.put_values, A8, "88.118.8/M-1",
                                        back).errors[0].message  # fmt: skip


def test_the_template_value_cannot_be_removed_from_an_instance(reg, battery, store):
    reg.create_handle(A8, "88.118.8/R-1", fields())
    before = store.last_txn_id()
    [err] = _violation(reg.remove_values, A8, "88.118.8/R-1", [TEMPLATE_INDEX]).errors
    assert (err.path, err.index) == ("values", 1001) and "delete the identifier" in err.message
    bare = [x for x in fields() if x.index < 1001]
    _violation(reg.create_handle, A8, "88.118.8/R-1", bare, overwrite=True)
    assert store.last_txn_id() == before


def test_removing_a_required_field_is_refused_at_values(reg, battery):
    reg.create_handle(A8, "88.118.8/R-2", fields())
    [err] = _violation(reg.remove_values, A8, "88.118.8/R-2", [2002]).errors
    assert (err.path, err.index, err.field) == ("values", 2002, "made")
    reg.remove_values(A8, "88.118.8/R-2", [2003])  # optional: fine


def test_a_refused_write_changes_nothing_even_when_it_is_also_forbidden(reg, battery, store):
    before = store.last_txn_id(), _meta(store)
    with pytest.raises(Forbidden):  # authorization comes first: no template detail leaks
        reg.create_handle(A9, "88.118.8/X-1", fields(serial="x"))
    assert (store.last_txn_id(), _meta(store)) == before


# -- unique ----------------------------------------------------------------------------------------


def test_unique_values_within_the_prefix(reg, battery, store):
    reg.create_handle(A8, "88.118.8/U-1", fields(serial="SN-1", capacity="10.5"))
    before = store.last_txn_id()
    exc = _violation(reg.create_handle, A8, "88.118.8/U-2", fields(serial="SN-1",
                                                                   capacity="10.50"))  # fmt: skip
    assert _paths(exc) == ["values[3].data.value", "values[4].data.value"]  # 10.50 = 10.5
    assert "another identifier under 88.118.8 has this value" in exc.errors[0].message
    assert "U-1" not in exc.message  # the holder is not named
    assert store.last_txn_id() == before
    reg.create_handle(A8, "88.118.8/U-1", fields(serial="SN-1", capacity="10.5"),
                      overwrite=True)  # its own values: fine  # fmt: skip


def test_unique_values_are_freed_on_change_and_delete(reg, battery):
    reg.create_handle(A8, "88.118.8/U-3", fields(serial="SN-3", capacity="1"))
    reg.put_values(A8, "88.118.8/U-3", [v(2000, "serial", "SN-3b")])
    reg.create_handle(A8, "88.118.8/U-4", fields(serial="SN-3", capacity="2"))  # freed by change
    _violation(reg.create_handle, A8, "88.118.8/U-5", fields(serial="SN-3b", capacity="3"))
    reg.remove_values(A8, "88.118.8/U-4", [2001])
    reg.create_handle(A8, "88.118.8/U-5", fields(serial="SN-5", capacity="2"))  # freed by removal
    reg.delete_handle(A8, "88.118.8/U-3")
    reg.create_handle(A8, "88.118.8/U-6", fields(serial="SN-3b", capacity="6"))  # freed by delete


def test_unique_index_entries_follow_the_records(reg, battery, store):
    reg.create_handle(A8, "88.118.8/U-7", fields(serial="SN-7", capacity="7"))
    uniq = [k for k, _ in _meta(store) if k.startswith(b"uniq:")]
    assert len(uniq) == 2 and all(k.startswith(b"uniq:88.118.8:88.118.8/battery:200")
                                  for k in uniq)  # fmt: skip
    reg.delete_handle(A8, "88.118.8/U-7")
    assert not [k for k, _ in _meta(store) if k.startswith(b"uniq:")]


def test_unique_within_one_batch(reg, battery):
    reg.create_handle(A8, "88.118.8/BA-1", fields(serial="SN-A", capacity="1"))
    item = reg.batch_item
    res = reg.apply_batch(A8, [
        item("create", "88.118.8/BA-2", fields(serial="SN-B", capacity="2")),
        item("create", "88.118.8/BA-3", fields(serial="SN-B", capacity="3")),   # B taken above
        item("update", "88.118.8/BA-1", fields(serial="SN-C", capacity="1")),   # frees A
        item("create", "88.118.8/BA-4", fields(serial="SN-A", capacity="4")),   # A: free now
        item("create", "88.118.8/BA-5", fields(serial="SN-C", capacity="5")),   # C: BA-1's now
        item("create", "88.118.8/BA-6", fields(serial="x", capacity="6")),      # too short
    ])  # fmt: skip
    assert [r.outcome for r in res.results] == [Outcome.OK, Outcome.INVALID_VALUE, Outcome.OK,
                                                Outcome.OK, Outcome.INVALID_VALUE,
                                                Outcome.INVALID_VALUE]  # fmt: skip
    assert res.results[1].message.startswith("values[3].data.value: field 'serial' is unique")
    assert "at least 3 needed" in res.results[5].message
    _violation(reg.create_handle, A8, "88.118.8/BA-7", fields(serial="SN-B", capacity="7"))


def test_a_stale_unique_entry_does_not_block(reg, battery, store):
    """A writer that bypasses templates (``idnode load``, a raw store write) leaves the index
    behind; an entry whose holder no longer has the value does not count."""
    reg.create_handle(A8, "88.118.8/S-1", fields(serial="SN-S", capacity="1"))
    store.write([Change(Identifier.parse("88.118.8/S-1").key, None)])  # deleted around it
    reg.create_handle(A8, "88.118.8/S-2", fields(serial="SN-S", capacity="1"))
    store.write([Change(Identifier.parse("88.118.8/S-2").key,
                        pack(Record(fields(serial="SN-Z", capacity="9"))))])  # changed around it
    reg.create_handle(A8, "88.118.8/S-3", fields(serial="SN-S", capacity="1"))
