"""The identifier ↔ DNS name mapping (``resolver.protocols.dns.mapping``, issue 6 §1).

Properties: reverse∘mapping is the identity on canonical keys, in both case modes; distinct
keys never share a name (pairs, near-miss pairs and whole batches); every name is valid DNS
(checked again with dnspython); ``from_dns_name`` accepts exactly the names the mapping
produces and returns ``None`` for everything else.  Tables pin the readable common cases.
"""

from __future__ import annotations

import itertools
import random
import re
import string

import dns.name
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.errors import InvalidIdentifier, Outcome
from resolver.identifier import Identifier, key_of
from resolver.protocols.dns.mapping import DEFAULT_APEX, from_dns_name, to_dns_name

LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
MARKED = re.compile(r"(?:sb|pb)--[a-z2-7]{1,59}\Z|uc--[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\Z")


def wire_length(name: str) -> int:
    return len(dns.name.from_text(name).to_wire())


def assert_valid_dns(name: str, apex: str = DEFAULT_APEX) -> None:
    assert name.endswith(".") and name == name.lower()
    assert name.endswith("." + apex.lower().rstrip(".") + ".") or apex == "."
    labels = name[:-1].split(".")
    for label in labels:
        assert len(label) <= 63, label
        assert LABEL.match(label), label
        # a label is plain (never "--" at 3-4, the RFC 5891 R-LDH space) or one of our markers
        assert label[2:4] != "--" or MARKED.match(label), label
    assert 1 + sum(1 + len(label) for label in labels) <= 255
    assert wire_length(name) <= 255  # dnspython's own count agrees (and it raises past 255)
    assert dns.name.from_text(name).to_text() == name


# -- strategies -------------------------------------------------------------------------------

no_control = st.characters(blacklist_categories=("Cs", "Cc"))
digit_prefixes = st.lists(st.integers(0, 10**6).map(str), min_size=1, max_size=5).map(".".join)
segments = st.one_of(
    st.from_regex(r"[A-Za-z0-9-]{1,12}", fullmatch=True),
    st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="./"),
            min_size=1, max_size=10),  # fmt: skip
    st.sampled_from(["xn--abc", "SB--X", "pb--ga", "uc--a", "-", "a-", "0", "NA", "_"]),
    st.from_regex(r"[a-z]{60,63}", fullmatch=True),
)
handle_prefixes = st.lists(segments, min_size=1, max_size=4).map(".".join)
suffixes = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,30}", fullmatch=True),  # case variants of LDH
    st.text(no_control, min_size=1, max_size=40),  # arbitrary Unicode, '/' and '.' included
    st.text(string.punctuation + string.ascii_letters + string.digits, min_size=1, max_size=30),
    st.text("aA-0", min_size=55, max_size=70),  # around the 59/63 label boundaries
    st.text("bB_é", min_size=60, max_size=130),  # long: several sb-- labels, or too long
    st.sampled_from(["xn--a", "sb--x", "uc--y", "UC--Y", "pb--z", "-a", "a-", "-", "a--b",
                     "ab--c", "SB--MFRGG", "88.118.8", "0.NA", "a/b"]),  # fmt: skip
)
identifiers = st.one_of(
    st.tuples(st.one_of(digit_prefixes, handle_prefixes), suffixes).map("/".join),
    digit_prefixes,  # slashless: the prefix handle 0.NA/<name>
    st.tuples(st.just("0.NA"), st.one_of(digit_prefixes, handle_prefixes)).map("/".join),
)
modes = st.booleans()


def name_or_none(ident: str, cs: bool) -> str | None:
    """The name, or None when the mapping refuses the identifier for its length."""
    try:
        return to_dns_name(ident, case_sensitive=cs)
    except InvalidIdentifier as exc:
        assert "too long for a DNS name" in exc.message
        # Short keys always fit: ≤ 15 one-byte encoded segments (7 octets each) plus a suffix
        # of ≤ 30 bytes (53 octets) plus the apex (16 octets) is far below 255.
        assert len(key_of(ident, case_sensitive=cs)) > 30, ident
        return None


# -- tables: the readable common cases -------------------------------------------------------


@pytest.mark.parametrize(
    "ident, cs, name",
    [
        ("88.118.8/SN-2026-0001", False, "sn-2026-0001.8.118.88.id.idnode.test."),
        ("88.118.8/sn-2026-0001", False, "sn-2026-0001.8.118.88.id.idnode.test."),
        ("88.118.8/sn-2026-0001", True, "sn-2026-0001.8.118.88.id.idnode.test."),
        ("88.118.8/SN-2026-0001", True, "uc--sn-2026-0001.8.118.88.id.idnode.test."),
        ("88.118.8/demo-1", False, "demo-1.8.118.88.id.idnode.test."),
        ("86.1000.470/Device-7", False, "device-7.470.1000.86.id.idnode.test."),
        ("20.500.12345/abc", True, "abc.12345.500.20.id.idnode.test."),
        ("88/123", True, "123.88.id.idnode.test."),
        # not a safe label: base32 of the key's suffix bytes
        ("88.118.8/SN_1", False, "sb--knhf6mi.8.118.88.id.idnode.test."),
        ("88.118.8/Sn-1", True, "sb--knxc2mi.8.118.88.id.idnode.test."),
        ("88.118.8/xn--a", False, "sb--lbhc2lkb.8.118.88.id.idnode.test."),
        # prefix handles: 0.NA/<prefix>, and the slashless spelling of the same key
        ("0.NA/88.118.8", False, "sb--ha4c4mjrhaxdq.na.0.id.idnode.test."),
        ("88.118.8", True, "sb--ha4c4mjrhaxdq.na.0.id.idnode.test."),
        ("test", True, "test.na.0.id.idnode.test."),
        # Handle prefixes beyond digits: LDH segments lower-cased, others pb--base32
        ("ABC.Def/x", False, "x.def.abc.id.idnode.test."),
        ("a b.c/x", False, "x.c.pb--ieqee.id.idnode.test."),
    ],
)
def test_readable_names(ident, cs, name):
    assert to_dns_name(ident, case_sensitive=cs) == name
    assert from_dns_name(name, case_sensitive=cs) == key_of(ident, case_sensitive=cs).decode()
    assert_valid_dns(name)


@pytest.mark.parametrize(
    "name, cs, ident",
    [
        ("sn-2026-0001.8.118.88.id.idnode.test.", False, "88.118.8/SN-2026-0001"),
        ("SN-2026-0001.8.118.88.ID.IdNode.Test", False, "88.118.8/SN-2026-0001"),
        ("sn-2026-0001.8.118.88.id.idnode.test.", True, "88.118.8/sn-2026-0001"),
        ("UC--SN-2026-0001.8.118.88.id.idnode.test.", True, "88.118.8/SN-2026-0001"),
        ("test.na.0.id.idnode.test.", True, "0.NA/TEST"),
        ("x.c.pb--ieqee.id.idnode.test.", True, "A B.C/x"),
    ],
)
def test_reverse_table(name, cs, ident):
    assert from_dns_name(name, case_sensitive=cs) == ident


def test_custom_apex_is_case_insensitive_with_or_without_dot():
    name = to_dns_name("88.118.8/SN-1", "Example.COM")
    assert name == "sn-1.8.118.88.example.com."
    assert to_dns_name("88.118.8/SN-1", "example.com.") == name
    for apex in ("example.com", "EXAMPLE.com.", "example.COM"):
        assert from_dns_name(name, apex) == "88.118.8/SN-1"
        assert from_dns_name(name.upper(), apex) == "88.118.8/SN-1"
    assert from_dns_name(name) is None  # not under the default apex
    assert to_dns_name("88/x", ".") == "x.88."
    assert from_dns_name("x.88.", ".") == "88/X"
    assert from_dns_name("x.88", ".") == "88/X"
    assert to_dns_name("88/x", "_ons.example") == "x.88._ons.example."


@pytest.mark.parametrize("apex", ["", "a..b", "a b.com", "é.com", "a." + "b" * 64, "x\\.y",
                                  ".".join(["abcdefghi"] * 26)])  # fmt: skip
def test_bad_apex_is_a_value_error(apex):
    with pytest.raises(ValueError):
        to_dns_name("88/x", apex)
    with pytest.raises(ValueError):
        from_dns_name("x.88.id.idnode.test.", apex)


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ident",
    ["", "88.118.8/", "a..b/c", ".a/b", "a./b", "88/a\x00b", "88/a\x85b", "x" * 3000,
     "a" * 64 + "/x",  # an LDH segment longer than a label
     "_" * 37 + "/x",  # a non-LDH segment whose base32 does not fit one label
     ".".join("1" * 120) + "/x",  # 120 one-digit segments: 256 octets before the apex
     "88.118.8/" + "_" * 132,  # encoded suffix past 255 octets
     "88.118.8/" + "a" * 64 + "_" * 70],  # fmt: skip
)
def test_unmappable_identifiers_raise_invalid_identifier(ident):
    with pytest.raises(InvalidIdentifier) as info:
        to_dns_name(ident)
    assert info.value.outcome is Outcome.INVALID_IDENTIFIER


def test_length_limits_are_exact():
    assert_valid_dns(to_dns_name("a" * 63 + "/x"))
    assert_valid_dns(to_dns_name("_" * 36 + "/x"))
    longest = to_dns_name("88.118.8/" + "_" * 131)
    assert wire_length(longest) <= 255 and wire_length(longest) > 250
    assert from_dns_name(longest) == "88.118.8/" + "_" * 131
    with pytest.raises(InvalidIdentifier, match="too long for a DNS name"):
        to_dns_name("88.118.8/" + "_" * 132)
    # a plain suffix of 64 characters no longer fits one label: it is encoded instead
    name = to_dns_name("88/" + "a" * 64)
    assert name.startswith("sb--") and from_dns_name(name) == "88/" + "A" * 64


@pytest.mark.parametrize(
    "name",
    [
        "sn-1.8.118.88.example.com.",  # another apex
        "id.idnode.test.", "idnode.test.", ".", "", "test.",  # the apex, its parents, the root
        "sn-1.id.idnode.test.",  # no prefix segment
        "sn-1.8.118.88.xid.idnode.test.",  # apex matched by text but not by labels
        "sn-1.8.118.88.id.idnode.test.evil.",
        "sn_1.8.118.88.id.idnode.test.", "sn 1.88.id.idnode.test.", "é.88.id.idnode.test.",
        "a..88.id.idnode.test.", ".a.88.id.idnode.test.", "a\\.b.88.id.idnode.test.",
        "-a.88.id.idnode.test.", "a-.88.id.idnode.test.", "a.-.id.idnode.test.",
        "a" * 64 + ".88.id.idnode.test.",  # label longer than 63
        "xn--bcher-kva.88.id.idnode.test.", "ab--c.88.id.idnode.test.",  # R-LDH, not ours
        "sb--mfrgg.88.id.idnode.test.",  # base32 of "abc": a plain label is the only form
        "sb--l5.88.id.idnode.test.",  # non-canonical base32 (trailing bits set)
        "sb--l.88.id.idnode.test.", "sb--.88.id.idnode.test.", "sb--l4!.88.id.idnode.test.",
        "sb--l4.sb--l4.88.id.idnode.test.",  # only the last chunk may be short
        "x.sb--l4.88.id.idnode.test.",  # a suffix chunk in prefix position
        "pb--l4.88.id.idnode.test.",  # a prefix label in suffix position
        "x.pb--ge.id.idnode.test.",  # pb-- of "1": plain is the only form
        "x.pb--.id.idnode.test.", "x.pb--1.id.idnode.test.",
        "uc--sn.88.id.idnode.test.",  # upper-case form: not produced when case-insensitive
        "sn.na.0.id.idnode.test.x",
    ],
)
def test_names_not_produced_are_misses(name):
    assert from_dns_name(name) is None


@pytest.mark.parametrize("name", ["uc--123.88.id.idnode.test.",  # nothing to upper-case
                                  "uc--sn.na.0.id.idnode.test.",  # 0.NA is folded: plain form
                                  "uc---a.88.id.idnode.test.",
                                  "sb--mfrgg.88.id.idnode.test.",  # "abc" is plain
                                  "sb--ifbeg.88.id.idnode.test."])  # "ABC" is uc--abc  # fmt: skip
def test_case_sensitive_misses(name):
    assert from_dns_name(name, case_sensitive=True) is None


def test_case_sensitive_mode_keeps_case_and_separates_variants():
    variants = ["88/" + "".join(p) for p in itertools.product("aA", "bB", "-", "1")]
    names = {to_dns_name(v, case_sensitive=True) for v in variants}
    assert len(names) == len(variants) == 4
    for v in variants:
        assert from_dns_name(to_dns_name(v, case_sensitive=True), case_sensitive=True) == v
    assert {to_dns_name(v) for v in variants} == {"ab-1.88.id.idnode.test."}


# -- properties -------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(ident=identifiers, cs=modes)
def test_reverse_of_mapping_is_the_canonical_key(ident, cs):
    key = key_of(ident, case_sensitive=cs)
    name = name_or_none(ident, cs)
    if name is None:
        return
    assert_valid_dns(name)
    back = from_dns_name(name, case_sensitive=cs)
    assert back == key.decode("utf-8")
    assert Identifier.parse(back, case_sensitive=cs).key == key
    if cs and "/" in ident and not ident.upper().startswith("0.NA/"):
        assert back.partition("/")[2] == ident.partition("/")[2]  # case survives exactly
    # DNS reads names case-insensitively, with or without the final dot
    assert from_dns_name(name.upper(), case_sensitive=cs) == back
    assert from_dns_name(name[:-1], case_sensitive=cs) == back
    assert to_dns_name(back, case_sensitive=cs) == name
    # the other mode's reverse never misreads this name as a different key
    other = from_dns_name(name, case_sensitive=not cs)
    assert other is None or to_dns_name(other, case_sensitive=not cs) == name


def _variants(ident: str) -> list[str]:
    """Near misses of ``ident``: case flips and the slash moved to another dot."""
    out = [ident.swapcase(), ident.upper(), ident.lower()]
    flat = ident.replace("/", ".", 1)
    dots = [i for i, c in enumerate(flat) if c == "."]
    out += [flat[:i] + "/" + flat[i + 1 :] for i in dots]
    return out


@settings(max_examples=150, deadline=None)
@given(a=identifiers, b=identifiers, cs=modes)
def test_distinct_keys_never_share_a_name(a, b, cs):
    for other in [b, *_variants(a)]:
        try:
            key_b = key_of(other, case_sensitive=cs)
        except InvalidIdentifier:
            continue
        na, nb = name_or_none(a, cs), name_or_none(other, cs)
        if na is None or nb is None:
            continue
        same_key = key_of(a, case_sensitive=cs) == key_b
        assert (na.lower() == nb.lower()) == same_key, (a, other)


@settings(max_examples=6, deadline=None)
@given(batch=st.lists(identifiers, min_size=20, max_size=60), cs=modes)
def test_a_generated_batch_has_no_collisions(batch, cs):
    seen: dict[str, bytes] = {}
    for ident in batch:
        name = name_or_none(ident, cs)
        if name is None:
            continue
        key = key_of(ident, case_sensitive=cs)
        assert seen.setdefault(name.lower(), key) == key, (ident, name)


@pytest.mark.parametrize("cs", [False, True])
def test_a_large_random_batch_has_no_collisions(cs):
    rnd = random.Random(6)
    pool = string.ascii_letters + string.digits + "-_./:#é中 " + "\u00a0"
    seen: dict[str, bytes] = {}
    for _ in range(6000):
        prefix = ".".join(str(rnd.randrange(1000)) if rnd.random() < 0.7
                          else "".join(rnd.choices(pool.replace(".", "").replace("/", ""),
                                                   k=rnd.randint(1, 6)))
                          for _ in range(rnd.randint(1, 4)))  # fmt: skip
        suffix = "".join(rnd.choices(pool, k=rnd.choice((1, 2, 5, 12, 40, 80))))
        ident = f"{prefix}/{suffix}"
        name = name_or_none(ident, cs)
        if name is not None:
            key = key_of(ident, case_sensitive=cs)
            assert seen.setdefault(name.lower(), key) == key, (ident, name)
    assert len(seen) > 5000


@pytest.mark.parametrize("cs", [False, True])
def test_an_adversarial_batch_has_no_collisions(cs):
    # Every suffix of 1-3 characters over an alphabet of case, LDH, separators and non-ASCII,
    # under prefixes that differ only in where the hierarchy splits.
    alphabet = "aA1-._/é"
    suffixes_ = ["".join(p) for n in (1, 2, 3) for p in itertools.product(alphabet, repeat=n)]
    prefixes = ["1", "1.2", "2.1", "1.sb--x", "0.NA", "SB--L4", "1.a"]
    seen: dict[str, bytes] = {}
    keys = set()
    for prefix, suffix in itertools.product(prefixes, suffixes_):
        ident = f"{prefix}/{suffix}"
        key = key_of(ident, case_sensitive=cs)
        keys.add(key)
        name = to_dns_name(ident, case_sensitive=cs)
        assert seen.setdefault(name, key) == key, (ident, name)
        assert from_dns_name(name, case_sensitive=cs) == key.decode()
    assert len(seen) == len(keys) > 2500


garbage_labels = st.one_of(
    st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True),
    st.from_regex(r"(?:sb|pb|uc|xn)--[a-z0-9]{0,12}", fullmatch=True),
    st.text(string.printable, min_size=1, max_size=6),
)


@settings(max_examples=250, deadline=None)
@given(labels=st.lists(garbage_labels, min_size=1, max_size=5), cs=modes)
def test_reverse_accepts_exactly_the_names_produced(labels, cs):
    name = ".".join(labels) + "." + DEFAULT_APEX
    back = from_dns_name(name, case_sensitive=cs)
    if back is not None:
        assert to_dns_name(back, case_sensitive=cs) == name.lower()
    assert from_dns_name(".".join(labels) + ".example.org.", case_sensitive=cs) is None


def test_an_apex_with_an_underscore_label_round_trips():
    apex = "_ids.example."
    name = to_dns_name("88.118.8/SN-1", apex)
    assert name == "sn-1.8.118.88._ids.example."
    assert from_dns_name(name, apex) == "88.118.8/SN-1"
    assert from_dns_name("sn_1.8.118.88._ids.example.", apex) is None  # "_" only in the apex


# -- prefix_of_dns_name: the empty-non-terminal reading ----------------------------------------


@given(prefix=handle_prefixes, suffix=suffixes, cs=modes)
def test_every_ancestor_name_of_an_identifier_reads_as_its_prefix_ancestors(prefix, suffix, cs):
    from resolver.protocols.dns.mapping import prefix_of_dns_name

    ident = f"{prefix}/{suffix}"
    name = name_or_none(ident, cs)
    if name is None:
        return
    key_prefix = key_of(ident, case_sensitive=cs).partition(b"/")[0].decode()
    segments = key_prefix.split(".")
    labels = name[: -len(DEFAULT_APEX)].rstrip(".").split(".")
    n_prefix = len(segments)
    # Drop the suffix label(s): the last n_prefix labels are the prefix segments, reversed.
    prefix_labels = labels[len(labels) - n_prefix :]
    for k in range(1, n_prefix + 1):
        ancestor_name = ".".join(prefix_labels[n_prefix - k :]) + "." + DEFAULT_APEX
        assert prefix_of_dns_name(ancestor_name) == ".".join(segments[:k])
        assert prefix_of_dns_name(ancestor_name.upper()) == ".".join(segments[:k])


@pytest.mark.parametrize("name", [
    DEFAULT_APEX, "x.example.", "sb--ge.88." + DEFAULT_APEX, "uc--a.88." + DEFAULT_APEX,
    "pb--not-b32!." + DEFAULT_APEX, "a_b." + DEFAULT_APEX, "pb--nbswy3dp." + DEFAULT_APEX,
])  # fmt: skip
def test_prefix_of_dns_name_misses(name):
    from resolver.protocols.dns.mapping import prefix_of_dns_name

    # pb--nbswy3dp is base32 of "hello": lower case, which a key's prefix never is.
    assert prefix_of_dns_name(name) is None
