"""The layers of the Python package: no import circle, and one validation per public call.

The import graph is built from the installed package's source (ast: module-level and
function-level imports, relative and absolute), so an import hidden in a function body counts.
The validation counts wrap the primitives of ``thermossl._validation`` wherever a module has
bound them, and record which arrays each call checks.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest

import thermossl
from thermossl import _validation, demon, reservoirs

PACKAGE = Path(thermossl.__file__).resolve().parent
# Compiled extensions: modules that are not Python source (the CUDA one only in CUDA builds).
EXTENSIONS = {"thermossl._core", "thermossl._cuda"}


def source_modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every .py of the installed package."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (anywhere in its source)."""
    modules = source_modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    # `from pkg import sub` imports the submodule sub; `from pkg import name`, pkg.
                    targets.append(sub if sub in modules or sub in EXTENSIONS else module)
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_import_graph_sees_the_layers():
    graph = import_graph()
    # Sanity of the graph itself: it must see relative, absolute and function-level imports.
    assert "thermossl._backends.cpu" in graph["thermossl.gibbs"]
    assert "thermossl._backends.cuda" in graph["thermossl._backends"]  # imported inside backend_for
    assert "thermossl.demon" in graph["thermossl.distributed.sharded"]  # from .. import demon
    assert "thermossl.ssl" in graph["thermossl.cli"]  # imported inside a function


def test_cycle_finder_finds_a_planted_cycle():
    graph = {name: set(edges) for name, edges in import_graph().items()}
    graph["thermossl._backends.cuda"].add("thermossl.gibbs")  # what cuda.py used to do
    assert any("thermossl.gibbs" in c and "thermossl._backends.cuda" in c for c in cycles(graph))


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_backends_never_import_a_public_module():
    graph = import_graph()
    allowed = {"thermossl._validation", "thermossl._messages"}
    for name, edges in graph.items():
        if name.startswith("thermossl._backends"):
            outside = {e for e in edges if not e.startswith("thermossl._backends")} - allowed
            assert not outside, f"{name} imports {outside}"


# ---------------------------------------------------------------------------------------------
# Validation once per public call

class Checks:
    """Records the calls of the validation primitives: (primitive, argument name, id of the value)."""

    def __init__(self):
        self.calls = []

    def names(self, primitive: str) -> list[str]:
        return [name for p, name, _ in self.calls if p == primitive]

    def times(self, primitive: str, value) -> int:
        return sum(1 for p, _, i in self.calls if p == primitive and i == id(value))


@pytest.fixture
def checks(monkeypatch):
    """Wrap as_real_array, probability_vector, positive_temperature and backend_for in every
    thermossl module that has bound them."""
    from thermossl import _backends

    record = Checks()
    originals = {
        "as_real_array": (_validation.as_real_array, lambda args, kw: (args[1] if len(args) > 1 else kw["name"], args[0])),
        "probability_vector": (_validation.probability_vector, lambda args, kw: (args[2], args[0])),
        "positive_temperature": (_validation.positive_temperature, lambda args, kw: ("T", args[0])),
        "backend_for": (_backends.backend_for, lambda args, kw: ("arrays", args)),
    }
    for primitive, (original, describe) in originals.items():
        def wrapper(*args, _original=original, _describe=describe, _primitive=primitive, **kwargs):
            name, value = _describe(args, kwargs)
            if value is not None:
                record.calls.append((_primitive, name, id(value)))
            return _original(*args, **kwargs)

        for module_name, module in list(sys.modules.items()):
            if module_name.startswith("thermossl") and getattr(module, primitive, None) is original:
                monkeypatch.setattr(module, primitive, wrapper)
    return record


def test_counter_sees_the_public_checks(checks):
    E = np.zeros((3, 2))
    thermossl.gibbs(E, 1.0)
    assert checks.times("as_real_array", E) == 1
    assert checks.names("backend_for") == ["arrays"]


@pytest.mark.filterwarnings("ignore:sinkhorn did not converge")  # SeLa on random energies
@pytest.mark.parametrize("make", [reservoirs.swav, reservoirs.sela, reservoirs.dino], ids=["swav", "sela", "dino"])
def test_one_demon_cycle_checks_each_array_once(checks, make):
    rng = np.random.default_rng(0)
    n, k = 64, 10
    w = rng.uniform(0.5, 1.5, n)
    w /= w.sum()
    d = demon.Demon(0.5, make(), w=w)
    for cycle in range(2):  # the first cycle starts from the Gibbs state, the second chains the labels
        checks.calls.clear()
        E = 3 * rng.normal(size=(n, k))
        E_after = E + 0.1 * rng.normal(size=(n, k))
        d.measure(E)
        d.feedback(E_after)
        # Once each: the user's energies and weights, the reservoir's labels and potentials as they
        # come in (a reservoir is pluggable: its answer is checked where the demon takes it).
        assert checks.times("as_real_array", E) == 1
        assert checks.times("as_real_array", E_after) == 1
        assert checks.times("probability_vector", d._w) == 1  # the demon's copy of the user's w
        assert sorted(checks.names("as_real_array")) == ["E", "E_after", "labels", "mu", "w"]
        assert checks.names("probability_vector") == ["w"]
        # T' of the reservoir's answer, once; the demon's own T was checked by its constructor.
        assert checks.names("positive_temperature") == ["T"]
        # Numpy all the way down: the twins take the CPU backend, nobody asks which backend.
        assert checks.names("backend_for") == []


def test_one_sinkhorn_call_checks_each_array_once(checks):
    rng = np.random.default_rng(1)
    E = rng.normal(size=(64, 10))
    w = rng.uniform(0.5, 1.5, 64)
    w /= w.sum()
    c = np.full(10, 0.1)
    mu0 = np.zeros(10)
    thermossl.sinkhorn(E, 0.2, w=w, c=c, mu0=mu0, tol=1e-6)
    for value in (E, w, c, mu0):
        assert checks.times("as_real_array", value) == 1
    assert sorted(checks.names("as_real_array")) == ["E", "c", "mu0", "w"]
    assert sorted(checks.names("probability_vector")) == ["c", "w"]
    assert checks.names("positive_temperature") == ["T"]
    assert checks.names("backend_for") == ["arrays"]  # the backend is picked once
    assert len(checks.calls) == 4 + 2 + 1 + 1


def test_one_state_checks_each_array_once(checks):
    rng = np.random.default_rng(2)
    E = rng.normal(size=(32, 6))
    q = thermossl.gibbs(rng.normal(size=(32, 6)), 1.0)
    checks.calls.clear()
    thermossl.thermo.State(E, 0.5, q)
    assert checks.times("as_real_array", E) == 1
    assert checks.times("as_real_array", q) == 1
    assert checks.names("positive_temperature") == ["T"]
    checks.calls.clear()
    thermossl.thermo.State(E, 0.5)  # q = the Gibbs state, computed by the twin
    assert checks.names("as_real_array") == ["E"]
    assert checks.names("positive_temperature") == ["T"]
