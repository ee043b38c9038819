"""pytest configuration: hypothesis profiles (THERMOSSL_HYPOTHESIS_PROFILE=thorough for a long run)
and THERMOSSL_REQUIRE (skips of tests needing a required optional part fail; see below).

Tests import the *installed* thermossl (pytest runs with --import-mode=importlib and the package
source lives under python/, which is never on sys.path).
"""
from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("THERMOSSL_HYPOTHESIS_PROFILE", "default"))


# ----------------------------------------------------------------------------- required optional parts
# THERMOSSL_REQUIRE="torch,mpi" (a comma-separated list of OPTIONAL_PARTS) says that this run
# installed those optional parts, so a test that needs one of them must not skip: CI sets it
# where it installs torch and MPI (.ci/run), and a missing install step then fails instead of
# staying green. With the variable set:
#   - the session stops at once (a usage error) when a required part is not importable here;
#   - a skip of a test that needs a required part becomes a failure. A test says what it needs
#     with the marker ``@pytest.mark.requires("mpi")`` (its own skipif may stay beside it), or by
#     ``pytest.importorskip("torch")`` at module or test level: a skip whose reason is pytest's
#     "could not import 'torch'" for a module of a required part counts as that part's skip
#     (the hooks below look at the skip reason of test and collection reports).
# GPU tests are not a part here: without a GPU they stay skipped whatever the variable says.
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

#: optional part -> the modules whose import skips count as that part's
OPTIONAL_PARTS = {"torch": ("torch",), "mpi": ("mpi4py",)}
_IMPORT_SKIP = re.compile(r"could not import '([\w.]+)'")


def required_parts():
    names = [p.strip() for p in os.environ.get("THERMOSSL_REQUIRE", "").split(",") if p.strip()]
    unknown = sorted(set(names) - set(OPTIONAL_PARTS))
    if unknown:
        raise pytest.UsageError(f"THERMOSSL_REQUIRE names unknown parts {unknown}; known: {sorted(OPTIONAL_PARTS)}")
    return set(names)


def part_missing(part):
    """Why an optional part is not usable here (None when it is)."""
    for module in OPTIONAL_PARTS[part]:
        if importlib.util.find_spec(module) is None:
            return f"module {module!r} is not installed"
    if part == "mpi":
        beside = Path(sys.executable).parent / "mpiexec"
        if not beside.exists() and shutil.which("mpiexec") is None:
            return "no mpiexec beside the interpreter or on PATH"
    return None


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "requires(part): the test needs an optional part (torch, mpi); with THERMOSSL_REQUIRE "
        "naming it, a skip of the test is a failure"
    )
    for part in sorted(required_parts()):
        why = part_missing(part)
        if why:
            raise pytest.UsageError(f"THERMOSSL_REQUIRE={os.environ['THERMOSSL_REQUIRE']!r} requires {part}, but {why}")


def _skip_reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _required_part_of_skip(reason, marked_parts, required):
    for part in marked_parts & required:
        return part
    match = _IMPORT_SKIP.search(reason)
    if match:
        top = match.group(1).split(".")[0]
        for part in required:
            if top in OPTIONAL_PARTS[part]:
                return part
    return None


def _fail_required_skip(report, marked_parts):
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    required = required_parts()
    if not required:
        return
    reason = _skip_reason(report)
    part = _required_part_of_skip(reason, marked_parts, required)
    if part is not None:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped although THERMOSSL_REQUIRE={os.environ['THERMOSSL_REQUIRE']!r} requires {part!r}: {reason}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    marked = {m.args[0] for m in item.iter_markers("requires") if m.args}
    _fail_required_skip(outcome.get_result(), marked)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_required_skip(outcome.get_result(), set())


def _level_params():
    """Every SIMD level an x86-64 build may have, and any other this build offers: the ones this
    CPU (or build) lacks are skipped cases, so a run says which levels it could not test."""
    from thermossl import _core

    here = _core.simd_levels()
    return [pytest.param(level, marks=pytest.mark.skipif(level not in here, reason=f"this CPU/build lacks SIMD level {level}"))
            for level in dict.fromkeys(["baseline", "avx2", "avx512", *here])]


@pytest.fixture(params=_level_params())
def simd_level(request):
    """The test runs once at every SIMD level this CPU runs (the others are skipped); the level in
    force before is restored afterwards."""
    from thermossl import _core

    before = _core.simd_level()
    _core.set_simd_level(request.param)
    yield request.param
    _core.set_simd_level(before)
