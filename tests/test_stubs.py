"""The type stubs of the compiled modules (python/thermossl/_core/*.pyi, _cuda.pyi) match the modules.

pybind11 functions carry no ``__signature__`` (mypy's stubtest checks only the names for them),
so this test reads each function's signature from the first line of its docstring, which
pybind11 writes as ``name(arg: type = default, ...) -> type``, and compares the argument names
and their order with the stub. ``_cuda`` is usually not built (THERMOSSL_CUDA=OFF): its stub is
compared with the functions ``cpp/bindings/cuda_module.cpp`` defines.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import thermossl
from thermossl import _core

PACKAGE = Path(thermossl.__file__).resolve().parent
REPO = Path(__file__).resolve().parents[1]
# _core has a submodule (pointers), so its stubs are a package: _core/__init__.pyi, _core/pointers.pyi
CORE_STUB = PACKAGE / "_core" / "__init__.pyi"
POINTERS_STUB = PACKAGE / "_core" / "pointers.pyi"


def _stub_functions(path: Path) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _stub_classes(path: Path) -> dict[str, ast.ClassDef]:
    tree = ast.parse(path.read_text())
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _stub_args(fn: ast.FunctionDef) -> list[tuple[str, bool]]:
    """(name, has a default) for each argument of a stub function, self left out."""
    args = fn.args.posonlyargs + fn.args.args
    defaults = [False] * (len(args) - len(fn.args.defaults)) + [True] * len(fn.args.defaults)
    pairs = [(a.arg, d) for a, d in zip(args, defaults)]
    pairs += [(a.arg, d is not None) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults)]
    return [p for p in pairs if p[0] != "self"]


def _runtime_args(obj) -> list[tuple[str, bool]]:
    """(name, has a default) from pybind11's signature line ``name(a: T, b: T = None) -> R``."""
    first = obj.__doc__.splitlines()[0]
    match = re.match(r"^\w+\((.*)\)\s*->", first)
    assert match, f"no pybind11 signature line in {obj.__doc__!r}"
    inner = match.group(1)
    # split on top-level commas (types such as "tuple[int, int]" have commas inside brackets)
    parts, depth, current = [], 0, ""
    for ch in inner:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current)
    out = []
    for part in parts:
        name = part.split(":")[0].split("=")[0].strip()
        if name in ("self", "*", "/"):
            continue
        out.append((name, "=" in part))
    return out


def _check_args(name: str, stub: list[tuple[str, bool]], runtime: list[tuple[str, bool]]) -> None:
    assert [n for n, _ in stub] == [n for n, _ in runtime], f"{name}: stub arguments differ from the module"
    # A stub default must be a module default. The module may have defaults the stub leaves out,
    # but only before a required argument (Python syntax has no default-then-required order).
    last_required = max((i for i, (_, d) in enumerate(runtime) if not d), default=-1)
    for i, ((arg, in_stub), (_, at_runtime)) in enumerate(zip(stub, runtime)):
        assert not in_stub or at_runtime, f"{name}({arg}): the stub gives a default the module lacks"
        if at_runtime and not in_stub:
            assert i < last_required, f"{name}({arg}): the stub lacks the module's default"


def test_core_stub_has_every_function_and_no_other():
    stub = _stub_functions(CORE_STUB)
    runtime = {n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n))
               and not isinstance(getattr(_core, n), type)}
    assert set(stub) == runtime
    classes = {n for n in dir(_core) if isinstance(getattr(_core, n), type)}
    assert set(_stub_classes(CORE_STUB)) == classes
    assert "openmp" in (CORE_STUB).read_text()


@pytest.mark.parametrize("name", sorted(n for n in dir(_core) if not n.startswith("_")
                                        and callable(getattr(_core, n)) and not isinstance(getattr(_core, n), type)))
def test_core_stub_arguments_match_the_module(name):
    _check_args(name, _stub_args(_stub_functions(CORE_STUB)[name]), _runtime_args(getattr(_core, name)))


def _functions_of(module) -> list[str]:
    return sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))


def test_pointers_stub_has_every_function_of_the_submodule_and_their_arguments():
    stub = _stub_functions(POINTERS_STUB)
    assert sorted(stub) == _functions_of(_core.pointers)
    for name in stub:
        _check_args(f"pointers.{name}", _stub_args(stub[name]), _runtime_args(getattr(_core.pointers, name)))


def test_core_stub_class_methods_match_the_module():
    for cls_name, node in _stub_classes(CORE_STUB).items():
        cls = getattr(_core, cls_name)
        methods = {m.name: m for m in node.body if isinstance(m, ast.FunctionDef)}
        assert set(methods) - {"__init__"} == {n for n in vars(cls) if not n.startswith("_")}
        for name, fn in methods.items():
            _check_args(f"{cls_name}.{name}", _stub_args(fn), _runtime_args(getattr(cls, name)))


def test_cuda_stub_matches_the_bindings_source():
    source = REPO / "cpp" / "bindings" / "cuda_module.cpp"
    if not source.exists():
        pytest.skip("not a source checkout")  # an installed wheel's tests: no C++ sources beside them
    defined = re.findall(r'm\.def\("(\w+)"', source.read_text())
    stub = _stub_functions(PACKAGE / "_cuda.pyi")
    assert set(stub) == set(defined)
    for name, fn in stub.items():
        # the lambdas have unnamed (positional-only) arguments, except where py::arg names them
        block = source.read_text().split(f'm.def("{name}"', 1)[1].split("m.def(", 1)[0]
        named = re.findall(r'py::arg\("(\w+)"\)', block)
        if named:
            assert [a.arg for a in fn.args.args] == named, name
        else:
            params = re.search(r"\]\((.*?)\)\s*\{", block, re.S)
            count = 0 if params is None or not params.group(1).strip() else params.group(1).count(",") + 1
            if params is None:  # a function pointer, e.g. &thermossl::cuda::device_count
                assert not fn.args.posonlyargs and not fn.args.args, name
            else:
                assert len(fn.args.posonlyargs) == count and not fn.args.args, name


def test_cuda_stub_matches_the_built_module():
    try:
        from thermossl import _cuda
    except ImportError:
        pytest.skip("thermossl._cuda is not built (THERMOSSL_CUDA=OFF)")
    stub = _stub_functions(PACKAGE / "_cuda.pyi")
    assert set(stub) == {n for n in dir(_cuda) if not n.startswith("_")}


def test_package_is_typed():
    assert (PACKAGE / "py.typed").is_file()
