"""The import rules of the architecture (DESIGN.md §2), checked on the source with ``ast``.

Every import counts: module level, inside functions, under ``if TYPE_CHECKING``, relative
(resolved against the importing module's package) and ``importlib.import_module("...")`` /
``__import__("...")`` with a literal name.  ``from package import name`` counts as importing
``package`` and, when ``package.name`` is one of our modules, ``package.name`` too.  The Cython
twin (``native/_hotpath.pyx``) is scanned line by line.  A failure lists every violation.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OURS = ("native", "resolver", "registry", "bench", "tests")
PACKAGES = ("native", "resolver", "registry")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def our_modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            if "__pycache__" not in path.parts:
                out[module_name(path)] = path
    return out


MODULES = our_modules()


def imports_of(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of everything the module ``name`` at ``path`` imports."""
    return imports_in(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")


def imports_in(source: str, name: str, is_package: bool = False) -> list[tuple[int, str]]:
    tree = ast.parse(source, name)
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: -(node.level - 1)]
                base = ".".join(base_parts)
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            for a in node.names:
                sub = f"{target}.{a.name}"
                if sub in MODULES or (REPO / Path(*sub.split("."))).is_dir():
                    found.append((node.lineno, sub))
        elif isinstance(node, ast.Call):
            fn = node.func
            fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
            if fname in ("import_module", "__import__") and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.append((node.lineno, arg.value))
    return found


_PYX_IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+c?import|c?import\s+([\w., ]+))", re.M)


def pyx_imports(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    out = []
    for m in _PYX_IMPORT.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1):
            out.append((line, m.group(1)))
        else:
            out += [(line, n.strip().split(" as ")[0]) for n in m.group(2).split(",") if n.strip()]
    return out


def under(name: str, *roots: str) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


ALL_IMPORTS = {name: imports_of(name, path) for name, path in MODULES.items()}


def violations(rule) -> list[str]:
    out = []
    for name, imps in ALL_IMPORTS.items():
        for line, target in imps:
            reason = rule(name, target)
            if reason:
                out.append(f"{MODULES[name].relative_to(REPO)}:{line}: {name} imports {target} — {reason}")
    return out


def check(rule) -> None:
    found = violations(rule)
    assert not found, "layering violations:\n" + "\n".join(found)


# -- sanity of the checker itself ---------------------------------------------------------------
def test_checker_sees_imports():
    assert (ALL_IMPORTS["resolver.cli"] and
            any(t == "resolver.servers.lifecycle" for _, t in ALL_IMPORTS["resolver.cli"]))  # fmt: skip
    assert any(t == "native.constants" for _, t in ALL_IMPORTS["native._hotpath_py"])
    assert "resolver.protocols.http.codec" in MODULES and "native" in MODULES


def test_checker_resolves_relative_and_dynamic_imports():
    src = ("from . import request\nfrom ..store import lmdb_store\nfrom .. import errors\n"
           "def f():\n    import importlib\n    importlib.import_module('resolver.servers')\n")
    found = {t for _, t in imports_in(src, "resolver.core.probe")}
    assert {"resolver.core", "resolver.core.request", "resolver.store", "resolver.store.lmdb_store",
            "resolver", "resolver.errors", "resolver.servers"} <= found, found
    pkg = {t for _, t in imports_in("from . import codes\n", "resolver.protocols.http", True)}
    assert "resolver.protocols.http.codes" in pkg, pkg


# -- the rules ---------------------------------------------------------------------------------------
def test_native_imports_only_stdlib_and_itself():
    def rule(name, target):
        if not under(name, "native"):
            return None
        top = target.split(".")[0]
        if top == "native" or top in sys.stdlib_module_names or top == "__future__":
            return None
        return "native imports the standard library and itself only"

    found = violations(rule)
    for line, target in pyx_imports(REPO / "native" / "_hotpath.pyx"):
        top = target.split(".")[0]
        if top not in ("native", "cython", "libc", "cpython", "__future__") and \
                top not in sys.stdlib_module_names:  # fmt: skip
            found.append(f"native/_hotpath.pyx:{line}: imports {target} — native imports the "
                         "standard library, Cython's own declarations and itself only")
    assert not found, "layering violations:\n" + "\n".join(found)


def test_errors_imports_nothing_of_ours():
    check(lambda n, t: "resolver.errors imports nothing of ours"
          if n == "resolver.errors" and under(t, *OURS) else None)  # fmt: skip


def test_store_knows_no_protocol():
    banned = ("resolver.protocols", "resolver.core", "resolver.servers", "resolver.upstream")
    check(lambda n, t: "the store knows no protocol, engine or server"
          if under(n, "resolver.store") and under(t, *banned) else None)  # fmt: skip


def test_protocols_are_pure_codecs():
    banned = ("resolver.store", "resolver.core.engine", "resolver.core.authority",
              "resolver.servers", "resolver.upstream", "resolver.config")  # fmt: skip
    check(lambda n, t: "codecs import no store, engine, server, upstream or config"
          if under(n, "resolver.protocols") and under(t, *banned) else None)  # fmt: skip


def test_core_imports_no_protocol_or_server():
    banned = ("resolver.protocols", "resolver.servers", "resolver.upstream")
    check(lambda n, t: "core imports no protocols, servers or upstream"
          if under(n, "resolver.core") and under(t, *banned) else None)  # fmt: skip


def test_only_the_composition_root_imports_servers():
    check(lambda n, t: "only resolver.cli (the composition root) imports resolver.servers"
          if under(t, "resolver.servers") and not under(n, "resolver.servers")
          and n != "resolver.cli" else None)  # fmt: skip


def test_resolver_never_imports_registry():
    check(lambda n, t: "resolver never imports registry (only the composition root, resolver.cli)"
          if under(n, "resolver") and n != "resolver.cli" and under(t, "registry") else None)  # fmt: skip


def test_registry_imports_no_servers_or_native():
    check(lambda n, t: "registry never imports resolver.servers or native"
          if under(n, "registry") and under(t, "resolver.servers", "native") else None)  # fmt: skip


def test_nothing_imports_tests_or_bench():
    check(lambda n, t: "shipped packages never import tests or bench"
          if under(t, "tests", "bench") else None)  # fmt: skip


def test_protocols_do_no_io():
    # DESIGN §1: codecs turn bytes into objects and back; sockets and the store belong elsewhere.
    io = ("socket", "asyncio", "selectors", "ssl", "aiohttp", "lmdb", "uvloop", "subprocess")
    check(lambda n, t: "codecs are sans-IO"
          if under(n, "resolver.protocols") and under(t, *io) else None)  # fmt: skip
