"""Unit tests of ``resolver.config`` and of ``idnode check-config`` run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from resolver.config import Config, load, read_file
from resolver.errors import ConfigError, Outcome

FULL = """\
[store]
path = "/srv/idnode"
map_size = "2GiB"

[http]
host = "0.0.0.0"
port = 8080
allow_anonymous_list = true

[node]
workers = 4
drain_seconds = 2.5
case_sensitive = true
homed_prefixes = ["88.118.8", "88.118.9"]
role = "top-level"
log_level = "debug"
"""


def _write(tmp_path, text: str, name: str = "idnode.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults():
    cfg = load()
    assert cfg == Config()
    assert cfg.data == "./var/idnode"
    assert cfg.map_size == 16 << 30
    assert cfg.host == "127.0.0.1"
    assert cfg.http_port == 8000
    assert cfg.allow_anonymous_list is False
    assert cfg.workers == 0
    assert cfg.worker_count == (os.cpu_count() or 1)
    assert cfg.drain_seconds == 10.0
    assert cfg.case_sensitive is False
    assert cfg.homed_prefixes == ()
    assert cfg.role == "secondary"
    assert cfg.log_level == "info"
    # [upstream]: no peering unless configured; the cache limits of issue 7 §4–5
    assert cfg.upstream_servers == () and cfg.upstream_addresses == ()
    assert cfg.upstream_recursion is False
    assert (cfg.upstream_max_ttl, cfg.upstream_negative_max, cfg.upstream_max_stale_ttl,
            cfg.upstream_stale_answer_ttl, cfg.upstream_cache_entries,
            cfg.upstream_recursion_limit) == (86400, 300, 86400, 30, 100_000, 10)  # fmt: skip
    # prefix registration upstream (issue 7 §2): off until prefixes are configured
    assert (cfg.upstream_prefixes, cfg.upstream_identity, cfg.upstream_secret_file,
            cfg.upstream_key_file, cfg.upstream_register_interval) == ((), "", "", "", 300)


def test_empty_file_gives_defaults(tmp_path):
    assert load(_write(tmp_path, "")) == Config()
    assert read_file(_write(tmp_path, "# only a comment\n[store]\n")) == {}


def test_every_key(tmp_path):
    cfg = load(_write(tmp_path, FULL))
    assert cfg == Config(
        data="/srv/idnode",
        map_size=2 << 30,
        host="0.0.0.0",
        http_port=8080,
        allow_anonymous_list=True,
        workers=4,
        drain_seconds=2.5,
        case_sensitive=True,
        homed_prefixes=("88.118.8", "88.118.9"),
        role="top-level",
        log_level="debug",
    )
    assert cfg.worker_count == 4
    assert isinstance(cfg.drain_seconds, float)


@pytest.mark.parametrize(
    "text, size",
    [
        ("1073741824", 1 << 30),
        ('"1073741824"', 1 << 30),
        ('"1MiB"', 1 << 20),
        ('"1024KiB"', 1 << 20),
        ('"1024k"', 1 << 20),
        ('"512 MiB"', 512 << 20),
        ('"16gib"', 16 << 30),
        ('"16G"', 16 << 30),
        ('"1TiB"', 1 << 40),
    ],
)
def test_map_size_forms(tmp_path, text, size):
    assert load(_write(tmp_path, f"[store]\nmap_size = {text}\n")).map_size == size


def test_overrides_beat_the_file(tmp_path):
    path = _write(tmp_path, FULL)
    cfg = load(path, {"data": "/other", "http_port": 9000, "workers": None, "map_size": "8MiB"})
    assert cfg.data == "/other" and cfg.http_port == 9000 and cfg.map_size == 8 << 20
    assert cfg.workers == 4  # None means "flag not given"
    assert load(None, {"case_sensitive": True}).case_sensitive is True


@pytest.mark.parametrize(
    "field, value, key",
    [
        ("http_port", 70000, "--http-port"),
        ("map_size", "1KiB", "--map-size"),
        ("workers", -1, "--workers"),
        ("data", "", "--data"),
        ("role", "tier-1", "--role"),
        ("role", "Top-Level", "--role"),
    ],
)
def test_bad_override_names_the_flag(field, value, key):
    with pytest.raises(ConfigError) as info:
        load(None, {field: value})
    assert info.value.key == key


@pytest.mark.parametrize(
    "text, key",
    [
        # unknown keys and sections
        ("[store]\npth = 'x'\n", "store.pth"),
        ("[http]\nhost = 'h'\nprot = 1\n", "http.prot"),
        ("[nodes]\nworkers = 1\n", "nodes.workers"),
        ("workers = 1\n", "workers"),
        ("[store.extra]\nx = 1\n", "store.extra"),
        # bad values, every key
        ("[store]\npath = ''\n", "store.path"),
        ("[store]\npath = 5\n", "store.path"),
        ("[store]\nmap_size = '1KiB'\n", "store.map_size"),
        ("[store]\nmap_size = 1000\n", "store.map_size"),
        ("[store]\nmap_size = '16XB'\n", "store.map_size"),
        ("[store]\nmap_size = '1.5GiB'\n", "store.map_size"),
        ("[store]\nmap_size = -1\n", "store.map_size"),
        ("[store]\nmap_size = true\n", "store.map_size"),
        ("[store]\nmap_size = 1.5e9\n", "store.map_size"),
        ("[http]\nhost = ''\n", "http.host"),
        ("[http]\nhost = ['a']\n", "http.host"),
        ("[http]\nport = 65536\n", "http.port"),
        ("[http]\nport = -1\n", "http.port"),
        ("[http]\nport = '8000'\n", "http.port"),
        ("[http]\nport = true\n", "http.port"),
        ("[http]\nport = 80.5\n", "http.port"),
        ("[http]\nallow_anonymous_list = 'yes'\n", "http.allow_anonymous_list"),
        ("[http]\nallow_anonymous_list = 1\n", "http.allow_anonymous_list"),
        ("[node]\nworkers = 257\n", "node.workers"),
        ("[node]\nworkers = -2\n", "node.workers"),
        ("[node]\nworkers = 'auto'\n", "node.workers"),
        ("[node]\ndrain_seconds = -1\n", "node.drain_seconds"),
        ("[node]\ndrain_seconds = 301\n", "node.drain_seconds"),
        ("[node]\ndrain_seconds = '10'\n", "node.drain_seconds"),
        ("[node]\ndrain_seconds = false\n", "node.drain_seconds"),
        ("[node]\ncase_sensitive = 'no'\n", "node.case_sensitive"),
        ("[node]\nhomed_prefixes = '88.118.8'\n", "node.homed_prefixes"),
        ("[node]\nhomed_prefixes = ['']\n", "node.homed_prefixes"),
        ("[node]\nhomed_prefixes = [1]\n", "node.homed_prefixes"),
        ("[node]\nhomed_prefixes = ['88.118.8/x']\n", "node.homed_prefixes"),
        ("[node]\nhomed_prefixes = ['.88']\n", "node.homed_prefixes"),
        ("[node]\nhomed_prefixes = ['88.']\n", "node.homed_prefixes"),
        ("[node]\nhomed_prefixes = ['88..1']\n", "node.homed_prefixes"),
        ("[node]\nhomed_prefixes = ['" + "8" * 256 + "']\n", "node.homed_prefixes"),
        ("[node]\nlog_level = 'verbose'\n", "node.log_level"),
        ("[node]\nrole = 'primary'\n", "node.role"),
        ("[node]\nrole = ''\n", "node.role"),
        ("[node]\nrole = 1\n", "node.role"),
        ("[node]\nrole = ['top-level']\n", "node.role"),
        ("[node]\nlog_level = ''\n", "node.log_level"),
        ("[dns]\nport = -2\n", "dns.port"),
        ("[dns]\nport = 65536\n", "dns.port"),
        ("[dns]\napex = ''\n", "dns.apex"),
        ("[dns]\napex = 'a..b'\n", "dns.apex"),
        ("[dns]\napex = 'bad label!.test'\n", "dns.apex"),
        ("[dns]\nmax_udp = 511\n", "dns.max_udp"),
        ("[dns]\ntcp_idle_seconds = 0\n", "dns.tcp_idle_seconds"),
        ("[dns]\nns = 'ns1.x.'\n", "dns.ns"),
        ("[dns]\nns = ['']\n", "dns.ns"),
        ("[dns]\nsoa_serial = 4294967296\n", "dns.soa_serial"),
        ("[dns]\nsoa_ttl = 2147483648\n", "dns.soa_ttl"),
        ("[dns]\nrrl = 5\n", "dns.rrl"),
        ("[dns.rrl]\nrate_limit = 5\n", "dns.rrl.rate_limit"),  # Knot's spelling: rate-limit
        ("[dns.rrl]\nrate-limit = -1\n", "dns.rrl.rate-limit"),
        ("[dns.rrl]\nslip = 101\n", "dns.rrl.slip"),
        ("[dns.rrl]\nwhitelist = ['10.0.0.300']\n", "dns.rrl.whitelist"),
        ("[dns.rrl]\ndry-run = 'yes'\n", "dns.rrl.dry-run"),
        ("[dns.rrl]\ntable-size = 0\n", "dns.rrl.table-size"),
        ("[dns.other]\nx = 1\n", "dns.other"),
        ("[upstream]\nserver = ['192.0.2.1:2641']\n", "upstream.server"),
        ("[upstream]\nservers = '192.0.2.1:2641'\n", "upstream.servers"),
        ("[upstream]\nservers = [2641]\n", "upstream.servers"),
        ("[upstream]\nservers = ['192.0.2.1']\n", "upstream.servers"),
        ("[upstream]\nservers = ['192.0.2.1:0']\n", "upstream.servers"),
        ("[upstream]\nservers = ['192.0.2.1:65536']\n", "upstream.servers"),
        ("[upstream]\nservers = ['192.0.2.1:x']\n", "upstream.servers"),
        ("[upstream]\nservers = [':2641']\n", "upstream.servers"),
        ("[upstream]\nservers = ['192.0.2.300:2641']\n", "upstream.servers"),
        ("[upstream]\nservers = ['2001:db8::1:2641']\n", "upstream.servers"),  # no brackets
        ("[upstream]\nservers = ['[top.example]:2641']\n", "upstream.servers"),
        ("[upstream]\nservers = ['bad_name.example:2641']\n", "upstream.servers"),
        ("[upstream]\nservers = ['a..b:2641']\n", "upstream.servers"),
        ("[upstream]\nservers = ['192.0.2.1:2641', '192.0.2.1:2641']\n", "upstream.servers"),
        ("[upstream]\nservers = ['192.0.2.1:2641']\nrecursion = 'yes'\n", "upstream.recursion"),
        ("[upstream]\nrecursion = true\n", "upstream.recursion"),  # nobody to ask
        ("[upstream]\nmax_ttl = 604801\n", "upstream.max_ttl"),  # RFC 8767 §4: 7 days
        ("[upstream]\nmax_ttl = -1\n", "upstream.max_ttl"),
        ("[upstream]\nmax_ttl = 1.5\n", "upstream.max_ttl"),
        ("[upstream]\nnegative_max = -1\n", "upstream.negative_max"),
        ("[upstream]\nnegative_max = 86401\n", "upstream.negative_max"),
        ("[upstream]\nmax_stale_ttl = 604801\n", "upstream.max_stale_ttl"),
        ("[upstream]\nstale_answer_ttl = 0\n", "upstream.stale_answer_ttl"),
        ("[upstream]\ncache_entries = 0\n", "upstream.cache_entries"),
        ("[upstream]\ncache_entries = '1e5'\n", "upstream.cache_entries"),
        ("[upstream]\nrecursion_limit = 0\n", "upstream.recursion_limit"),
        ("[upstream]\nrecursion_limit = 101\n", "upstream.recursion_limit"),
        ("[upstream]\nrecursion_limit = true\n", "upstream.recursion_limit"),
    ],
)
def test_bad_file_names_the_key(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key
    assert info.value.reason
    assert info.value.outcome is Outcome.MALFORMED
    assert str(info.value).startswith(f"{key}: ")


def test_dns_section_and_knot_style_rrl_options(tmp_path):
    cfg = load(_write(tmp_path, """\
[dns]
port = 53
apex = "ID.Example.CN"
max_udp = 4096
tcp_idle_seconds = 2.5
ns = ["ns1.example.cn", "ns2.example.net."]
hostmaster = "noc.example.cn."
soa_serial = 2026112901

[dns.rrl]
rate-limit = 20
slip = 2
whitelist = ["10.0.0.0/8", "::1"]
dry-run = true
table-size = 1000
"""))
    assert (cfg.dns_port, cfg.dns_apex, cfg.dns_max_udp) == (53, "ID.Example.CN.", 4096)
    assert cfg.dns_tcp_idle_seconds == 2.5 and cfg.dns_soa_serial == 2026112901
    assert cfg.dns_ns_names == ("ns1.example.cn.", "ns2.example.net.")
    assert cfg.dns_rname == "noc.example.cn."
    assert (cfg.rrl_rate_limit, cfg.rrl_slip, cfg.rrl_dry_run, cfg.rrl_table_size) == (20, 2, True,
                                                                                       1000)
    assert cfg.rrl_whitelist == ("10.0.0.0/8", "::1")


def test_dns_defaults_name_the_zone_after_the_apex():
    cfg = Config()
    assert (cfg.dns_port, cfg.dns_apex, cfg.dns_max_udp) == (5353, "id.idnode.test.", 1232)
    assert cfg.dns_ns_names == ("ns1.id.idnode.test.",)
    assert cfg.dns_rname == "hostmaster.id.idnode.test."
    assert cfg.rrl_rate_limit == 0  # RRL off by default (issue 6 §5)
    root = load(None, {"dns_apex": "."})
    assert root.dns_ns_names == ("ns1.",) and root.dns_rname == "hostmaster."


@pytest.mark.parametrize("role", ["secondary", "top-level"])
def test_role_from_file_and_flag(tmp_path, role):
    from resolver import cli

    assert load(_write(tmp_path, f'[node]\nrole = "{role}"\n')).role == role
    args = cli._parser().parse_args(["serve", "--role", role])
    assert load(None, cli._overrides(args)).role == role
    other = "secondary" if role == "top-level" else "top-level"
    # the flag beats the file; no flag leaves the file's value
    path = _write(tmp_path, f'[node]\nrole = "{other}"\n')
    assert load(path, cli._overrides(args)).role == role
    assert load(path, cli._overrides(cli._parser().parse_args(["serve"]))).role == other


UPSTREAM = """\
[upstream]
servers = ["192.0.2.1:2641", "[2001:DB8::1]:2641", "top.example.cn:12641"]
recursion = true
max_ttl = 3600
negative_max = 60
max_stale_ttl = 172800
stale_answer_ttl = 10
cache_entries = 5000
recursion_limit = 4
"""


def test_upstream_section(tmp_path):
    cfg = load(_write(tmp_path, UPSTREAM))
    # IPv6 kept in brackets and in its canonical form: one spelling per server
    assert cfg.upstream_servers == ("192.0.2.1:2641", "[2001:db8::1]:2641",
                                    "top.example.cn:12641")  # fmt: skip
    assert cfg.upstream_addresses == (("192.0.2.1", 2641), ("2001:db8::1", 2641),
                                      ("top.example.cn", 12641))  # fmt: skip
    assert cfg.upstream_recursion is True
    assert (cfg.upstream_max_ttl, cfg.upstream_negative_max, cfg.upstream_max_stale_ttl,
            cfg.upstream_stale_answer_ttl, cfg.upstream_cache_entries,
            cfg.upstream_recursion_limit) == (3600, 60, 172800, 10, 5000, 4)  # fmt: skip
    # servers without recursion: the agent runs (status, probes), nothing recurses
    quiet = load(_write(tmp_path, '[upstream]\nservers = ["192.0.2.1:2641"]\n'))
    assert quiet.upstream_servers == ("192.0.2.1:2641",) and quiet.upstream_recursion is False


def test_upstream_flag_is_repeatable_and_replaces_the_file(tmp_path):
    from resolver import cli

    args = cli._parser().parse_args(["serve", "--upstream", "198.51.100.7:2641",
                                     "--upstream", "[::1]:2641"])  # fmt: skip
    path = _write(tmp_path, UPSTREAM)
    cfg = load(path, cli._overrides(args))
    assert cfg.upstream_servers == ("198.51.100.7:2641", "[::1]:2641")
    assert cfg.upstream_recursion is True  # the rest of the file stays
    assert load(path, cli._overrides(cli._parser().parse_args(["serve"]))).upstream_servers \
        == ("192.0.2.1:2641", "[2001:db8::1]:2641", "top.example.cn:12641")  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load(None, cli._overrides(cli._parser().parse_args(["serve", "--upstream", "nohost"])))
    assert info.value.key == "--upstream"


def test_log_level_any_case(tmp_path):
    assert load(_write(tmp_path, "[node]\nlog_level = 'WARNING'\n")).log_level == "WARNING"


def test_not_toml(tmp_path):
    path = _write(tmp_path, "[store\npath = \n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == path
    assert "not valid TOML" in info.value.reason


def test_missing_file(tmp_path):
    path = str(tmp_path / "absent.toml")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == path
    assert "cannot read" in info.value.reason


# -- the CLI ---------------------------------------------------------------------------------


def _check_config(path: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "resolver", "check-config", path],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_cli_check_config_good(tmp_path):
    path = _write(tmp_path, FULL)
    proc = _check_config(path)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize(
    "text, key",
    [
        ("[http]\nport = 99999\n", "http.port"),
        ("[store]\nmapsize = '1GiB'\n", "store.mapsize"),
        ("[node]\nhomed_prefixes = ['88.118.8/x']\n", "node.homed_prefixes"),
    ],
)
def test_cli_check_config_bad(tmp_path, text, key):
    path = _write(tmp_path, text)
    proc = _check_config(path)
    assert proc.returncode != 0
    assert key in proc.stderr
    assert "OK" not in proc.stdout


def test_cli_check_config_not_toml(tmp_path):
    path = _write(tmp_path, "this is = = not toml\n")
    proc = _check_config(path)
    assert proc.returncode != 0
    assert "not valid TOML" in proc.stderr


def test_homed_prefixes_are_keyed_like_identifiers(store):
    """A prefix homed from the config must be found by the key resolution computes for it."""
    from resolver import cli
    from resolver.identifier import Identifier

    prefixes = ["88.118.8", "test.Prefix", "straße.1", "ǆ.2"]
    cli._home_prefixes(store, load(None, {"homed_prefixes": prefixes}))
    for p in prefixes:
        assert store.get_prefix(Identifier.parse(f"{p}/x").prefix_key) is not None, p
    assert len(store.prefixes()) == len(prefixes)


# -- [upstream] prefix registration (issue 7 §2) ---------------------------------------------------
def _registration(tmp_path, body: str) -> str:
    (tmp_path / "a.secret").write_text("s3cret\n")
    return _write(tmp_path, '[upstream]\nservers = ["192.0.2.1:2641", "192.0.2.2:2641"]\n' + body)


def test_upstream_registration(tmp_path):
    from resolver import cli

    cfg = load(_registration(tmp_path, f"""\
prefixes = ["88.121", "88.122"]
identity = "300:0.NA/88.121"
secret_file = "{tmp_path / 'a.secret'}"
register_interval = 60
"""))
    assert cfg.upstream_prefixes == ("88.121", "88.122")
    assert cfg.upstream_identity == "300:0.NA/88.121"
    assert cfg.upstream_secret_file == str(tmp_path / "a.secret") and cfg.upstream_key_file == ""
    assert cfg.upstream_register_interval == 60
    auth = cli._registration_auth(cfg)  # the agent's credential: one trailing newline dropped
    assert (type(auth).__name__, auth.identity, auth.secret) == (
        "SecretKeyAuth", "300:0.NA/88.121", b"s3cret")  # fmt: skip
    assert cli._registration_auth(load()) is None  # no prefixes: no registrar


def test_upstream_registration_with_a_key_file(tmp_path):
    from resolver import cli
    from resolver.protocols.handle import auth as A

    key = A.generate_rsa_key(1024)
    (tmp_path / "a.pem").write_bytes(A.private_key_pem(key))
    (tmp_path / "bad.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    cfg = load(_registration(tmp_path, f"""\
prefixes = ["88.121"]
identity = "300:0.NA/88.121"
key_file = "{tmp_path / 'a.pem'}"
"""))
    auth = cli._registration_auth(cfg)
    assert type(auth).__name__ == "PublicKeyAuth"
    assert auth.private_key.private_numbers() == key.private_numbers()
    bad = load(_registration(tmp_path, f"""\
prefixes = ["88.121"]
identity = "300:0.NA/88.121"
key_file = "{tmp_path / 'bad.pem'}"
"""))
    with pytest.raises(ConfigError) as info:
        cli._registration_auth(bad)  # idnode serve refuses to start: exit code 2
    assert info.value.key == "upstream.key_file" and "private key" in info.value.reason


@pytest.mark.parametrize(
    "body, key",
    [
        ('prefixes = ["88.121"]\nsecret_file = "{secret}"\n', "upstream.identity"),
        ('prefixes = ["88.121"]\nidentity = "300:0.NA/88.121"\n', "upstream.secret_file"),
        ('prefixes = ["88.121"]\nidentity = "300:0.NA/88.121"\nsecret_file = "{secret}"\n'
         'key_file = "{secret}"\n', "upstream.key_file"),
        ('prefixes = ["88.121/x"]\n', "upstream.prefixes"),
        ('prefixes = "88.121"\n', "upstream.prefixes"),
        ('prefixes = [""]\n', "upstream.prefixes"),
        ('identity = "0.NA/88.121"\n', "upstream.identity"),  # no index
        ('identity = "300:88.121"\n', "upstream.identity"),  # no handle
        ("identity = 300\n", "upstream.identity"),
        ('secret_file = "{secret}.missing"\n', "upstream.secret_file"),
        ("key_file = 1\n", "upstream.key_file"),
        ("register_interval = 0\n", "upstream.register_interval"),
        ("register_interval = 86401\n", "upstream.register_interval"),
        ("register_interval = '300'\n", "upstream.register_interval"),
    ],
)
def test_bad_upstream_registration(tmp_path, body, key):
    path = _registration(tmp_path, body.format(secret=tmp_path / "a.secret"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key and info.value.reason


def test_registration_needs_upstream_servers(tmp_path):
    from resolver import cli

    (tmp_path / "a.secret").write_text("s")
    path = _write(tmp_path, f"""\
[upstream]
prefixes = ["88.121"]
identity = "300:0.NA/88.121"
secret_file = "{tmp_path / 'a.secret'}"
""")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == "upstream.prefixes"
    args = cli._parser().parse_args(["serve", "--upstream", "192.0.2.9:2641"])  # supplies them
    assert load(path, cli._overrides(args)).upstream_prefixes == ("88.121",)


# -- [takeover] (issue 7 §7) ----------------------------------------------------------------------
def _takeover(tmp_path, body: str) -> str:
    (tmp_path / "t.secret").write_text("s\n")
    return _write(tmp_path, "[takeover]\n" + body, "takeover.toml")


def test_takeover_defaults_and_section(tmp_path):
    cfg = load()
    assert (cfg.takeover_sources, cfg.takeover_identity, cfg.takeover_secret_file,
            cfg.takeover_interval, cfg.takeover_enabled, cfg.takeover_down_after) == (
        (), "", "", 10.0, False, 3.0)  # fmt: skip
    secret = tmp_path / "t.secret"
    cfg = load(_takeover(tmp_path, f"""\
sources = ["http://127.0.0.1:8001", "HTTPS://sec.example.cn/", "http://[2001:db8::7]:8000"]
identity = "300:0.NA/88.118"
secret_file = "{secret}"
interval = 1
enabled = true
down_after = 0.5
"""))
    # one spelling per source: scheme lower-case, no trailing "/"
    assert cfg.takeover_sources == ("http://127.0.0.1:8001", "https://sec.example.cn",
                                    "http://[2001:db8::7]:8000")  # fmt: skip
    assert (cfg.takeover_identity, cfg.takeover_secret_file) == ("300:0.NA/88.118", str(secret))
    assert (cfg.takeover_interval, cfg.takeover_enabled, cfg.takeover_down_after) == (
        1.0, True, 0.5)  # fmt: skip
    assert isinstance(cfg.takeover_interval, float)
    # sources without enabled: the copy is pulled, nothing is answered from it
    quiet = load(_takeover(tmp_path, f'sources = ["http://127.0.0.1:8001"]\nidentity = '
                                     f'"300:0.NA/88.118"\nsecret_file = "{secret}"\n'))  # fmt: skip
    assert quiet.takeover_sources and quiet.takeover_enabled is False


@pytest.mark.parametrize(
    "body, key",
    [
        ('sources = "http://127.0.0.1:8001"\n', "takeover.sources"),
        ("sources = [8001]\n", "takeover.sources"),
        ('sources = ["127.0.0.1:8001"]\n', "takeover.sources"),  # no scheme
        ('sources = ["ftp://127.0.0.1:8001"]\n', "takeover.sources"),
        ('sources = ["http://"]\n', "takeover.sources"),
        ('sources = ["http://127.0.0.1:99999"]\n', "takeover.sources"),
        ('sources = ["http://127.0.0.1:0"]\n', "takeover.sources"),
        ('sources = ["http://127.0.0.1:8001/api"]\n', "takeover.sources"),
        ('sources = ["http://127.0.0.1:8001/?x=1"]\n', "takeover.sources"),
        ('sources = ["http://u:p@127.0.0.1:8001"]\n', "takeover.sources"),
        ('sources = ["http://a:1", "http://a:1/"]\n', "takeover.sources"),  # twice
        ('identity = "88.118/ADMIN"\n', "takeover.identity"),  # no index
        ("identity = 300\n", "takeover.identity"),
        ('secret_file = "{secret}.missing"\n', "takeover.secret_file"),
        ("interval = 0\n", "takeover.interval"),
        ("interval = 86401\n", "takeover.interval"),
        ("interval = '10'\n", "takeover.interval"),
        ("interval = true\n", "takeover.interval"),
        ("down_after = -1\n", "takeover.down_after"),
        ("enabled = 'yes'\n", "takeover.enabled"),
        ("enabled = true\n", "takeover.enabled"),  # nothing to take over
        ("period = 10\n", "takeover.period"),
        # sources need the credentials of the change log (server admins only)
        ('sources = ["http://127.0.0.1:8001"]\nsecret_file = "{secret}"\n', "takeover.identity"),
        ('sources = ["http://127.0.0.1:8001"]\nidentity = "300:0.NA/88.118"\n',
         "takeover.secret_file"),
    ],
)  # fmt: skip
def test_bad_takeover(tmp_path, body, key):
    path = _takeover(tmp_path, body.format(secret=tmp_path / "t.secret"))
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.key == key and info.value.reason


def test_stats_section(tmp_path):
    assert (Config().stats_flush_interval, Config().stats_report_interval) == (10.0, 3600.0)
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    cfg = load(_write(tmp_path, f'[stats]\nflush_interval = 0.5\nreport_url = '
                                f'"https://top.example/stats/v1"\nreport_dir = "{reports}"\n'
                                f'report_interval = 60\nreport_token_file = "{token}"\n'))
    assert (cfg.stats_flush_interval, cfg.stats_report_url, cfg.stats_report_dir,
            cfg.stats_report_interval, cfg.stats_report_token_file) == (
        0.5, "https://top.example/stats/v1", str(reports), 60.0, str(token))  # fmt: skip


@pytest.mark.parametrize("text, key", [
    ("flush_interval = 0", "stats.flush_interval"),
    ('flush_interval = "10"', "stats.flush_interval"),
    ("report_interval = 100000", "stats.report_interval"),
    ('report_url = "ftp://top.example/x"', "stats.report_url"),
    ('report_url = "https://user:pw@top.example/x"', "stats.report_url"),
    ('report_url = "https://top.example:99999/x"', "stats.report_url"),
    ('report_dir = "/no/such/dir/here"', "stats.report_dir"),
    ('report_token_file = "/no/such/token"', "stats.report_token_file"),
    ("reports = 1", "stats.reports"),
])  # fmt: skip
def test_bad_stats_keys(tmp_path, text, key):
    with pytest.raises(ConfigError) as info:
        load(_write(tmp_path, f"[stats]\n{text}\n"))
    assert info.value.key == key
