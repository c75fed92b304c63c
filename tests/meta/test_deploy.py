"""The deployment examples stay true: ``deploy/idnode.toml`` is accepted by ``idnode
check-config`` and by ``config.load``, sets every option in every documented section, and holds
the defaults except on lines marked "(changed)"; ``deploy/idnode.service`` runs that check
before starting and reloading, and carries the hardening options (issue 8 §7)."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from resolver import config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "idnode.toml"
UNIT = REPO / "deploy" / "idnode.service"
CONFIG_PATH = "/etc/idnode/idnode.toml"  # where the unit expects the example


def unit() -> dict[str, dict[str, list[str]]]:
    """``[Section]`` → key → every value given (systemd keys may repeat), comments dropped."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = out.setdefault(m.group(1), {})
            continue
        key, eq, value = line.partition("=")
        assert eq and section is not None, f"not a unit line: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def one(service: dict, key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def documented_sections() -> list[str]:
    """The ``[section]`` headers of resolver/config.py's docstring: the file's layout."""
    return re.findall(r"^ {4}\[([\w.]+)\]", config.__doc__, re.M)


# -- the example configuration -----------------------------------------------------------------
def test_idnode_check_config_accepts_the_example():
    done = subprocess.run([sys.executable, "-m", "resolver", "check-config", str(EXAMPLE)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": OK")


def test_the_example_loads_and_sets_every_option():
    cfg = config.load(str(EXAMPLE))
    assert cfg.data == "/var/lib/idnode"
    values = config.read_file(str(EXAMPLE))
    missing = sorted(k for k, f in config._FILE_KEYS.items() if f not in values)
    assert not missing, f"deploy/idnode.toml lacks {missing}"
    text = EXAMPLE.read_text()
    sections = documented_sections()
    assert {"store", "http", "handle", "dns", "dns.rrl", "node"} <= set(sections)
    for name in sections:
        assert re.search(rf"^\[{re.escape(name)}\]", text, re.M), f"no [{name}] section"


def changed_keys() -> set[str]:
    """``section.key`` of every example line marked "(changed)"."""
    out, section = set(), ""
    for line in EXAMPLE.read_text().splitlines():
        if m := re.match(r"\[([\w.]+)\]", line):
            section = m.group(1)
        elif m := re.match(r"([\w-]+)\s*=.*#\s*\(changed\)", line):
            out.add(f"{section}.{m.group(1)}")
    return out


def test_the_example_holds_the_defaults_except_where_it_says_changed():
    defaults = config.Config()
    values = config.read_file(str(EXAMPLE))
    changed = changed_keys()
    assert {"store.path", "http.host", "dns.port"} <= changed
    for key, f in config._FILE_KEYS.items():
        if key in changed:
            assert values[f] != getattr(defaults, f), f"{key} is marked (changed) but is not"
        else:
            assert values[f] == getattr(defaults, f), f"{key} differs from the default: " \
                f"mark it (changed) or use {getattr(defaults, f)!r}"  # fmt: skip
    assert set(config._FILE_KEYS.values()) <= {f.name for f in dataclasses.fields(defaults)}


# -- the unit ----------------------------------------------------------------------------------
def test_the_unit_checks_the_config_then_serves_it():
    u = unit()
    assert set(u) == {"Unit", "Service", "Install"}
    s = u["Service"]
    assert one(s, "Type") in ("simple", "notify")
    pre = shlex.split(one(s, "ExecStartPre"))
    start = shlex.split(one(s, "ExecStart"))
    assert pre[0].endswith("/idnode") and pre[1:] == ["check-config", CONFIG_PATH]
    assert start[0] == pre[0] and start[1:] == ["serve", "--config", CONFIG_PATH]
    reload = s["ExecReload"]
    assert shlex.split(reload[0]) == pre  # a bad file fails the reload before any signal
    assert reload[-1] == "/bin/kill -HUP $MAINPID"
    assert one(s, "Restart") == "on-failure"
    assert one(s, "User") == "idnode"
    assert one(u["Install"], "WantedBy") == "multi-user.target"
    assert CONFIG_PATH in EXAMPLE.read_text()  # the example says where it goes


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
    "AmbientCapabilities": "CAP_NET_BIND_SERVICE",
}


@pytest.mark.parametrize("key", sorted(HARDENING))
def test_the_unit_is_hardened(key):
    assert one(unit()["Service"], key) == HARDENING[key]


def test_the_unit_limits_and_paths_fit_the_example():
    s = unit()["Service"]
    cfg = config.load(str(EXAMPLE))
    assert set(one(s, "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert cfg.data in one(s, "ReadWritePaths").split()  # the store is the writable path
    assert int(one(s, "LimitNOFILE")) >= 65536
    stop = re.fullmatch(r"(\d+)s?", one(s, "TimeoutStopSec"))
    assert stop and int(stop.group(1)) > cfg.drain_seconds  # draining ends before SIGKILL
    assert one(s, "KillMode") == "mixed"  # SIGTERM to the supervisor, which drains its workers
    low = [p for p in (cfg.http_port, cfg.handle_port, cfg.dns_port) if 0 < p < 1024]
    assert low, "the example binds a privileged port (DNS 53): the capability is needed"
