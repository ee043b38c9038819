#!/usr/bin/env python3
"""Write each ```python block of README.md to its own file, for ``mypy --strict``.

    python tools/readme_snippets.py OUT_DIR [README.md]

Files are named ``readme_<n>.py`` (n from 1, in the README's order), each starting with a
comment giving the README line of its block; OUT_DIR is emptied of earlier ``readme_*.py``
first. Prints the number of blocks; exits with status 1 when there is none (a README that lost
its examples must not pass the check silently).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

FENCE = re.compile(r"^```python\s*\n(.*?)^```\s*$", re.S | re.M)


def snippets(text: str) -> list[tuple[int, str]]:
    """(line number of the opening fence, code) of every ```python block."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    readme = Path(argv[1]) if len(argv) == 2 else Path(__file__).resolve().parents[1] / "README.md"
    blocks = snippets(readme.read_text(encoding="utf-8"))
    if not blocks:
        print(f"{readme}: no ```python blocks", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("readme_*.py"):
        old.unlink()
    for n, (line, code) in enumerate(blocks, start=1):
        (out / f"readme_{n}.py").write_text(f"# README.md, the python block at line {line}\n{code}", encoding="utf-8")
    print(f"{len(blocks)} python blocks of {readme} written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
