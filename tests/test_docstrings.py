"""Every public function, class and method of thermossl says, in numpydoc sections, what it
takes (Parameters: every argument of its signature, each with a type and a description), what
it gives back (Returns, when it returns a value) and, for the functions that check their input,
which errors it raises (Raises) — and its annotations are complete. Docstrings point to the
documentation, never to files outside the package (THEORY.md, docs/...).

The documentation build checks the same sections with numpydoc's validator
(``numpydoc_validation_checks`` in docs/conf.py); this test needs neither Sphinx nor numpydoc, so
it runs in every test environment. Modules that need an optional dependency (thermossl.torch) are
checked where it is installed.
"""
from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import thermossl

PUBLIC_MODULES = [
    "thermossl",
    "thermossl.compat",
    "thermossl.thermo",
    "thermossl.reservoirs",
    "thermossl.demon",
    "thermossl.analysis",
    "thermossl.distributed",
    "thermossl.plots",
    "thermossl.cuda",
    "thermossl.ssl",
    "thermossl.cli",
]
# Public callables that validate their input: each documents its errors in a Raises section.
MUST_RAISE = {
    "thermossl": ["set_num_threads", "logsumexp", "softmax", "log_softmax", "log_partition", "column_log_partition",
                  "gibbs", "gibbs_entropy", "cross_entropy", "entropy_grad", "sinkhorn"],
    "thermossl.compat": ["pot_sinkhorn"],
    "thermossl.thermo": ["energy", "free_energy", "entropy", "relative_entropy", "loss", "charges", "information",
                         "State"],
    "thermossl.reservoirs": ["SinkhornReservoir", "CenteringReservoir"],
    "thermossl.demon": ["adiabatic", "isochoric", "step", "Demon"],
    "thermossl.analysis": ["load_run", "load_scores", "analyze", "check_books", "summarize"],
    "thermossl.distributed": ["sinkhorn", "as_comm", "agreement", "abort_on_failure"],
    "thermossl.plots": ["plot_cycles", "plot_work_heat", "plot_feedback_bound", "plot_information",
                        "plot_work_distribution", "plot_ledger", "save_plots", "bound_violations"],
    "thermossl.ssl": ["train"],
}


def _module(name: str):
    if name == "thermossl.torch":
        pytest.importorskip("torch")
    return importlib.import_module(name)


def _public_objects(module_name: str):
    """(qualified name, object) of what the module's __all__ exports, and their public methods."""
    module = _module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        yield f"{module_name}.{name}", obj
        if inspect.isclass(obj):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, (classmethod, staticmethod)):
                    value = value.__func__
                if inspect.isfunction(value) or isinstance(value, property):
                    yield f"{module_name}.{name}.{attr}", value


def _all_objects():
    seen = set()
    for module_name in PUBLIC_MODULES + ["thermossl.torch"]:
        try:
            objects = list(_public_objects(module_name))
        except pytest.skip.Exception:
            continue
        for qualname, obj in objects:
            key = id(obj.fget if isinstance(obj, property) else obj)
            if key not in seen:
                seen.add(key)
                yield qualname, obj


def _sections(doc: str) -> dict[str, str]:
    """numpydoc sections by title: the text under each 'Title\\n-----' underline."""
    parts = re.split(r"^(\w[\w ]*)\n-{3,}\s*$", doc, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _documented_parameters(section: str) -> dict[str, str]:
    """Names documented in a Parameters section ('a, b : type' lines) -> their description."""
    out: dict[str, str] = {}
    lines = section.splitlines()
    for i, line in enumerate(lines):
        if line and not line[0].isspace():
            names = line.split(" : ")[0] if " : " in line else line.strip()
            description = []
            for follow in lines[i + 1:]:
                if follow and not follow[0].isspace():
                    break
                description.append(follow.strip())
            for name in names.split(","):
                out[name.strip().lstrip("*")] = " ".join(description).strip()
    return out


def _signature_parameters(obj) -> list[str]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    if inspect.isclass(obj) and "__init__" not in vars(obj) and not hasattr(obj, "__dataclass_fields__"):
        # inherited constructor (an nn.Module subclass documents its own __init__ in the class)
        for base in obj.__mro__[1:]:
            if "__init__" in vars(base):
                target = base.__init__
                break
    if not inspect.isfunction(target):
        return []  # a builtin's constructor (an exception class): nothing of ours to document
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [p.name for p in signature.parameters.values() if p.name not in ("self", "cls")]


OBJECTS = sorted(_all_objects(), key=lambda pair: pair[0])


def test_the_public_api_is_covered():
    names = {name for name, _ in OBJECTS}
    assert len(OBJECTS) > 100
    for expected in ("thermossl.cross_entropy", "thermossl.demon.Ledger.from_csv", "thermossl.analysis.load_run",
                     "thermossl.distributed.Demon.measure", "thermossl.ssl.train"):
        assert expected in names, expected


@pytest.mark.parametrize("qualname,obj", OBJECTS, ids=[name for name, _ in OBJECTS])
def test_docstring_sections(qualname, obj):
    doc = inspect.getdoc(obj.fget if isinstance(obj, property) else obj)
    assert doc, f"{qualname} has no docstring"
    assert "THEORY.md" not in doc and "docs/" not in doc and "README" not in doc, (
        f"{qualname}: docstrings point to the documentation, not to files outside the package")
    if isinstance(obj, property):
        return
    sections = _sections(doc)
    parameters = _signature_parameters(obj)
    if parameters:
        assert "Parameters" in sections, f"{qualname}: no Parameters section"
        documented = _documented_parameters(sections["Parameters"])
        for name in parameters:
            assert name in documented, f"{qualname}: parameter {name!r} not documented"
            assert documented[name], f"{qualname}: parameter {name!r} has no description"
        unknown = set(documented) - set(parameters)
        assert not unknown, f"{qualname}: documents parameters its signature lacks: {unknown}"
    if inspect.isfunction(obj):
        returns = inspect.signature(obj).return_annotation
        gives_value = returns not in ("None", None, "NoReturn", inspect.Signature.empty)
        if gives_value and not inspect.isgeneratorfunction(obj) and "Yields" not in sections:
            assert "Returns" in sections and sections["Returns"].strip(), f"{qualname}: no Returns section"


@pytest.mark.parametrize("module_name", sorted(MUST_RAISE))
def test_input_checking_functions_document_their_errors(module_name):
    module = _module(module_name)
    for name in MUST_RAISE[module_name]:
        doc = inspect.getdoc(getattr(module, name))
        assert "Raises" in _sections(doc), f"{module_name}.{name}: no Raises section"


@pytest.mark.parametrize("qualname,obj", OBJECTS, ids=[name for name, _ in OBJECTS])
def test_annotations_are_complete(qualname, obj):
    if isinstance(obj, property):
        assert "return" in getattr(obj.fget, "__annotations__", {}), f"{qualname}: property without a return type"
        return
    if inspect.isclass(obj):
        if hasattr(obj, "__dataclass_fields__"):
            assert all(f.type for f in obj.__dataclass_fields__.values())
            return
        obj = vars(obj).get("__init__")
        if obj is None:
            return
    annotations = obj.__annotations__
    signature = inspect.signature(obj)
    for name in signature.parameters:
        if name in ("self", "cls"):
            continue
        assert name in annotations, f"{qualname}: parameter {name!r} has no annotation"
    assert "return" in annotations, f"{qualname}: no return annotation"


def test_no_docstring_of_the_package_names_files_outside_it():
    package = Path(thermossl.__file__).resolve().parent
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if "THEORY.md" in path.read_text(encoding="utf-8")]
    assert not offenders, offenders
