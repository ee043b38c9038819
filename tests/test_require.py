"""THERMOSSL_REQUIRE (tests/conftest.py): a skip of a test that needs a required optional part
fails the run; other skips (no GPU) stay skips. Each case runs pytest in a subprocess on a small
test file beside a copy of this suite's conftest, with a stand-in part ("fakepart")."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")


def run_pytest(tmp_path, source, require=None, parts='{"fakepart": ("json",)}', available=True):
    extra = f"\nOPTIONAL_PARTS.update({parts})\n"
    if available:  # the stand-in part counts as installed whatever its modules
        extra += "part_missing = lambda part: None\n"
    (tmp_path / "conftest.py").write_text(CONFTEST.read_text() + extra)
    (tmp_path / "test_case.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "THERMOSSL_REQUIRE"}
    if require is not None:
        env["THERMOSSL_REQUIRE"] = require
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


MARKED = """
import pytest

@pytest.mark.requires("fakepart")
@pytest.mark.skipif(True, reason="fakepart is not installed")
def test_needs_part():
    pass

def test_plain():
    assert True
"""

IMPORT_SKIP = """
import pytest

def test_imports_part():
    pytest.importorskip("thermossl_no_such_module_xyz")
"""

MODULE_IMPORT_SKIP = """
import pytest
mod = pytest.importorskip("thermossl_no_such_module_xyz")

def test_never_collected():
    pass
"""

GPU_SKIP = """
import pytest

@pytest.mark.skipif(True, reason="needs a CUDA device")
def test_gpu():
    pass
"""


def test_marked_skip_passes_without_the_variable(tmp_path):
    code, out = run_pytest(tmp_path, MARKED)
    assert code == 0, out
    assert "1 passed, 1 skipped" in out


def test_marked_skip_fails_when_the_part_is_required(tmp_path):
    code, out = run_pytest(tmp_path, MARKED, require="fakepart")
    assert code == 1, out
    assert "THERMOSSL_REQUIRE='fakepart' requires 'fakepart'" in out and "fakepart is not installed" in out
    assert "1 passed" in out


@pytest.mark.parametrize("source", [IMPORT_SKIP, MODULE_IMPORT_SKIP], ids=["in-test", "module-level"])
def test_importorskip_of_a_required_module_fails(tmp_path, source):
    parts = '{"fakepart": ("thermossl_no_such_module_xyz",)}'
    code, out = run_pytest(tmp_path, source, parts=parts)
    assert code in (0, 5), out  # skipped (module level: nothing collected)
    assert "skipped" in out.lower()
    code, out = run_pytest(tmp_path, source, require="fakepart", parts=parts)
    assert code not in (0, 5), out
    assert "could not import 'thermossl_no_such_module_xyz'" in out
    assert "requires 'fakepart'" in out


def test_gpu_skip_stays_a_skip(tmp_path):
    code, out = run_pytest(tmp_path, GPU_SKIP, require="fakepart")
    assert code == 0, out
    assert "1 skipped" in out


def test_a_required_part_that_is_not_installed_stops_the_session(tmp_path):
    parts = '{"fakepart": ("thermossl_no_such_module_xyz",)}'
    code, out = run_pytest(tmp_path, GPU_SKIP, require="fakepart", parts=parts, available=False)
    assert code == 4, out  # pytest's usage error
    assert "requires fakepart, but module 'thermossl_no_such_module_xyz' is not installed" in out


def test_unknown_part_is_a_usage_error(tmp_path):
    code, out = run_pytest(tmp_path, GPU_SKIP, require="fakepart,cuda")
    assert code == 4, out
    assert "unknown parts ['cuda']" in out
