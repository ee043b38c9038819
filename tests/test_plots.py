"""thermossl.plots: figures of the demon's ledger (Agg canvas, no display)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from thermossl import gibbs, plots  # noqa: E402
from thermossl.demon import LEDGER_FIELDS, Demon, Ledger  # noqa: E402
from thermossl.reservoirs import swav  # noqa: E402

T = 0.1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_demon(cycles, seed=0, N=64, K=6, lr=0.5):
    """A real demon run: each feedback is a descent step on the loss, E -= lr (q - p)."""
    rng = np.random.default_rng(seed)
    demon = Demon(T, swav())
    E = -rng.normal(size=(N, K))
    for _ in range(cycles):
        demon.measure(E, index=np.arange(N))
        E_after = E - lr * (demon.labels - gibbs(E, T)) + 0.003 * rng.normal(size=E.shape)
        demon.feedback(E_after)
        E = E_after
    return demon


@pytest.fixture(scope="module")
def demon():
    return run_demon(12)


@pytest.fixture(scope="module")
def ledger(demon):
    return demon.ledger


def synthetic_row(t, **values):
    row = {f: 0.0 for f in LEDGER_FIELDS}
    row.update(t=t, W=-0.01, W_ext=0.01, D_before=0.5, dF=-0.01, S_q=0.1 / (t + 1), U_start=-t,
               U_measured=-t - 0.1, U_end=-t - 1.0, I=2.0, H_N=2.2, charge_err=0.1)
    row.update(values)
    return row


def line(ax, label):
    matches = [ln for ln in ax.lines if ln.get_label() == label]
    assert len(matches) == 1, [ln.get_label() for ln in ax.lines]
    return matches[0]


def assert_labelled(ax):
    assert ax.get_title()
    assert ax.get_xlabel()
    assert ax.get_ylabel()


def main_axes(fig):
    """The figure's axes less colorbars and twins (axes with a title)."""
    return [ax for ax in fig.axes if ax.get_title()]


def test_import_without_matplotlib():
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import thermossl.plots as p\n"
        "from thermossl.demon import Ledger, LEDGER_FIELDS\n"
        "led = Ledger([{f: 0.0 for f in LEDGER_FIELDS}])\n"
        "try:\n"
        "    p.plot_cycles(led)\n"
        "except ImportError as e:\n"
        "    assert 'pip install \"thermossl[plot]\"' in str(e), e\n"
        "    print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_plot_cycles(ledger):
    fig = plots.plot_cycles(ledger)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2  # the plot and its colorbar
    ax = fig.axes[0]
    assert ax.get_xlabel() == "label entropy S[q] (nats)"
    assert ax.get_ylabel() == "energy U (score units)"
    assert ax.get_title() and fig.axes[1].get_ylabel() == "cycle"
    assert ax.get_legend() is not None and len(ax.get_legend().get_texts()) == 4
    lcs = {c.get_gid(): c for c in ax.collections if isinstance(c, LineCollection)}
    S_q = ledger.column("S_q")
    iso = np.array(lcs["isochoric"].get_segments())
    adi = np.array(lcs["adiabatic"].get_segments())
    assert iso.shape == adi.shape == (len(ledger), 2, 2)
    np.testing.assert_array_equal(iso[:, 0, 1], ledger.column("U_start"))
    np.testing.assert_array_equal(iso[:, 1, 1], ledger.column("U_measured"))
    np.testing.assert_array_equal(iso[1:, 0, 0], S_q[:-1])  # S_prev = S_q of the cycle before
    assert iso[0, 0, 0] == S_q[0]  # cycle 0: no S change drawn
    np.testing.assert_array_equal(iso[:, 1, 0], S_q)
    np.testing.assert_array_equal(adi[:, 0], iso[:, 1])
    np.testing.assert_array_equal(adi[:, 1, 0], S_q)
    np.testing.assert_array_equal(adi[:, 1, 1], ledger.column("U_end"))
    np.testing.assert_array_equal(lcs["isochoric"].get_array(), ledger.column("t"))


def test_plot_work_heat(ledger):
    fig = plots.plot_work_heat(ledger)
    assert len(fig.axes) == 2
    top, bottom = fig.axes
    for ax in (top, bottom):
        assert ax.get_title() and ax.get_ylabel() and ax.get_legend() is not None
        assert "score units" in ax.get_ylabel()
    assert bottom.get_xlabel() == "cycle t"
    t = ledger.column("t")
    for field, label in (("W", "W: work (feedback)"), ("Q", "Q: heat (measurement)"), ("dU", "ΔU = W + Q")):
        ln = line(top, label)
        np.testing.assert_array_equal(ln.get_xdata(), t)
        np.testing.assert_array_equal(ln.get_ydata(), ledger.column(field))
        short = label.split(":")[0].split(" =")[0]
        np.testing.assert_allclose(line(bottom, f"Σ {short}").get_ydata(), np.cumsum(ledger.column(field)))
    assert any(np.all(np.asarray(ln.get_ydata()) == 0) for ln in top.lines)  # the zero line


def test_plot_work_heat_into_one_axes_uses_a_twin(ledger):
    fig, axes = plots._new_figure((6, 4))
    out = plots.plot_work_heat(ledger, ax=axes[0, 0])
    assert out is fig and len(fig.axes) == 2
    twin = fig.axes[1]
    assert twin.get_ylabel() == "running sum (score units)"
    np.testing.assert_allclose(twin.lines[0].get_ydata(), np.cumsum(ledger.column("W")))


def test_plot_feedback_bound(ledger):
    fig = plots.plot_feedback_bound(ledger, T)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert_labelled(ax)
    n = len(ledger)
    assert f"holds in {n} of {n} cycles" in ax.get_title()
    assert "VIOLATED" not in ax.get_title()
    np.testing.assert_array_equal(line(ax, "W_ext = −W (extracted work)").get_ydata(), ledger.column("W_ext"))
    bound = T * ledger.column("D_before") - ledger.column("dF")
    np.testing.assert_allclose(line(ax, "bound T·D(q‖p_t) − ΔF").get_ydata(), bound, rtol=0, atol=1e-15)
    assert len(line(ax, "bound violated (0)").get_xdata()) == 0
    assert not plots.bound_violations(ledger, T).any()


def test_plot_feedback_bound_marks_violations():
    # Cycle 1 extracts more than T*D_before - dF = 0.1*0.5 + 0.01 = 0.06.
    rows = [synthetic_row(0), synthetic_row(1, W_ext=0.2, W=-0.2), synthetic_row(2)]
    led = Ledger(rows)
    np.testing.assert_array_equal(plots.bound_violations(led, T), [False, True, False])
    fig = plots.plot_feedback_bound(led, T)
    ax = fig.axes[0]
    assert "holds in 2 of 3 cycles" in ax.get_title()
    assert "VIOLATED in 1" in ax.get_title()
    marked = line(ax, "bound violated (1)")
    np.testing.assert_array_equal(marked.get_xdata(), [1])
    np.testing.assert_array_equal(marked.get_ydata(), [0.2])


def test_plot_feedback_bound_rounding_is_not_a_violation():
    # W_ext equal to the bound up to rounding (D_after = 0) holds it.
    bound = T * 0.5 + 0.01
    led = Ledger([synthetic_row(0, W_ext=bound * (1 + 1e-12))])
    assert not plots.bound_violations(led, T).any()


def test_plot_information(ledger):
    fig = plots.plot_information(ledger)
    assert len(fig.axes) == 2  # information and its twin (charge error)
    left, right = fig.axes
    assert_labelled(left)
    assert "nats" in left.get_ylabel() and "charge error" in right.get_ylabel()
    np.testing.assert_array_equal(line(left, "I = H(N) − S[q] (left)").get_ydata(), ledger.column("I"))
    np.testing.assert_array_equal(right.lines[0].get_ydata(), ledger.column("charge_err"))
    assert right.get_yscale() == "log"
    assert right.get_legend() is not None


def test_plot_information_zero_charge_error_is_not_log():
    led = Ledger([synthetic_row(0, charge_err=0.0), synthetic_row(1, charge_err=0.0)])
    right = plots.plot_information(led).axes[1]
    assert right.get_yscale() == "linear"
    led = Ledger([synthetic_row(0, charge_err=0.0), synthetic_row(1, charge_err=1e-3)])
    assert plots.plot_information(led).axes[1].get_yscale() == "symlog"


def test_plot_work_distribution(demon):
    work = demon.work_per_sample
    fig = plots.plot_work_distribution(work, cycle=11)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert_labelled(ax)
    assert "cycle 11" in ax.get_title()
    negative = np.mean(work < 0)
    assert f"{100 * negative:.1f}% of samples with negative work" in ax.get_title()
    counts = [p.get_height() for p in ax.patches]
    assert sum(counts) == work.size
    (mean_line,) = [ln for ln in ax.lines if ln.get_label().startswith("mean = W")]
    assert mean_line.get_xdata()[0] == pytest.approx(work.sum())  # mean of N*w_i*... is W
    assert mean_line.get_xdata()[0] == pytest.approx(demon.ledger[-1]["W"])
    assert line(ax, "zero").get_xdata()[0] == 0
    assert "one cycle" in plots.plot_work_distribution(work).axes[0].get_title()


def test_plot_work_distribution_constant_values():
    fig = plots.plot_work_distribution(np.full(8, -0.25))
    ax = fig.axes[0]
    assert "100.0% of samples with negative work" in ax.get_title()
    assert sum(p.get_height() for p in ax.patches) == 8


def test_plot_ledger(ledger, demon):
    fig = plots.plot_ledger(ledger, T, demon.work_per_sample)
    assert fig.get_suptitle()
    titled = main_axes(fig)
    # cycles, work per cycle, running sums, bound, information, residuals, work distribution
    assert len(titled) == 7
    for ax in titled:
        assert ax.get_ylabel()
    assert any(f"cycle {len(ledger) - 1}" in ax.get_title() for ax in titled)
    assert len(main_axes(plots.plot_ledger(ledger, T))) == 6


def test_draws_into_given_axes(ledger):
    fig, axes = plots._new_figure((10, 4), 1, 2)
    assert plots.plot_feedback_bound(ledger, T, ax=axes[0, 0]) is fig
    assert plots.plot_cycles(ledger, ax=axes[0, 1]) is fig
    assert axes[0, 0].get_title() and axes[0, 1].get_title()


def test_save_plots(tmp_path, ledger, demon):
    out = tmp_path / "new" / "dir"
    paths = plots.save_plots(ledger, out, T, demon.work_per_sample, prefix="run_", dpi=40)
    names = [p.name for p in paths]
    assert names == ["run_cycles.png", "run_work_heat.png", "run_feedback_bound.png", "run_information.png",
                     "run_work_distribution.png", "run_overview.png"]
    for p in paths:
        assert p.parent == out
        data = p.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    paths = plots.save_plots(ledger, tmp_path, T, dpi=30)
    assert [p.name for p in paths] == ["cycles.png", "work_heat.png", "feedback_bound.png", "information.png",
                                       "overview.png"]


def test_one_cycle(tmp_path):
    demon = run_demon(1)
    assert len(demon.ledger) == 1
    paths = plots.save_plots(demon.ledger, tmp_path, T, demon.work_per_sample, dpi=30)
    assert len(paths) == 6 and all(p.read_bytes().startswith(PNG_SIGNATURE) for p in paths)
    fig = plots.plot_feedback_bound(demon.ledger, T)
    assert "holds in 1 of 1 cycles" in fig.axes[0].get_title()


def test_many_cycles_have_no_markers():
    led = Ledger(synthetic_row(t) for t in range(2000))
    ax = plots.plot_work_heat(led).axes[0]
    assert line(ax, "W: work (feedback)").get_marker() in (None, "None", "")
    ax = plots.plot_work_heat(Ledger([synthetic_row(0)])).axes[0]
    assert line(ax, "W: work (feedback)").get_marker() == "o"


def test_non_finite_values_do_not_crash(tmp_path):
    rows = [synthetic_row(0, eta=math.nan, W_ext_over_TI=math.inf),
            synthetic_row(1, W=math.nan, S_q=math.inf, charge_err=math.nan, D_before=math.nan),
            synthetic_row(2, res_D1=math.nan)]
    led = Ledger(rows)
    paths = plots.save_plots(led, tmp_path, T, dpi=30)
    assert all(p.stat().st_size > 0 for p in paths)
    title = plots.plot_feedback_bound(led, T).axes[0].get_title()
    assert "holds in 2 of 3 cycles" in title and "1 not finite" in title


@pytest.mark.parametrize("func", [
    lambda led: plots.plot_cycles(led),
    lambda led: plots.plot_work_heat(led),
    lambda led: plots.plot_feedback_bound(led, T),
    lambda led: plots.plot_information(led),
    lambda led: plots.plot_ledger(led, T),
    lambda led: plots.save_plots(led, "/nonexistent-never-created", T),
])
def test_empty_ledger_is_rejected(func):
    with pytest.raises(ValueError, match="ledger"):
        func(Ledger())


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "hot", None])
def test_bad_temperature_is_rejected(ledger, bad):
    with pytest.raises(ValueError, match="T must"):
        plots.plot_feedback_bound(ledger, bad)
    with pytest.raises(ValueError, match="T must"):
        plots.plot_ledger(ledger, bad)


@pytest.mark.parametrize("bad", [np.zeros((3, 2)), np.array([0.1, np.nan]), np.array([np.inf]), [], "x"])
def test_bad_work_per_sample_is_rejected(ledger, bad, tmp_path):
    with pytest.raises(ValueError, match="work_per_sample"):
        plots.plot_work_distribution(bad)
    with pytest.raises(ValueError, match="work_per_sample"):
        plots.save_plots(ledger, tmp_path, T, work_per_sample=bad)
    assert not list(tmp_path.iterdir())  # validated before anything is written
