"""``resolver.core.locations``: the redirect target of a record — first URL value, or the
``10320/loc`` choice (chooseby steps, weights with an injected random source, country,
locatt, address, score, legacy URL values) — and the URL-like targets of the linkset."""

from __future__ import annotations

import random

import pytest

from resolver.core import locations
from resolver.core.locations import Client, choose, to_uri, url_like, weighted
from resolver.values import HandleValue


def v(index: int, vtype: str, data: str | bytes, **kw) -> HandleValue:
    return HandleValue(index, vtype, data.encode() if isinstance(data, str) else data, **kw)


def fixed(x: float):
    return lambda: x


def loc_value(index: int, *locs: str, **root: str) -> HandleValue:
    attrs = "".join(f' {k}="{val}"' for k, val in root.items())
    return v(index, "10320/loc", f"<locations{attrs}>{''.join(locs)}</locations>")


EU = '<location href="https://eu.example.com/x" weight="1" country="DE" id="0" view="html"/>'
CN = '<location href="https://cn.example.com/x" weight="3" country="cn" id="1" view="text"/>'
EU_HREF, CN_HREF = "https://eu.example.com/x", "https://cn.example.com/x"


# -- no 10320/loc: the first URL value ---------------------------------------------------------
def test_first_url_is_the_lowest_index_of_type_url():
    values = [v(7, "URL", "https://b.example/"), v(2, "EMAIL", "a@example.com"),
              v(3, "URL", "https://a.example/"),
              v(1, "URL.ALT", "https://sub.example/")]  # fmt: skip
    assert choose(values).href == "https://a.example/"
    assert choose(values).index == 3


def test_url_subtype_when_there_is_no_plain_url_and_none_without_any():
    assert choose([v(5, "url.mirror", "https://m.example/"), v(9, "URL.X", "https://x/")]).href \
        == "https://m.example/"  # fmt: skip
    assert choose([v(1, "DESC", "no link"), v(2, "URLX", "https://not-a-subtype/")]) is None
    assert choose([]) is None


def test_choose_accepts_any_iterable_once():
    gen = (x for x in [loc_value(1, EU), v(2, "URL", "https://u/")])
    assert choose(gen, rand=fixed(0.5)).href == "https://eu.example.com/x"


# -- weights ---------------------------------------------------------------------------------
def test_weighted_pick_is_deterministic_with_an_injected_random():
    values = [loc_value(1, EU, CN, chooseby="weighted")]
    # total weight 4: [0, 1) → EU, [1, 4) → CN
    assert choose(values, rand=fixed(0.0)).href == "https://eu.example.com/x"
    assert choose(values, rand=fixed(0.2)).href == "https://eu.example.com/x"
    assert choose(values, rand=fixed(0.25)).href == "https://cn.example.com/x"
    assert choose(values, rand=fixed(0.999999)).href == "https://cn.example.com/x"


def test_weighted_pick_follows_the_weights_over_many_draws():
    values = [loc_value(1, EU, CN, chooseby="weighted")]
    rng = random.Random(20261129)
    picks = [choose(values, rand=rng.random).href for _ in range(4000)]
    share = picks.count("https://cn.example.com/x") / len(picks)
    assert 0.72 < share < 0.78, share  # 3 of 4


def test_zero_weight_is_never_picked_unless_all_are_zero():
    zero = '<location href="https://zero/" weight="0"/>'
    one = '<location href="https://one/" weight="1"/>'
    for x in (0.0, 0.5, 0.999):
        assert choose([loc_value(1, zero, one)], rand=fixed(x)).href == "https://one/"
    both = [loc_value(1, zero, '<location href="https://zero2/" weight="0"/>')]
    assert choose(both, rand=fixed(0.0)).href == "https://zero/"  # uniform
    assert choose(both, rand=fixed(0.9)).href == "https://zero2/"


def test_bad_and_negative_weights():
    locs = [locations.Location("a", -5.0), locations.Location("b", float("nan")),
            locations.Location("c", 2.0)]  # fmt: skip
    assert weighted(locs, fixed(0.0)).href == "c"
    parsed = locations.parse(b'<locations><location href="h" weight="abc"/></locations>')
    assert parsed.locations[0].weight == 1.0  # unparsable: the default
    assert locations.parse(b'<locations><location href="h" weight="NaN"/></locations>'
                           ).locations[0].weight == 1.0  # fmt: skip


# -- country and the chooseby steps --------------------------------------------------------------
def test_country_narrows_before_the_weights():
    values = [loc_value(1, EU, CN)]  # default chooseby: locatt,address,country,score,weighted
    for x in (0.0, 0.999):
        assert choose(values, Client(country="DE"), rand=fixed(x)).href == EU_HREF
        assert choose(values, Client(country="CN"), rand=fixed(x)).href == CN_HREF
    # unknown or unmatched country: no filter, the weights decide
    assert choose(values, Client(country="FR"), rand=fixed(0.0)).href == "https://eu.example.com/x"
    assert choose(values, Client(country=None), rand=fixed(0.9)).href == "https://cn.example.com/x"


def test_chooseby_without_country_ignores_the_country():
    values = [loc_value(1, EU, CN, chooseby="weighted")]
    assert choose(values, Client(country="DE"), rand=fixed(0.9)).href == "https://cn.example.com/x"
    alias = [loc_value(1, EU, CN, choose_by="country,weighted")]
    assert choose(alias, Client(country="de"), rand=fixed(0.9)).href == "https://eu.example.com/x"


def test_locatt_selects_by_attribute():
    values = [loc_value(1, EU, CN)]
    assert choose(values, Client(locatt=("view:text",)), rand=fixed(0.0)).href \
        == "https://cn.example.com/x"  # fmt: skip
    assert choose(values, Client(locatt=("id:0",)), rand=fixed(0.9)).href \
        == "https://eu.example.com/x"  # fmt: skip
    # no match keeps all; then the country step
    assert choose(values, Client(country="CN", locatt=("view:pdf",)), rand=fixed(0.0)).href \
        == "https://cn.example.com/x"  # fmt: skip


def test_address_selects_by_cidr():
    lan = '<location href="https://lan/" addresses="10.0.0.0/8, 2001:db8::/32" weight="0.1"/>'
    wan = '<location href="https://wan/" weight="10"/>'
    values = [loc_value(1, lan, wan)]
    assert choose(values, Client(address="10.1.2.3"), rand=fixed(0.9)).href == "https://lan/"
    assert choose(values, Client(address="2001:db8::1"), rand=fixed(0.9)).href == "https://lan/"
    assert choose(values, Client(address="192.0.2.1"), rand=fixed(0.5)).href == "https://wan/"
    assert choose(values, Client(address="not an ip"), rand=fixed(0.5)).href == "https://wan/"


def test_score_keeps_the_best():
    values = [loc_value(1, '<location href="https://low/" score="1" weight="100"/>',
                        '<location href="https://high/" score="5" weight="1"/>')]  # fmt: skip
    assert choose(values, rand=fixed(0.0)).href == "https://high/"


# -- URL values beside a 10320/loc (the reference's "legacy" locations) --------------------------
def test_url_values_join_with_weight_zero():
    values = [v(1, "URL", "https://plain/"), loc_value(2, EU)]
    for x in (0.0, 0.5, 0.999):
        assert choose(values, rand=fixed(x)).href == "https://eu.example.com/x"
    # urlWeight gives them a share
    values = [v(1, "URL", "https://plain/"), loc_value(2, EU, urlWeight="3")]
    assert choose(values, rand=fixed(0.0)).href == "https://eu.example.com/x"
    assert choose(values, rand=fixed(0.5)).href == "https://plain/"
    # no_legacy leaves them out even when every location has weight 0
    zero = '<location href="https://z/" weight="0"/>'
    values = [v(1, "URL", "https://plain/"), loc_value(2, zero, no_legacy="true")]
    assert choose(values, rand=fixed(0.99)).href == "https://z/"


def test_unusable_loc_falls_back_to_url_values():
    for bad in (b"<locations><location href='x'>", b"not xml at all",
                b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]><locations>'
                b'<location href="&a;"/></locations>'):  # fmt: skip
        values = [v(1, "10320/loc", bad), v(2, "URL", "https://fallback/")]
        assert choose(values, rand=fixed(0.3)).href == "https://fallback/"
    assert locations.parse(b"<!DOCTYPE x><locations/>") is None


def test_loc_without_usable_location_and_no_url_is_none():
    assert choose([loc_value(1, '<location weight="1"/>', "<other href='x'/>")]) is None


def test_href_template():
    template = "https://t.example/r?id={hdl}&amp;p=/{hdl:path}"
    values = [loc_value(1, f'<location href_template="{template}"/>')]
    got = choose(values, handle="88.1/a b?c", rand=fixed(0.0)).href
    assert got == "https://t.example/r?id=88.1%2Fa%20b%3Fc&p=/88.1/a%20b%3Fc"


# -- the linkset's targets ---------------------------------------------------------------------
def test_url_like_lists_uri_values_and_locations_without_duplicates():
    values = [loc_value(5, EU, '<location href="https://plain/"/>'),
              v(1, "URL", "https://plain/"), v(2, "URN", "urn:isbn:9780000000002"),
              v(3, "EMAIL", "a@example.com"), v(4, "URI.alt", "https://alt/"),
              v(6, "DESC", "https://not-a-link-type/")]  # fmt: skip
    got = [(x.href, x.type, x.index) for x in url_like(values)]
    assert got == [("https://plain/", "URL", 1), ("urn:isbn:9780000000002", "URN", 2),
                   ("https://alt/", "URI.alt", 4),
                   ("https://eu.example.com/x", "10320/loc", 5)]  # fmt: skip


@pytest.mark.parametrize("href,uri", [
    ("https://example.com/设备/0001", "https://example.com/%E8%AE%BE%E5%A4%87/0001"),
    ("https://e.com/a b?q=1&r=%20#f", "https://e.com/a%20b?q=1&r=%20#f"),
    ("https://e.com/\r\nSet-Cookie: x=1", "https://e.com/%0D%0ASet-Cookie:%20x=1"),
])  # fmt: skip
def test_to_uri(href, uri):
    assert to_uri(href) == uri

