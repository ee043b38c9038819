"""The README stays short (at most 200 lines) and everything it links to exists; every page of the
documentation site is in its table of contents. (The site itself is built with -W in CI.)"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"

pytestmark = pytest.mark.skipif(not (README.exists() and DOCS.is_dir()), reason="not a source checkout")


def test_readme_has_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_keeps_the_two_setup_commands_ci_runs():
    text = README.read_text(encoding="utf-8")
    for marker in ("main-command", "test-command"):
        block = re.search(rf"<!-- {marker} -->\n```\n(.+?)\n```\n<!-- /{marker} -->", text, re.S)
        assert block and block.group(1).startswith("python3 -m venv .venv && "), marker


def test_readme_links_resolve():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local, "the README links into the docs"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, missing


def test_every_docs_page_is_in_the_toctree():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    toctree = re.search(r"```\{toctree\}(.*?)```", index, re.S).group(1)
    entries = {line.strip() for line in toctree.splitlines() if line.strip() and not line.strip().startswith(":")}
    pages = {p.stem for p in DOCS.glob("*.md") if p.stem != "index"} | {p.stem for p in DOCS.glob("*.rst")}
    assert pages <= entries, f"pages not in docs/index.md's toctree: {sorted(pages - entries)}"


def test_the_benchmarks_page_keeps_its_places_for_new_tables():
    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    for what in ("issue 16 kernel tables", "issue 13 torch loss tables", "issue 15 learning table"):
        assert f"<!-- BEGIN {what}" in text and f"<!-- END {what} -->" in text, what
