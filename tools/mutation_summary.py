"""Per-module counts of a mutmut 3 run, as a markdown table (docs/mutation.md).

    build/mutation-venv/bin/mutmut results --all true > verdicts.txt   # in build/mutation/<group>
    python tools/mutation_summary.py verdicts.txt [more.txt ...]

Each input line is mutmut's "    <module>.<function>__mutmut_<n>: <verdict>". Killed, timeout
(the mutant ran past mutmut's time limit: caught) and survived are counted per module; any other
verdict (not checked, no tests, ...) gets its own column so that nothing is silently dropped.
"""
from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict

LINE = re.compile(r"^\s*(thermossl\.[\w.]+?)\.(x\S+?)__mutmut_\d+: (.+?)\s*$")


def main(paths):
    counts: dict[str, Counter] = defaultdict(Counter)
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                match = LINE.match(line)
                if match:
                    counts[match.group(1)][match.group(3)] += 1
    other = sorted({v for c in counts.values() for v in c} - {"killed", "timeout", "survived"})
    head = ["module", "mutants", "killed", "timeout", "survived", "survived % of run"] + other
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    total = Counter()
    for module in sorted(counts):
        total.update(counts[module])
        print(row(module, counts[module], other))
    print(row("**all**", total, other))


def row(name, c: Counter, other) -> str:
    n = sum(c.values())
    checked = c["killed"] + c["timeout"] + c["survived"]  # the % is of the mutants that ran
    cells = [name, n, c["killed"], c["timeout"], c["survived"], f"{100 * c['survived'] / checked:.2f}" if checked else "-"]
    cells += [c[v] for v in other]
    return "| " + " | ".join(str(x) for x in cells) + " |"


if __name__ == "__main__":
    main(sys.argv[1:])
