"""analysis.load_run / load_scores to the letter, found by mutation testing (issue 20): the exact
errors of its arguments, which part a MissingArrayError names, the byte limit (numbered steps
count twice: the stacking copy) at its boundary, the default limit of half the physical memory,
and the label-state tolerance of the codes by dtype."""
from __future__ import annotations

import os

import numpy as np
import pytest
from numpy.testing import assert_allclose

from thermossl import analysis


def raises_exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message
    return info.value


def scores(steps=3, n=2, k=3, seed=0):
    return np.random.default_rng(seed).normal(size=(steps, n, k))


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("kwargs, message", [
    ({"scores_key": ""}, "scores_key must be a non-empty string, got ''"),
    ({"scores_key": 5}, "scores_key must be a non-empty string, got 5"),
    ({"scores_key": None}, "scores_key must be a non-empty string, got None"),
    ({"require": ("scores",)}, "require: cannot require 'scores' (with key 'scores')"),
    ({"require": ("teacher",), "teacher_key": None}, "require: cannot require 'teacher' (with key None)"),
    ({"require": ("labels",)}, "require: cannot require 'labels' (with key None)"),
    ({"codes_key": "scores"},
     "the keys must differ, got {'scores': 'scores', 'codes': 'scores', 'teacher': 'teacher', 'weights': 'weights'}"),
])
def test_argument_errors(kwargs, message, tmp_path):
    raises_exactly(ValueError, message, analysis.load_run, tmp_path / "never-opened.npz", **kwargs)


def test_every_optional_part_can_be_required(tmp_path):
    path = tmp_path / "run.npz"
    codes = np.full((3, 2, 3), 1 / 3)
    w = np.array([0.25, 0.75])
    np.savez(path, scores=scores(), teacher=scores(seed=1), codes=codes, weights=w)
    run = analysis.load_run(path, require=("codes", "teacher", "weights"))
    # codes and teacher: one per cycle, the steps but the last
    assert_allclose(run.codes, codes[:2], rtol=1e-15)
    assert_allclose(run.weights, w, rtol=1e-15)
    assert_allclose(run.teacher, scores(seed=1)[:2], rtol=1e-15)


@pytest.mark.parametrize("part, forms", [("codes", "'codes' or 'codes_<t>'"), ("teacher", "'teacher' or 'teacher_<t>'"),
                                         ("weights", "'weights'")])
def test_a_missing_required_part_is_named(part, forms, tmp_path):
    path = tmp_path / "run.npz"
    np.savez(path, scores=scores())
    error = raises_exactly(analysis.MissingArrayError, f"{path}: no {forms} arrays (keys found: 'scores')",
                           analysis.load_run, path, require=(part,))
    assert error.part == part


def test_missing_scores_are_named(tmp_path):
    path = tmp_path / "run.npz"
    np.savez(path, logits=scores())
    error = raises_exactly(analysis.MissingArrayError, f"{path}: no 'scores' or 'scores_<t>' arrays (keys found: 'logits')",
                           analysis.load_run, path)
    assert error.part == "scores"


def test_numbered_weights_are_not_weights(tmp_path):
    # Weights are one (N,) array under their key: 'weights_0', 'weights_1' are not weights.
    path = tmp_path / "run.npz"
    np.savez(path, scores=scores(), weights_0=np.array([0.5, 0.5]), weights_1=np.array([0.5, 0.5]))
    assert analysis.load_run(path).weights is None


# ----------------------------------------------------------------------------- the byte limit
def numbered_run(path):
    """Scores as numbered (2, 3) float64 steps: 3 arrays of 48 bytes, stacked by a copy: 288 bytes."""
    np.savez(path, **{f"scores_{t}": s for t, s in enumerate(scores())})
    return 2 * 3 * 48


def stacked_run(path):
    np.savez(path, scores=scores())
    return 3 * 48


@pytest.mark.parametrize("make", [numbered_run, stacked_run])
def test_byte_limit_boundary(make, tmp_path):
    path = tmp_path / "run.npz"
    need = make(path)
    assert analysis.load_run(path, max_bytes=need).scores.shape == (3, 2, 3)
    raises_exactly(ValueError, f"{path}: the arrays to read declare {need} bytes (with the copy that stacks numbered "
                   f"steps), more than the limit of {need - 1} bytes", analysis.load_run, path, max_bytes=need - 1)
    assert analysis.load_run(path, max_bytes=None).scores.shape == (3, 2, 3)


def test_default_limit_is_half_the_physical_memory(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    need = numbered_run(path)
    monkeypatch.setattr(analysis, "_physical_memory", lambda: 2 * need)
    assert analysis.load_run(path).scores.shape == (3, 2, 3)
    monkeypatch.setattr(analysis, "_physical_memory", lambda: 2 * need - 2)
    raises_exactly(ValueError, f"{path}: the arrays to read declare {need} bytes (with the copy that stacks numbered "
                   f"steps), more than the limit of {need - 1} bytes", analysis.load_run, path)
    monkeypatch.setattr(analysis, "_physical_memory", lambda: None)  # unknown: no limit
    assert analysis.load_run(path).scores.shape == (3, 2, 3)


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="Linux: /proc/meminfo is the reference")
def test_physical_memory_is_the_machines():
    with open("/proc/meminfo") as handle:
        total_kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
    memory = analysis._physical_memory()
    # MemTotal is the physical memory less what the kernel reserves: a few % below it.
    assert total_kib * 1024 <= memory < total_kib * 1024 * 1.1


# ----------------------------------------------------------------------------- codes
def codes_run(path, codes):
    np.savez(path, scores=scores(steps=3), codes=codes)


@pytest.mark.parametrize("dtype, off, accepted", [
    (np.float64, 5e-7, True), (np.float64, 5e-4, False),
    (np.float32, 5e-4, True), (np.float32, 2e-3, False),
    (np.float16, 5e-4, True),
])
def test_codes_tolerance_depends_on_their_dtype(dtype, off, accepted, tmp_path):
    codes = np.full((2, 2, 3), 1 / 3)
    codes[1, 1] = [0.5, 0.25, 0.25 + off]
    codes = codes.astype(dtype)
    path = tmp_path / "run.npz"
    codes_run(path, codes)
    total = float(codes.astype(np.float64)[1, 1].sum())
    if accepted:
        run = analysis.load_run(path)
        assert run.codes.dtype == np.float64
        assert_allclose(run.codes[1, 1], codes.astype(np.float64)[1, 1] / total, rtol=1e-15)
        assert_allclose(run.codes.sum(axis=2), 1.0, rtol=1e-15)
    else:
        raises_exactly(ValueError, f"{path}: 'codes' must be label states, rows summing to 1 (step 1, row 1 sums to "
                       f"{total!r})", analysis.load_run, path)


def test_the_first_bad_code_is_named(tmp_path):
    codes = np.full((2, 2, 3), 1 / 3)
    codes[0, 1, 2] = -0.5
    codes[1, 0, 0] = np.nan
    path = tmp_path / "run.npz"
    codes_run(path, codes)
    raises_exactly(ValueError, f"{path}: 'codes' must be finite and >= 0 (step 0, row 1, state 2: -0.5)",
                   analysis.load_run, path)


def test_load_scores_ignores_the_codes_and_the_teacher(tmp_path):
    path = tmp_path / "run.npz"
    w = np.array([0.5, 0.5])
    np.savez(path, scores=scores(), codes=np.full((3, 2, 3), -1.0), teacher=np.zeros((3, 5, 5)), weights=w)
    s, weights = analysis.load_scores(path)
    assert_allclose(s, scores(), rtol=1e-15)
    assert_allclose(weights, w, rtol=1e-15)


@pytest.mark.parametrize("n_steps, code_steps, expected", [
    (8, range(1, 8), "(0, 1, ..., 7; 8 steps) (the last may be left out), got (1, 2, ..., 7; 7 steps)"),
    (7, range(1, 8), "(0, 1, ..., 6; 7 steps) (the last may be left out), got (1, 2, ..., 7; 7 steps)"),
    (6, range(1, 7), "(0, 1, 2, 3, 4, 5) (the last may be left out), got (1, 2, 3, 4, 5, 6)"),
])
def test_codes_of_other_steps_are_refused_naming_both(n_steps, code_steps, expected, tmp_path):
    path = tmp_path / "run.npz"
    arrays = {f"scores_{t}": s for t, s in enumerate(scores(steps=n_steps))}
    arrays.update({f"codes_{t}": np.full((2, 3), 1 / 3) for t in code_steps})
    np.savez(path, **arrays)
    raises_exactly(ValueError, f"{path}: 'codes' must have the steps of the scores {expected}", analysis.load_run, path)


# ----------------------------------------------------------------------------- the archive
def npz_with(path, members):
    """An .npz written by hand: {member name: (array, .npy format version) or raw bytes}."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            if isinstance(content, bytes):
                archive.writestr(name, content)
                continue
            array, version = content
            buffer = io.BytesIO()
            if version == (3, 0):
                np.lib.format.write_array(buffer, array, version=(2, 0))
                data = bytearray(buffer.getvalue())
                data[6] = 3  # the magic's major version
                archive.writestr(name, bytes(data))
            else:
                np.lib.format.write_array(buffer, array, version=version)
                archive.writestr(name, buffer.getvalue())


def test_npy_format_2_members_are_read(tmp_path):
    path = tmp_path / "run.npz"
    npz_with(path, {"scores.npy": (scores(), (2, 0)), "weights.npy": (np.array([0.5, 0.5]), (1, 0))})
    run = analysis.load_run(path)
    assert_allclose(run.scores, scores(), rtol=1e-15)
    assert_allclose(run.weights, [0.5, 0.5], rtol=1e-15)


def test_npy_format_3_is_refused_naming_the_version(tmp_path):
    path = tmp_path / "run.npz"
    npz_with(path, {"scores.npy": (scores(), (3, 0))})
    raises_exactly(ValueError, f"{path}: 'scores': .npy format version 3.0 is not supported (1.0, 2.0)",
                   analysis.load_run, path)


def test_a_member_without_the_npy_suffix_keeps_its_whole_name(tmp_path):
    path = tmp_path / "run.npz"
    npz_with(path, {"scores": (scores(), (1, 0))})
    assert_allclose(analysis.load_run(path).scores, scores(), rtol=1e-15)


def test_a_header_without_data_says_zero_bytes(tmp_path):
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, scores())
    header_only = buffer.getvalue()[: -scores().nbytes]
    path = tmp_path / "run.npz"
    npz_with(path, {"scores.npy": header_only})
    raises_exactly(ValueError, f"{path}: 'scores': its header declares shape (3, 2, 3) float64 (144 bytes) but the file "
                   f"stores 0 bytes of data", analysis.load_run, path)


def test_a_folder_is_not_an_archive(tmp_path):
    raises_exactly(ValueError, f"{tmp_path}: a folder, not an .npz archive", analysis.load_run, tmp_path)


def test_limit_of_exactly_one_kib_is_written_in_kib(tmp_path):
    path = tmp_path / "run.npz"
    np.savez(path, scores=np.zeros((3, 8, 8)))  # 1536 bytes
    raises_exactly(ValueError, f"{path}: the arrays to read declare 1.5 KiB (with the copy that stacks numbered steps), "
                   "more than the limit of 1.0 KiB", analysis.load_run, path, max_bytes=1024)


@pytest.mark.parametrize("part", ["codes", "teacher"])
def test_a_part_of_other_rows_or_states_is_refused_naming_both_shapes(part, tmp_path):
    path = tmp_path / "run.npz"
    np.savez(path, scores=scores(), **{part: np.full((3, 2, 4), 0.25)})
    raises_exactly(ValueError, f"{path}: '{part}' must hold (N, K) = (2, 3) per step like the scores, got (2, 4)",
                   analysis.load_run, path)
