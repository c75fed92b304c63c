"""Typed, validated configuration: a TOML file, overridden by command-line flags, parsed once.

``load(path, overrides)`` returns a frozen ``Config`` or raises ``ConfigError`` naming the
offending key and the reason.  The file's layout (every key optional)::

    [store]
    path = "./var/idnode"        # data directory (flag --data)
    map_size = "16GiB"           # LMDB map size: bytes, or a number with KiB/MiB/GiB/TiB

    [http]
    host = "127.0.0.1"           # flag --host
    port = 8000                  # flag --http-port; 0 picks a free port
    allow_anonymous_list = false # GET /api/handles?prefix= without LIST_HANDLES rights

    [node]
    workers = 0                  # 0 = one per core (flag --workers)
    drain_seconds = 10           # SIGTERM: finish in-flight requests for at most this long
    case_sensitive = false       # true: only prefixes are case-folded (Handle.net option)
    homed_prefixes = []          # prefixes homed at start-up if missing (auto_homed_prefixes)
    log_level = "info"
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from typing import Any, Mapping

from resolver.errors import ConfigError, InvalidIdentifier
from resolver.identifier import Identifier


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    data: str = "./var/idnode"
    map_size: int = 16 << 30
    host: str = "127.0.0.1"
    http_port: int = 8000
    allow_anonymous_list: bool = False
    workers: int = 0
    drain_seconds: float = 10.0
    case_sensitive: bool = False
    homed_prefixes: tuple[str, ...] = ()
    log_level: str = "info"

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


#: file key (section.name) → Config field
_FILE_KEYS = {
    "store.path": "data",
    "store.map_size": "map_size",
    "http.host": "host",
    "http.port": "http_port",
    "http.allow_anonymous_list": "allow_anonymous_list",
    "node.workers": "workers",
    "node.drain_seconds": "drain_seconds",
    "node.case_sensitive": "case_sensitive",
    "node.homed_prefixes": "homed_prefixes",
    "node.log_level": "log_level",
}
_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}  # fmt: skip


def _size(key: str, v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif isinstance(v, str) and (m := re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", v)):
        unit = m.group(2).lower()
        if unit not in _UNITS:
            raise ConfigError(key, f"unknown size unit {m.group(2)!r} (use KiB, MiB, GiB, TiB)")
        n = int(m.group(1)) * _UNITS[unit]
    else:
        raise ConfigError(key, f"expected a size such as 1073741824 or \"1GiB\", got {v!r}")
    if n < 1 << 20:
        raise ConfigError(key, "must be at least 1MiB")
    return n


def _check(field: str, key: str, v: Any) -> Any:
    if field == "map_size":
        return _size(key, v)
    if field in ("data", "host", "log_level"):
        if not isinstance(v, str) or not v:
            raise ConfigError(key, f"expected a non-empty string, got {v!r}")
        if field == "log_level" and v.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(key, "expected one of debug, info, warning, error")
        return v
    if field in ("allow_anonymous_list", "case_sensitive"):
        if not isinstance(v, bool):
            raise ConfigError(key, f"expected true or false, got {v!r}")
        return v
    if field in ("http_port", "workers"):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ConfigError(key, f"expected an integer, got {v!r}")
        hi = 65535 if field == "http_port" else 256
        if not 0 <= v <= hi:
            raise ConfigError(key, f"must be between 0 and {hi}")
        return v
    if field == "drain_seconds":
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 300:
            raise ConfigError(key, "expected a number of seconds between 0 and 300")
        return float(v)
    if field == "homed_prefixes":
        if not isinstance(v, (list, tuple)) or not all(isinstance(p, str) and p for p in v):
            raise ConfigError(key, "expected a list of prefixes such as [\"88.118.8\"]")
        for p in v:
            try:
                if "/" in p:
                    raise InvalidIdentifier("a prefix has no '/'")
                Identifier.parse(p)  # a name without "/" is validated as a prefix
            except InvalidIdentifier as exc:
                raise ConfigError(key, f"{p!r} is not a prefix: {exc.message}") from None
        return tuple(v)
    raise ConfigError(key, "unknown option")  # pragma: no cover - table and fields agree


def read_file(path: str) -> dict[str, Any]:
    """TOML file → {field: value}; raises ConfigError for syntax, unknown keys or bad values."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for section, body in doc.items():
        if not isinstance(body, dict):
            raise ConfigError(section, "unknown option (options live in [store], [http], [node])")
        for name, value in body.items():
            key = f"{section}.{name}"
            field = _FILE_KEYS.get(key)
            if field is None:
                raise ConfigError(key, "unknown option")
            out[field] = _check(field, key, value)
    return out


def load(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """File (if any) then flags (``None`` values ignored) → validated ``Config``."""
    values = read_file(path) if path else {}
    flag_names = {f: "--" + f.replace("_", "-") for f in _FILE_KEYS.values()}
    for field, value in (overrides or {}).items():
        if value is not None:
            values[field] = _check(field, flag_names.get(field, field), value)
    return Config(**values)
