"""README.md keeps its promises: the two set-up commands are there and exist in the Makefile,
and every repository path it names in backticks exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

#: Backticked spans that look like repository paths: a '/' inside, or a file name ending in
#: .py/.md/.toml/.jsonl/.pyx.  Spans with spaces, URLs, options and placeholders are not paths.
_SPAN = re.compile(r"`([^`\n]+)`")
_FILE = re.compile(r"^[\w.\-/]+\.(py|md|toml|jsonl|pyx)$")


def readme() -> str:
    assert README.is_file(), "README.md is missing"
    return README.read_text(encoding="utf-8")


def path_spans(text: str) -> list[str]:
    out = []
    for span in _SPAN.findall(text):
        span = span.strip()
        if " " in span or "://" in span or span.startswith(("-", "/", "~", "$")) or "{" in span:
            continue
        if re.search(r"[<>*?=:@]", span):
            continue
        looks_like_file = bool(_FILE.match(span))
        if "/" in span or looks_like_file:
            out.append(span)
    return out


def _is_identifier(span: str) -> bool:
    # Handle identifiers such as `88.118.8/SN-2026-0001` or `0.NA/88.118.8` are not paths.
    return bool(re.match(r"^\d+(\.\w+)*/", span))


def test_readme_names_the_two_commands():
    text = readme()
    assert "make serve" in text
    assert "make test" in text


def test_readme_commands_exist_in_the_makefile():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    for target in ("serve", "test"):
        assert re.search(rf"^{target}\s*:", makefile, re.M), f"Makefile has no `{target}` target"


def resolves(span: str, line: str) -> bool:
    """``span`` exists from the repository root, or relative to a folder named earlier on the
    same line (the folder-map table says `resolver/` | `cli.py`, `config.py`, ...)."""
    if (REPO / span.rstrip("/")).exists():
        return True
    for other in path_spans(line[: line.find("`" + span + "`")]):
        base = REPO / other.rstrip("/")
        if base.is_dir() and (base / span.rstrip("/")).exists():
            return True
    return False


def test_readme_paths_exist():
    seen, missing = 0, []
    for number, line in enumerate(readme().splitlines(), 1):
        for span in path_spans(line):
            if _is_identifier(span):
                continue
            seen += 1
            if not resolves(span, line):
                missing.append(f"README.md:{number}: `{span}`")
    assert seen, "README.md names no repository path at all"
    assert not missing, "README.md names paths that do not exist:\n" + "\n".join(missing)


def test_path_filter_itself():
    spans = path_spans("`native/` `resolver/cli.py` `README.md` `make serve` `88.118.8/demo-1` "
                       "`pyproject.toml` `--data DIR` `http://x/y` `X.` `idnode serve [--config FILE]`")
    assert [s for s in spans if not _is_identifier(s)] == ["native/", "resolver/cli.py",
                                                           "README.md", "pyproject.toml"]
    assert resolves("cli.py", "| `resolver/` | the CLI: `cli.py` |")
    assert not resolves("cli.py", "| `native/` | `cli.py` |")
