"""Shared parity vectors: the records a parity store holds and the resolution cases over them.

Plain data, no pytest: ``prefix_handles()`` and ``records()`` give ``(handle text, Record)``;
``changes(case_sensitive)`` turns them into store writes; ``cases()`` lists ``Case`` objects,
each saying what the request is and what kind of answer it must get (``hit`` with the indexes
expected in record order, ``miss`` = responseCode 100, ``empty`` = responseCode 200, or
``declined`` = the hot path returns None and the general path answers 102 or 301).
"""

from __future__ import annotations

import dataclasses

from resolver.identifier import Identifier
from resolver.record import Record, pack
from resolver.store import Change
from resolver.values import (
    TTL_ABSOLUTE, AdminRecord, HandleValue, Interface, ServerInfo, SiteInfo, encode_public_key,
    encode_vlist,
)  # fmt: skip

T2026 = 1767225600
PUBLIC = 0x0E  # 1110: admin read/write, public read
PRIVATE = 0x0C  # 1100: no public read


def v(index: int, vtype: str, data: bytes | str, perms: int = PUBLIC, **kw) -> HandleValue:
    if isinstance(data, str):
        data = data.encode("utf-8")
    kw.setdefault("timestamp", T2026)
    return HandleValue(index, vtype, data, permissions=perms, **kw)


def admin(handle: str = "0.NA/88.118.8", index: int = 200, perms: int = 0x7FF) -> bytes:
    return AdminRecord(handle, index, perms).to_bytes()


SITE = SiteInfo(
    attributes=(("desc", "parity"),),
    servers=(ServerInfo(1, ServerInfo.pack_address("127.0.0.1"), b"",
                        (Interface(3, 1, 2641), Interface(2, 0, 2641), Interface(3, 2, 8000))),),
).to_bytes()  # fmt: skip
PUBKEY = encode_public_key(
    {"kty": "RSA", "n": "wLsh0ezRcRn1Nf0gGu8xq0JQ1RMtUT5ZpDxV1AQWxqM", "e": "AQAB"})  # fmt: skip

UNICODE_SUFFIX = "设备-压缩机/批次-2026-11/序列号-0001-温州工厂-αβγ"
QUOTED_SUFFIX = 'quote"and\\backslash'

#: Types of the "typed" record, by index: the type filters below are checked against these.
TYPED = [
    v(1, "URL", "https://example.com/typed"),
    v(2, "EMAIL", "qa@example.com"),
    v(3, "PRODUCT", "base"),
    v(4, "PRODUCT.BATCH", '{"batch":"B-2026-11","line":3}'),
    v(5, "product.cost", "412.50 CNY"),
    v(6, "PRODUCTX", "not a sub-type of PRODUCT"),
    v(7, "PRODUCT.BATCH.LOT", "lot 7"),
    v(8, "url", "https://example.com/lower-case-type"),
    v(9, "BLOB", bytes(range(256))),
    v(10, "类型", "unicode type"),
    v(11, "HS_SITE", SITE),
    v(12, "10320/loc", '<locations><location href="https://example.com/a"/></locations>'),
    v(13, 'Q"T\\', 'data with "quotes" and \\ backslashes and \t tab'),
    v(14, "TTL", "absolute ttl", ttl=T2026 + 3600, ttl_type=TTL_ABSOLUTE),
    v(15, "PERMS", "public read and write", perms=0x0F, references=(("88.118.8/typed", 1),)),
    v(16, "PERMS", "public read only", perms=0x02),
    v(100, "HS_ADMIN", admin()),
    v(200, "HS_VLIST", encode_vlist([("88.118.8/ADMIN", 300), ("0.NA/88.118.8", 200)])),
    v(300, "HS_PUBKEY", PUBKEY),
]

MIXED = [
    v(1, "URL", "https://example.com/mixed"),
    v(2, "SECRET", "withheld", perms=PRIVATE),
    v(3, "EMAIL", "mixed@example.com"),
    v(4, "HS_SECKEY", "s3cret", perms=PRIVATE),
    v(5, "PRODUCT.COST", "withheld cost", perms=0x08),
    v(6, "PRODUCT.BATCH", "B-1"),
    v(7, "URL", "https://example.com/withheld-url", perms=0x0D),
]


def _big(n: int, private_every: int | None = None) -> list[HandleValue]:
    out = []
    types = ["URL", "EMAIL", "PRODUCT.BATCH", "DATA", "HS_ADMIN"]
    for i in range(1, n + 1):
        t = types[i % len(types)]
        if t == "HS_ADMIN":
            data = admin(index=i)
        else:
            size = 1000 + (i * 37) % 4000
            data = (f"{i:05d}-设备-" * (size // 16 + 1)).encode()[:size]
            if i % 11 == 0:
                data = bytes((i * k) & 0xFF for k in range(size))  # binary → base64
        perms = PRIVATE if private_every and i % private_every == 0 else PUBLIC
        out.append(v(i * 3, t, data, perms))
    return out


BIG = _big(300)
BIG_MIXED = _big(260, private_every=7)
PRIVATE_ONLY = [v(1, "SECRET", "x", perms=PRIVATE), v(2, "URL", "https://x", perms=0x08)]


def prefix_handles() -> list[tuple[str, Record]]:
    return [
        ("0.NA/88.118.8", Record([
            v(100, "HS_ADMIN", admin("0.NA/88.118.8", 300)),
            v(1, "HS_SITE", SITE),
            v(200, "HS_VLIST", encode_vlist([("88.118.8/ADMIN", 300)])),
            v(300, "HS_SECKEY", "prefix secret", perms=PRIVATE),
        ])),
        ("0.NA/88.118.9", Record([v(100, "HS_ADMIN", admin("0.NA/88.118.9", 300))])),
        ("0.NA/88.118.10", Record([v(300, "HS_SECKEY", "only private", perms=PRIVATE)])),
        ("0.NA/TEST.Prefix", Record([v(100, "HS_ADMIN", admin("0.NA/TEST.Prefix", 300)),
                                     v(2, "DESC", "letters in the prefix")])),
        ("0.NA/中国.8", Record([v(100, "HS_ADMIN", admin("0.NA/中国.8", 300))])),
        ("0.NA/88.118.11", Record([])),  # a prefix handle without values
    ]  # fmt: skip


def records() -> list[tuple[str, Record]]:
    return [
        ("88.118.8/SN-2026-0001", Record([
            v(1, "URL", "https://example.com/sn/0001"), v(100, "HS_ADMIN", admin())])),
        ("88.118.8/typed", Record(TYPED)),
        ("88.118.8/mixed", Record(MIXED)),
        ("88.118.8/private", Record(PRIVATE_ONLY)),
        ("88.118.8/big", Record(BIG)),
        ("88.118.8/big-mixed", Record(BIG_MIXED)),
        ("88.118.8/" + UNICODE_SUFFIX, Record([v(1, "URL", "https://example.com/设备/0001"),
                                               v(2, "DESC", "Unicode suffix with slashes")])),
        ("88.118.8/a/b/c//d/", Record([v(1, "URL", "https://example.com/slashes")])),
        ("88.118.8/" + QUOTED_SUFFIX, Record([v(1, "URL", 'https://example.com/"q"'),
                                              v(2, "SECRET", "x", perms=PRIVATE)])),
        ('88.118.8/"', Record([v(1, "URL", "https://example.com/quote")])),
        ("88.118.8/\\", Record([v(1, "URL", "https://example.com/backslash")])),
        ("88.118.8/MixedCase", Record([v(1, "URL", "https://example.com/mixed-case")])),
        ("88.118.8/straße-é-ǆ", Record([v(1, "URL", "https://example.com/non-ascii-case")])),
        ("88.118.8/empty", Record([])),  # a record without values
        ("88.118.9/only", Record([v(1, "URL", "https://example.com/nine")])),
        ("TEST.Prefix/Item-1", Record([v(1, "URL", "https://example.com/item-1")])),
        ("中国.8/条目", Record([v(1, "URL", "https://example.com/条目")])),
    ]  # fmt: skip


def changes(case_sensitive: bool = False) -> list[Change]:
    out = []
    for handle, rec in prefix_handles():
        ident = Identifier.parse(handle, case_sensitive=case_sensitive)
        out.append(Change(ident.suffix_key, pack(rec), prefix=True))
    for handle, rec in records():
        out.append(Change(Identifier.parse(handle, case_sensitive=case_sensitive).key, pack(rec)))
    return out


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    handle: bytes
    types: tuple[str, ...] = ()
    indexes: tuple[int, ...] = ()
    expect: str = "hit"  # hit | miss | empty | declined
    want: tuple[int, ...] | None = None  # for hits: the indexes answered, in record order
    case_sensitive: bool = False


def _idx(values, pred=lambda x: True) -> tuple[int, ...]:
    return tuple(x.index for x in values if x.public_read and pred(x))


def _hit(cid, handle, values, types=(), indexes=(), pred=lambda x: True, **kw) -> Case:
    h = handle.encode() if isinstance(handle, str) else handle
    return Case(cid, h, tuple(types), tuple(indexes), "hit", _idx(values, pred), **kw)


def _c(cid, handle, expect, types=(), indexes=(), **kw) -> Case:
    h = handle.encode() if isinstance(handle, str) else handle
    return Case(cid, h, tuple(types), tuple(indexes), expect, None, **kw)


def cases() -> list[Case]:
    R = dict(records())
    P = dict(prefix_handles())
    typed = "88.118.8/typed"
    mixed = "88.118.8/mixed"
    out = [
        # plain hits
        _hit("sn", "88.118.8/SN-2026-0001", R["88.118.8/SN-2026-0001"]),
        _hit("sn-lower", "88.118.8/sn-2026-0001", R["88.118.8/SN-2026-0001"]),
        _hit("typed-all", typed, TYPED),
        _hit("typed-upper", "88.118.8/TYPED", TYPED),
        _hit("mixed-public-only", mixed, MIXED),
        _hit("big", "88.118.8/big", BIG),
        _hit("big-mixed", "88.118.8/big-mixed", BIG_MIXED),
        _hit("unicode-suffix", "88.118.8/" + UNICODE_SUFFIX, R["88.118.8/" + UNICODE_SUFFIX]),
        _hit("slashes", "88.118.8/a/b/c//d/", R["88.118.8/a/b/c//d/"]),
        _hit("slashes-upper", "88.118.8/A/B/C//D/", R["88.118.8/a/b/c//d/"]),
        _hit("quote-backslash", "88.118.8/" + QUOTED_SUFFIX, R["88.118.8/" + QUOTED_SUFFIX]),
        _hit("quote-backslash-upper", "88.118.8/" + QUOTED_SUFFIX.upper(),
             R["88.118.8/" + QUOTED_SUFFIX]),
        _hit("lone-quote", '88.118.8/"', R['88.118.8/"']),
        _hit("lone-backslash", "88.118.8/\\", R["88.118.8/\\"]),
        _hit("case-as-stored", "88.118.8/MixedCase", R["88.118.8/MixedCase"]),
        _hit("case-lower", "88.118.8/mixedcase", R["88.118.8/MixedCase"]),
        _hit("case-upper", "88.118.8/MIXEDCASE", R["88.118.8/MixedCase"]),
        _hit("non-ascii-as-stored", "88.118.8/straße-é-ǆ", R["88.118.8/straße-é-ǆ"]),
        _hit("non-ascii-ascii-folded", "88.118.8/STRAßE-é-ǆ", R["88.118.8/straße-é-ǆ"]),
        _hit("other-prefix", "88.118.9/only", R["88.118.9/only"]),
        _hit("letter-prefix", "TEST.Prefix/Item-1", R["TEST.Prefix/Item-1"]),
        _hit("letter-prefix-lower", "test.prefix/item-1", R["TEST.Prefix/Item-1"]),
        _hit("unicode-prefix", "中国.8/条目", R["中国.8/条目"]),
        # type filters
        _hit("type-url", typed, TYPED, ["URL"], pred=lambda x: x.type.upper() == "URL"),
        _hit("type-url-lower", typed, TYPED, ["url"], pred=lambda x: x.type.upper() == "URL"),
        _hit("type-url-mixed", typed, TYPED, ["Url"], pred=lambda x: x.index in (1, 8)),
        _hit("type-exact", typed, TYPED, ["PRODUCT"], pred=lambda x: x.index == 3),
        _hit("type-subtypes", typed, TYPED, ["PRODUCT."], pred=lambda x: x.index in (3, 4, 5, 7)),
        _hit("type-subtypes-lower", typed, TYPED, ["product."],
             pred=lambda x: x.index in (3, 4, 5, 7)),
        _hit("type-subsubtypes", typed, TYPED, ["product.batch."],
             pred=lambda x: x.index in (4, 7)),
        _hit("type-subtype-exact", typed, TYPED, ["PRODUCT.BATCH"], pred=lambda x: x.index == 4),
        _hit("type-two", typed, TYPED, ["HS_ADMIN", "HS_VLIST"],
             pred=lambda x: x.index in (100, 200)),
        _hit("type-duplicate", typed, TYPED, ["URL", "url", "URL"],
             pred=lambda x: x.index in (1, 8)),
        _hit("type-unicode", typed, TYPED, ["类型"], pred=lambda x: x.index == 10),
        _hit("type-quote", typed, TYPED, ['q"t\\'], pred=lambda x: x.index == 13),
        _hit("type-with-slash", typed, TYPED, ["10320/LOC"], pred=lambda x: x.index == 12),
        _hit("type-site", typed, TYPED, ["HS_SITE"], pred=lambda x: x.index == 11),
        _hit("type-site-subtypes", typed, TYPED, ["HS_SITE."], pred=lambda x: x.index == 11),
        _hit("type-perms", typed, TYPED, ["perms"], pred=lambda x: x.index in (15, 16)),
        _c("type-none", typed, "empty", ["NOPE"]),
        _c("type-prefix-not-subtype", typed, "empty", ["PROD"]),
        _c("type-empty-string", typed, "empty", [""]),
        _c("type-dot", typed, "empty", ["."]),
        _c("type-subtype-only-dot", typed, "empty", ["PRODUCTX.BATCH"]),
        # index filters
        _hit("index-one", typed, TYPED, indexes=[1], pred=lambda x: x.index == 1),
        _hit("index-order", typed, TYPED, indexes=[300, 1, 100],
             pred=lambda x: x.index in (1, 100, 300)),
        _hit("index-duplicate", typed, TYPED, indexes=[2, 2], pred=lambda x: x.index == 2),
        _hit("index-some-missing", typed, TYPED, indexes=[2, 999],
             pred=lambda x: x.index == 2),
        _c("index-missing", typed, "empty", indexes=[999]),
        _c("index-zero", typed, "empty", indexes=[0]),
        _c("index-negative", typed, "empty", indexes=[-1]),
        # both: the union, as the reference server
        _hit("both-union", typed, TYPED, ["EMAIL"], [1], pred=lambda x: x.index in (1, 2)),
        _hit("both-subtypes", typed, TYPED, ["PRODUCT."], [100],
             pred=lambda x: x.index in (3, 4, 5, 7, 100)),
        _hit("both-type-misses", typed, TYPED, ["NOPE"], [2], pred=lambda x: x.index == 2),
        _hit("both-index-misses", typed, TYPED, ["URL"], [999], pred=lambda x: x.index in (1, 8)),
        _hit("both-overlap", typed, TYPED, ["URL"], [1, 8], pred=lambda x: x.index in (1, 8)),
        _c("both-miss", typed, "empty", ["NOPE"], [999]),
        # non-public values are withheld
        _hit("mixed-url", mixed, MIXED, ["URL"], pred=lambda x: x.type == "URL"),
        _hit("mixed-subtypes", mixed, MIXED, ["PRODUCT."], pred=lambda x: x.index == 6),
        _hit("mixed-index-public", mixed, MIXED, indexes=[2, 3], pred=lambda x: x.index == 3),
        _c("mixed-type-withheld", mixed, "empty", ["SECRET"]),
        _c("mixed-index-withheld", mixed, "empty", indexes=[2]),
        _c("mixed-both-withheld", mixed, "empty", ["HS_SECKEY"], [5]),
        _c("private-all", "88.118.8/private", "empty"),
        _c("private-type", "88.118.8/private", "empty", ["URL"]),
        _c("private-index", "88.118.8/private", "empty", indexes=[1, 2]),
        _hit("quoted-public-part", "88.118.8/" + QUOTED_SUFFIX, R["88.118.8/" + QUOTED_SUFFIX],
             indexes=[1, 2], pred=lambda x: x.index == 1),
        # big records with filters
        _hit("big-type", "88.118.8/big", BIG, ["PRODUCT."],
             pred=lambda x: x.type == "PRODUCT.BATCH"),
        _hit("big-indexes", "88.118.8/big", BIG, indexes=list(range(3, 900, 9)),
             pred=lambda x: x.index in range(3, 900, 9)),
        _hit("big-mixed-both", "88.118.8/big-mixed", BIG_MIXED, ["HS_ADMIN"],
             list(range(0, 800, 21)),
             pred=lambda x: x.type == "HS_ADMIN" or x.index in range(0, 800, 21)),
        # records without values
        _c("empty-record", "88.118.8/empty", "empty"),
        _c("empty-record-filtered", "88.118.8/empty", "empty", ["URL"], [1]),
        # missing identifiers under held prefixes: responseCode 100
        _c("missing", "88.118.8/does-not-exist", "miss"),
        _c("missing-filtered", "88.118.8/does-not-exist", "miss", ["URL"], [1]),
        _c("missing-unicode-fold", "88.118.8/STRASSE-É-Ǆ", "miss"),  # not ASCII upper-casing
        _c("missing-quote", '88.118.8/no"pe\\', "miss"),
        _c("missing-slashes", "88.118.8/a/b/c/d", "miss"),
        _c("missing-letter-prefix", "test.PREFIX/nothing", "miss"),
        _c("missing-unicode-prefix", "中国.8/无", "miss"),
        _c("missing-long", "88.118.8/" + "x" * 2000, "miss"),
        # prefix handles 0.NA/<prefix>
        _hit("na", "0.NA/88.118.8", P["0.NA/88.118.8"]),
        _hit("na-lower", "0.na/88.118.8", P["0.NA/88.118.8"]),
        _hit("na-slashless", "88.118.8", P["0.NA/88.118.8"]),
        _hit("na-type", "0.NA/88.118.8", P["0.NA/88.118.8"], ["HS_SITE"],
             pred=lambda x: x.type == "HS_SITE"),
        _hit("na-index", "88.118.8", P["0.NA/88.118.8"], indexes=[100, 300],
             pred=lambda x: x.index == 100),
        _c("na-withheld", "0.NA/88.118.8", "empty", ["HS_SECKEY"]),
        _hit("na-all-public", "0.NA/88.118.9", P["0.NA/88.118.9"]),
        _c("na-all-private", "0.NA/88.118.10", "empty"),
        _c("na-without-values", "0.NA/88.118.11", "empty"),
        _hit("na-letters", "0.na/test.prefix", P["0.NA/TEST.Prefix"]),
        _hit("na-letters-slashless", "Test.Prefix", P["0.NA/TEST.Prefix"]),
        _hit("na-unicode", "0.NA/中国.8", P["0.NA/中国.8"]),
        _c("na-foreign", "0.NA/99.1", "declined"),
        _c("na-foreign-slashless", "99.1", "declined"),
        _c("na-root", "0.NA/0.NA", "declined"),
        _c("na-with-slash", "0.NA/88.118.8/x", "declined"),
        _c("na-parent", "0.NA/88.118", "declined"),
        # foreign prefixes: the hot path declines, the general path answers 301
        _c("foreign", "99.1/x", "declined"),
        _c("foreign-filtered", "99.1/x", "declined", ["URL"], [1]),
        _c("foreign-parent", "88.118/x", "declined"),
        _c("foreign-child", "88.118.8.1/x", "declined"),
        _c("foreign-sibling", "88.118.80/x", "declined"),
        _c("foreign-quote", '99"1/x', "declined"),
        # invalid identifiers: the hot path declines, the general path answers 102
        _c("invalid-empty", b"", "declined"),
        _c("invalid-empty-suffix", b"88.118.8/", "declined"),
        _c("invalid-empty-prefix", b"/x", "declined"),
        _c("invalid-empty-segment", b"88..118/x", "declined"),
        _c("invalid-utf8", b"88.118.8/\xff", "declined"),
        _c("invalid-overlong", b"88.118.8/\xc0\xaf", "declined"),
        _c("invalid-surrogate", b"88.118.8/\xed\xa0\x80", "declined"),
        _c("invalid-nul", b"88.118.8/a\x00b", "declined"),
        _c("invalid-newline", b"88.118.8/a\nb", "declined"),
        _c("invalid-del", b"88.118.8/a\x7fb", "declined"),
        _c("invalid-c1", "88.118.8/a\u0085b".encode(), "declined"),
        _c("invalid-too-long", b"88.118.8/" + b"x" * 2040, "declined"),
        _c("invalid-long-prefix", b"8" * 256 + b"/x", "declined"),
        _c("invalid-quote", b'88.118.8/"\xff', "declined"),
    ]
    for c in list(out):
        # the same request in case-sensitive mode: keys differ, the semantics must not
        if c.id in ("sn", "typed-all", "type-subtypes", "both-union", "mixed-public-only",
                    "private-all", "missing", "na", "na-lower", "na-letters", "foreign",
                    "invalid-utf8", "case-as-stored", "letter-prefix", "na-letters-slashless",
                    "unicode-suffix", "empty-record", "non-ascii-as-stored"):  # fmt: skip
            out.append(dataclasses.replace(c, id=c.id + "/cs", case_sensitive=True))
    out.append(_c("case-lower/cs", "88.118.8/mixedcase", "miss", case_sensitive=True))
    out.append(_c("sn-lower/cs", "88.118.8/sn-2026-0001", "miss", case_sensitive=True))
    out.append(_hit("prefix-folded/cs", "test.PREFIX/Item-1", R["TEST.Prefix/Item-1"],
                    case_sensitive=True))
    out.append(_c("suffix-kept/cs", "test.prefix/item-1", "miss", case_sensitive=True))
    return out
