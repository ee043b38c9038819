"""Figures of a learning demon's ledger (the theory page of the documentation: strokes, the demon): cycles, work and heat, the feedback
bound (D2), information and charges, and the distribution of the per-sample work.

matplotlib is an optional dependency (``pip install "thermossl[plot]"``); it is imported only when
a function here is called, so ``import thermossl.plots`` works without it. Figures are made with
``matplotlib.figure.Figure`` on the non-interactive Agg canvas: no pyplot, no global state, no
display.

Every ``plot_*`` function draws into the ``matplotlib.axes.Axes`` it is given, or into a new
Figure when ``ax=None``, and returns the Figure. ``ledger`` is a :class:`thermossl.demon.Ledger`
(anything with ``len()`` and ``.column(field)`` returning a numpy array per field of
``LEDGER_FIELDS`` will do). Energies, work and heat are in score units (energies are -scores,
k_B = 1); entropies and information in nats.

Non-finite ledger values (e.g. ``eta`` = nan when D_before = 0) are drawn as gaps, never raise.
"""
from __future__ import annotations

import math
import os
import pathlib
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:  # for annotations only: matplotlib is imported when a plot is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .demon import Ledger

__all__ = [
    "plot_cycles",
    "plot_work_heat",
    "plot_feedback_bound",
    "plot_information",
    "plot_work_distribution",
    "plot_ledger",
    "save_plots",
    "bound_violations",
]

#: Cycles with at most this many rows are drawn with markers; more are drawn as plain lines.
MARKER_LIMIT = 60

#: Relative tolerance of the D2 check: a cycle violates W_ext <= T*D_before - dF when
#: W_ext - (T*D_before - dF) > BOUND_RTOL * max(|W_ext|, T*|D_before|, |dF|) (rounding of
#: float32 kernels stays well inside it; in exact arithmetic the slack is T*D_after >= 0).
BOUND_RTOL = 1e-6

_INSTALL_HINT = 'plotting needs matplotlib: pip install "thermossl[plot]"'

_FONT = 10  # base font size in points (all text >= 9 pt)
_SMALL = 9

# Colours (colour-blind safe, Okabe-Ito).
_BLUE, _ORANGE, _GREEN, _RED, _PURPLE, _GREY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "0.35"


# --------------------------------------------------------------------------------------------
# helpers


def _mpl():
    """Import matplotlib lazily (Agg canvas, Figure), or raise ImportError with the install hint."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(_INSTALL_HINT) from exc
    return Figure, FigureCanvasAgg


def _new_figure(figsize, nrows=1, ncols=1, **subplot_kw):
    Figure, FigureCanvasAgg = _mpl()
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def _root_figure(ax):
    fig = ax.figure
    while hasattr(fig, "figure") and fig.figure is not fig and fig.figure is not None:
        fig = fig.figure  # SubFigure -> its parent
    return fig



def _figure_and_axes(ax, size):
    """(figure, axes) to draw into: the given axes and its figure, or a new figure of ``size``."""
    if ax is None:
        fig, axes = _new_figure(size)
        return fig, axes[0, 0]
    _mpl()
    return _root_figure(ax), ax

def _is_axes(obj):
    from matplotlib.axes import Axes

    return isinstance(obj, Axes)


def _check_ledger(ledger):
    if not (hasattr(ledger, "column") and hasattr(ledger, "__len__")):
        raise TypeError(f"ledger must be a thermossl.demon.Ledger, got {type(ledger).__name__}")
    if len(ledger) == 0:
        raise ValueError("ledger is empty: it needs at least one completed cycle to plot")
    return ledger


def _check_T(T):
    try:
        value = float(T)
    except (TypeError, ValueError):
        raise ValueError(f"T must be a positive finite number, got {T!r}") from None
    if isinstance(T, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"T must be a positive finite number, got {T!r}")
    return value


def _check_work(work_per_sample):
    try:
        arr = np.asarray(work_per_sample, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("work_per_sample must be a 1-D array of finite numbers") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"work_per_sample must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("work_per_sample must be finite (it has nan or inf)")
    return arr


def _col(ledger, field):
    """A ledger column as float64, non-finite values as nan (drawn as gaps)."""
    values = np.asarray(ledger.column(field), dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _cycles(ledger):
    return np.asarray(ledger.column("t"), dtype=np.float64)


def _line_style(n):
    """Markers only when there are few cycles."""
    if n <= MARKER_LIMIT:
        return {"marker": "o", "markersize": 4 if n > 20 else 5, "linewidth": 1.5}
    if n > 500:
        return {"marker": None, "linewidth": 0.9, "alpha": 0.85}
    return {"marker": None, "linewidth": 1.3}


def _integer_x(ax, t):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if t.size == 1:
        ax.set_xlim(t[0] - 1, t[0] + 1)


def _style(ax, title, xlabel, ylabel):
    ax.set_title(title, fontsize=_FONT + 1)
    ax.set_xlabel(xlabel, fontsize=_FONT)
    ax.set_ylabel(ylabel, fontsize=_FONT)
    ax.tick_params(labelsize=_SMALL)
    ax.grid(True, alpha=0.25, linewidth=0.6)


def _headroom(ax, frac=0.3):
    """Extend the y-range upwards so the data fill the lower (1 - frac) of the axes (room for a
    legend at the top)."""
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log" and lo > 0 and hi > 0:
        llo, lhi = math.log10(lo), math.log10(hi)
        ax.set_ylim(lo, 10 ** (lhi + (lhi - llo) * frac / (1 - frac)))
    elif ax.get_yscale() == "linear":
        ax.set_ylim(lo, hi + (hi - lo) * frac / (1 - frac))


def _zero_line(ax):
    ax.axhline(0.0, color="0.5", linewidth=0.8, zorder=0)


# --------------------------------------------------------------------------------------------
# figures


def plot_cycles(ledger: Ledger, ax: Optional[Axes] = None) -> Figure:
    """The demon's cycles in the (S[q], U) plane.

    Cycle t runs (S_prev, U_start) -> (S_q, U_measured), the isochoric measurement stroke (the
    labels move, the energies stay: heat Q), then (S_q, U_measured) -> (S_q, U_end), the adiabatic
    feedback stroke (the energies move, the labels stay: work W, a vertical leg). S_prev, the
    entropy of the labels before the measurement, is not in the ledger: it is taken as S_q of
    cycle t-1, exact when the cycles chain their labels (the same samples cycle after cycle).
    For t = 0 it is unknown, and the isochoric leg of cycle 0 is drawn vertically at S_q[0]
    (its energy change only, no S change shown). A gap between cycles means U_start of a cycle
    differs from U_end of the one before (the energies changed between cycles, e.g. a new batch).

    Colour: cycle index (colormap with a colorbar "cycle"); solid legs isochoric, dashed legs
    adiabatic; the first start point and the last end point are marked.

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books (at least one cycle).
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new Figure).

    Returns
    -------
    matplotlib.figure.Figure
        The Figure (with ``ax=None``, a new one with the plot axes and a colorbar axes).

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "thermossl[plot]"``).
    TypeError
        If ``ledger`` is not a Ledger.
    ValueError
        If the ledger is empty.
    """
    _check_ledger(ledger)
    fig, ax = _figure_and_axes(ax, (7.0, 5.2))
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    t = _cycles(ledger)
    n = t.size
    S_q = _col(ledger, "S_q")
    U_start, U_meas, U_end = (_col(ledger, f) for f in ("U_start", "U_measured", "U_end"))
    S_prev = np.concatenate([S_q[:1], S_q[:-1]])

    iso = np.stack([np.column_stack([S_prev, U_start]), np.column_stack([S_q, U_meas])], axis=1)
    adi = np.stack([np.column_stack([S_q, U_meas]), np.column_stack([S_q, U_end])], axis=1)
    norm = Normalize(vmin=float(t.min()), vmax=float(max(t.max(), t.min() + 1)))
    cmap = "viridis"
    width = 2.0 if n <= MARKER_LIMIT else (1.2 if n <= 500 else 0.8)
    iso_lc = LineCollection(iso, cmap=cmap, norm=norm, linewidths=width, linestyles="solid")
    adi_lc = LineCollection(adi, cmap=cmap, norm=norm, linewidths=width, linestyles=(0, (3, 1.5)))
    for lc, gid in ((iso_lc, "isochoric"), (adi_lc, "adiabatic")):
        lc.set_array(t)
        lc.set_gid(gid)
        ax.add_collection(lc)

    points = np.concatenate([iso.reshape(-1, 2), adi.reshape(-1, 2)])
    finite = points[np.all(np.isfinite(points), axis=1)]
    if finite.size:
        ax.update_datalim(finite)
        lo, hi = finite.min(axis=0), finite.max(axis=0)
        span = np.where(hi - lo > 0, hi - lo, np.maximum(np.abs(hi), 1.0) * 0.05)
        ax.set_xlim(lo[0] - 0.06 * span[0], hi[0] + 0.06 * span[0])
        ax.set_ylim(lo[1] - 0.06 * span[1], hi[1] + 0.06 * span[1])
    if n <= MARKER_LIMIT:
        ax.scatter(S_q, U_meas, c=t, cmap=cmap, norm=norm, s=14, zorder=3, edgecolors="none")
    ax.plot([S_prev[0]], [U_start[0]], linestyle="none", marker="o", markersize=8,
            markerfacecolor="white", markeredgecolor="k", zorder=4)
    ax.plot([S_q[-1]], [U_end[-1]], linestyle="none", marker="s", markersize=7,
            markerfacecolor="k", markeredgecolor="k", zorder=4)

    cbar = fig.colorbar(iso_lc, ax=ax, pad=0.02)
    cbar.set_label("cycle", fontsize=_FONT)
    from matplotlib.ticker import MaxNLocator

    cbar.locator = MaxNLocator(integer=True)
    cbar.update_ticks()
    cbar.ax.tick_params(labelsize=_SMALL)
    handles = [
        Line2D([], [], color=_GREY, linewidth=2, linestyle="solid",
               label="isochoric: measurement (labels move, heat Q)"),
        Line2D([], [], color=_GREY, linewidth=2, linestyle=(0, (3, 1.5)),
               label="adiabatic: feedback (energies move, work W)"),
        Line2D([], [], linestyle="none", marker="o", markersize=8, markerfacecolor="white",
               markeredgecolor="k", label=f"start (cycle {int(t[0])})"),
        Line2D([], [], linestyle="none", marker="s", markersize=7, color="k",
               label=f"end (cycle {int(t[-1])})"),
    ]
    ax.legend(handles=handles, fontsize=_SMALL, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncol=2, frameon=False)
    _style(ax, f"Demon cycles in the (S[q], U) plane ({n} cycle{'s' if n != 1 else ''})",
           "label entropy S[q] (nats)", "energy U (score units)")
    return fig


def _split_pair(ax):
    """(top, bottom) from a pair of Axes, or (ax, twin) from one Axes."""
    if _is_axes(ax):
        return ax, None
    try:
        top, bottom = ax
    except (TypeError, ValueError):
        raise TypeError("ax must be a matplotlib Axes or a pair of Axes") from None
    if not (_is_axes(top) and _is_axes(bottom)):
        raise TypeError("ax must be a matplotlib Axes or a pair of Axes")
    return top, bottom


def plot_work_heat(ledger: Ledger, ax: Union[Axes, Sequence[Axes], None] = None) -> Figure:
    """Work W (feedback), heat Q (measurement) and ΔU per cycle, and their running sums.

    Sign: W > 0 is work done on the system, W < 0 work extracted; the first law ΔU = W + Q closes
    per cycle. Units: score units (k_B = 1).

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books (at least one cycle).
    ax : matplotlib.axes.Axes or pair of Axes, optional
        With ``ax=None`` the Figure has two panels sharing the cycle axis: per-cycle values on top,
        running sums below. A pair of Axes takes (per cycle, running sums); one Axes gets the
        running sums on a twin y-axis (thin dashed lines, right).

    Returns
    -------
    matplotlib.figure.Figure
        The Figure drawn into.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "thermossl[plot]"``).
    TypeError
        If ``ledger`` is not a Ledger, or ``ax`` is neither an Axes nor a pair of Axes.
    ValueError
        If the ledger is empty.
    """
    _check_ledger(ledger)
    if ax is None:
        fig, axes = _new_figure((7.5, 6.2), 2, 1, sharex=True)
        top, bottom = axes[0, 0], axes[1, 0]
    else:
        _mpl()
        top, bottom = _split_pair(ax)
        fig = _root_figure(top)
    t = _cycles(ledger)
    n = t.size
    style = _line_style(n)
    series = (
        ("W", "W: work (feedback)", _BLUE, "-"),
        ("Q", "Q: heat (measurement)", _RED, "-"),
        ("dU", "ΔU = W + Q", "k", "--"),
    )
    for field, label, colour, ls in series:
        kw = dict(style)
        if field == "dU":
            kw.update(marker="x" if n <= MARKER_LIMIT else None, linewidth=1.0)
        top.plot(t, _col(ledger, field), color=colour, linestyle=ls, label=label, **kw)
    _zero_line(top)
    _integer_x(top, t)
    twin = bottom is None
    if twin:
        bottom = top.twinx()
    for field, label, colour, ls in series:
        running = np.cumsum(_col(ledger, field))
        if twin:
            bottom.plot(t, running, color=colour, linestyle=":", linewidth=1.6, alpha=0.8,
                        marker="s" if style["marker"] else None, markersize=3,
                        label=f"Σ {label.split(':')[0].split(' =')[0]} (running sum, right)")
        else:
            bottom.plot(t, running, color=colour, linestyle=ls, label=f"Σ {label.split(':')[0].split(' =')[0]}",
                        **{**style, "marker": "s" if style["marker"] else None, "markersize": 3.5})
    if twin:
        bottom.set_ylabel("running sum (score units)", fontsize=_FONT)
        bottom.tick_params(labelsize=_SMALL)
        h1, l1 = top.get_legend_handles_labels()
        h2, l2 = bottom.get_legend_handles_labels()
        _headroom(top, 0.35)
        _headroom(bottom, 0.35)
        bottom.legend(h1 + h2, l1 + l2, fontsize=_SMALL, loc="upper center", framealpha=0.9, ncol=2)
        _style(top, "Work and heat per cycle", "cycle t", "per cycle (score units)")
    else:
        _zero_line(bottom)
        _integer_x(bottom, t)
        top.legend(fontsize=_SMALL, loc="best", framealpha=0.85)
        bottom.legend(fontsize=_SMALL, loc="best", framealpha=0.85)
        _style(top, "Work and heat per cycle (W > 0: work done on the system)", "cycle t",
               "per cycle (score units)")
        _style(bottom, "Running sums over the cycles", "cycle t", "running sum (score units)")
        if top.get_shared_x_axes().joined(top, bottom):
            top.set_xlabel("")
    return fig


def bound_violations(ledger: Ledger, T: float) -> npt.NDArray[np.bool_]:
    """The cycles whose W_ext exceeds the D2 bound T*D_before - dF.

    Beyond BOUND_RTOL relative rounding; cycles with non-finite values are False (not checked).

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books (at least one cycle).
    T : float
        The representation temperature, > 0.

    Returns
    -------
    numpy.ndarray of bool, shape (cycles,)
        True where the bound is violated.

    Raises
    ------
    TypeError
        If ``ledger`` is not a Ledger.
    ValueError
        If the ledger is empty, or ``T`` is not a positive finite number.
    """
    _check_ledger(ledger)
    T = _check_T(T)
    W_ext, bound, scale = _bound_terms(ledger, T)
    with np.errstate(invalid="ignore"):
        return (W_ext - bound) > BOUND_RTOL * scale


def _bound_terms(ledger, T):
    W_ext = _col(ledger, "W_ext")
    D = _col(ledger, "D_before")
    dF = _col(ledger, "dF")
    bound = T * D - dF
    scale = np.fmax(np.fmax(np.abs(W_ext), T * np.abs(D)), np.abs(dF))
    return W_ext, bound, np.where(np.isfinite(scale), scale, 0.0) + 1e-300


def plot_feedback_bound(ledger: Ledger, T: float, ax: Optional[Axes] = None) -> Figure:
    """Extracted work W_ext per cycle against its bound T·D(q_t‖p_t) − ΔF.

    The bound is D2 of the theory page of the documentation: W_ext + ΔF ≤ T·D_before. The shaded gap
    is the slack (= T·D_after in exact arithmetic). Cycles that violate the bound (see
    :func:`bound_violations`) are marked with red crosses; the title says in how many cycles the
    bound holds.

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books (at least one cycle).
    T : float
        The representation temperature, > 0.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new Figure).

    Returns
    -------
    matplotlib.figure.Figure
        The Figure drawn into.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "thermossl[plot]"``).
    TypeError
        If ``ledger`` is not a Ledger.
    ValueError
        If the ledger is empty, or ``T`` is not a positive finite number.
    """
    _check_ledger(ledger)
    T = _check_T(T)
    fig, ax = _figure_and_axes(ax, (7.0, 4.6))
    t = _cycles(ledger)
    n = t.size
    style = _line_style(n)
    W_ext, bound, _ = _bound_terms(ledger, T)
    violated = bound_violations(ledger, T)
    checked = np.isfinite(W_ext) & np.isfinite(bound)
    with np.errstate(invalid="ignore"):
        below = checked & (W_ext <= bound)
    ax.fill_between(t, W_ext, bound, where=below, interpolate=True, color=_GREEN, alpha=0.15, linewidth=0,
                    label="slack = T·D(q‖p) after feedback")
    ax.plot(t, bound, color=_GREEN, linestyle="--", label="bound T·D(q‖p_t) − ΔF", **style)
    ax.plot(t, W_ext, color=_BLUE, label="W_ext = −W (extracted work)", **style)
    nv = int(violated.sum())
    ax.plot(t[violated], W_ext[violated], linestyle="none", marker="X", markersize=9,
            color=_RED, markeredgecolor="k", zorder=5, label=f"bound violated ({nv})", gid="violations")
    _zero_line(ax)
    _integer_x(ax, t)
    holds = int((checked & ~violated).sum())
    title = f"Feedback bound (D2): W_ext ≤ T·D(q‖p) − ΔF, T = {T:g}\nholds in {holds} of {n} cycles"
    if nv:
        title += f", VIOLATED in {nv}"
    unchecked = n - int(checked.sum())
    if unchecked:
        title += f" ({unchecked} not finite)"
    _style(ax, title, "cycle t", "work (score units)")
    if nv:
        ax.title.set_color(_RED)
    ax.legend(fontsize=_SMALL, loc="best", framealpha=0.85)
    return fig


def plot_information(ledger: Ledger, ax: Optional[Axes] = None) -> Figure:
    """Information I = H(N) − S[q] the labels carry about the samples, and the charge error, per cycle.

    Left axis: I in nats, with H(N), the most it can be, dotted. Right axis: the charge error
    Σ_y abs(N_y − c_y) of the labels (log scale when all its finite values are positive, symlog
    when some are zero).

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books (at least one cycle).
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new Figure).

    Returns
    -------
    matplotlib.figure.Figure
        The Figure (with ``ax=None``, the axes and its twin).

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "thermossl[plot]"``).
    TypeError
        If ``ledger`` is not a Ledger.
    ValueError
        If the ledger is empty.
    """
    _check_ledger(ledger)
    fig, ax = _figure_and_axes(ax, (7.0, 4.6))
    t = _cycles(ledger)
    n = t.size
    style = _line_style(n)
    ax.plot(t, _col(ledger, "I"), color=_BLUE, label="I = H(N) − S[q] (left)", **style)
    ax.plot(t, _col(ledger, "H_N"), color=_BLUE, linestyle=":", linewidth=1.3,
            marker="_" if style["marker"] else None, markersize=8,
            label="H(N): the largest I can be (left)")
    _integer_x(ax, t)
    _style(ax, "Information of the labels and charge error per cycle", "cycle t", "information I (nats)")
    ax.yaxis.label.set_color(_BLUE)
    right = ax.twinx()
    err = _col(ledger, "charge_err")
    right.plot(t, err, color=_ORANGE, label="charge error Σ|N_y − c_y| (right)",
               **{**style, "marker": "s" if style["marker"] else None})
    finite = err[np.isfinite(err)]
    if finite.size and np.all(finite > 0):
        right.set_yscale("log")
        scale_note = "log scale"
    elif finite.size and np.any(finite > 0):
        right.set_yscale("symlog", linthresh=float(finite[finite > 0].min()))
        scale_note = "symlog scale"
    else:
        scale_note = "linear"
    right.set_ylabel(f"charge error ({scale_note})", fontsize=_FONT, color=_ORANGE)
    right.tick_params(labelsize=_SMALL)
    _headroom(ax)
    _headroom(right)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = right.get_legend_handles_labels()
    # On the twin (drawn last) so no line crosses it; the headroom keeps the data below it.
    right.legend(h1 + h2, l1 + l2, fontsize=_SMALL, loc="upper center", framealpha=0.9)
    return fig


def plot_work_distribution(work_per_sample: npt.ArrayLike, cycle: Optional[int] = None,
                           ax: Optional[Axes] = None) -> Figure:
    """Histogram of the per-sample work of one feedback stroke.

    The histogram shows N times the weighted terms, N = len(work_per_sample): with the default
    weights w_i = 1/N that is each sample's own stochastic work Σ_y q_iy(E'_iy − E_iy), and in any
    case their mean is the cycle's W. The mean and zero are marked; the title gives the cycle (when
    known) and the fraction of samples with negative work (work extracted from them).

    Parameters
    ----------
    work_per_sample : array_like, shape (N,)
        The weighted terms w_i·Σ_y q_iy(E'_iy − E_iy) (as ``Demon.work_per_sample``); they sum to
        the cycle's W.
    cycle : int, optional
        The cycle they belong to, for the title.
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new Figure).

    Returns
    -------
    matplotlib.figure.Figure
        The Figure drawn into.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    ValueError
        If ``work_per_sample`` is not a non-empty 1-D array of finite numbers.
    """
    work = _check_work(work_per_sample)
    fig, ax = _figure_and_axes(ax, (6.5, 4.4))
    N = work.size
    x = N * work
    mean = float(x.mean())
    bins = np.histogram_bin_edges(x, bins="auto") if np.ptp(x) > 0 else 1
    if not np.isscalar(bins) and bins.size > 101:
        bins = 100
    ax.hist(x, bins=bins, color=_BLUE, alpha=0.75, edgecolor="white", linewidth=0.4,
            label=f"{N} samples")
    ax.axvline(0.0, color="k", linewidth=1.0, label="zero")
    ax.axvline(mean, color=_RED, linestyle="--", linewidth=1.6, label=f"mean = W = {mean:.3g}")
    negative = float(np.mean(x < 0))
    which = f"cycle {int(cycle)}" if cycle is not None else "one cycle"
    _style(ax, f"Per-sample work, {which}\n{100 * negative:.1f}% of samples with negative work (extracted)",
           "per-sample work N·w_i·Σ_y q_iy(E'_iy − E_iy) (score units)", "number of samples")
    ax.legend(fontsize=_SMALL, loc="best", framealpha=0.85)
    return fig


def _plot_residuals(ledger, ax):
    """|residual| of the ledger's identities per cycle, log scale (the books close to rounding)."""
    t = _cycles(ledger)
    style = _line_style(t.size)
    floor = 1e-18
    colours = (_BLUE, _RED, _GREEN, _ORANGE, _PURPLE, "k")
    fields = ("res_first_law", "res_D1", "res_G1", "res_G2", "res_G4", "res_E2")
    for field, colour in zip(fields, colours):
        r = np.abs(_col(ledger, field))
        ax.plot(t, np.where(r > floor, r, floor), color=colour, label=field[4:],
                **{**style, "markersize": 3, "linewidth": 1.0})
    ax.set_yscale("log")
    _integer_x(ax, t)
    worst = max((float(np.nanmax(np.abs(_col(ledger, f)))) if np.any(np.isfinite(_col(ledger, f))) else math.nan
                 for f in fields), default=math.nan)
    _style(ax, f"Do the books close? |residuals| of the identities\n(largest: {worst:.2g})", "cycle t",
           f"|residual| (0 drawn at {floor:g})")
    ax.legend(fontsize=_SMALL, loc="best", framealpha=0.85, ncol=3)


def plot_ledger(ledger: Ledger, T: float, work_per_sample: Optional[npt.ArrayLike] = None,
                work_cycle: Optional[int] = None) -> Figure:
    """One overview Figure (2 x 3 grid) of a ledger.

    Cycles in the (S, U) plane, work and heat (two stacked panels), the feedback bound, information
    and charge error, the residuals of the ledger's identities, and — when ``work_per_sample`` is
    given — its distribution (without it the sixth cell stays empty).

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books (at least one cycle).
    T : float
        The representation temperature, > 0.
    work_per_sample : array_like, shape (N,), optional
        The per-sample work of one cycle.
    work_cycle : int, optional
        Its cycle (default: the ledger's last, the one ``Demon.work_per_sample`` belongs to).

    Returns
    -------
    matplotlib.figure.Figure
        The Figure drawn into.

    Raises
    ------
    ImportError
        If matplotlib is not installed (``pip install "thermossl[plot]"``).
    TypeError
        If ``ledger`` is not a Ledger.
    ValueError
        If the ledger is empty, ``T`` is not a positive finite number, or ``work_per_sample`` is not a
        non-empty 1-D array of finite numbers.
    """
    _check_ledger(ledger)
    T = _check_T(T)
    work = None if work_per_sample is None else _check_work(work_per_sample)
    Figure, FigureCanvasAgg = _mpl()
    fig = Figure(figsize=(20, 10.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 3)
    plot_cycles(ledger, ax=fig.add_subplot(grid[0, 0]))
    pair = grid[0, 1].subgridspec(2, 1, hspace=0.0)
    top = fig.add_subplot(pair[0])
    bottom = fig.add_subplot(pair[1], sharex=top)
    plot_work_heat(ledger, ax=(top, bottom))
    plot_feedback_bound(ledger, T, ax=fig.add_subplot(grid[0, 2]))
    plot_information(ledger, ax=fig.add_subplot(grid[1, 0]))
    _plot_residuals(ledger, fig.add_subplot(grid[1, 1]))
    if work is not None:
        if work_cycle is None:
            work_cycle = int(ledger.column("t")[-1])
        plot_work_distribution(work, cycle=work_cycle, ax=fig.add_subplot(grid[1, 2]))
    totals = {f: float(np.nansum(_col(ledger, f))) for f in ("W", "Q", "W_ext")}
    n = len(ledger)
    fig.suptitle(
        f"Learning demon ledger: {n} cycle{'s' if n != 1 else ''}, T = {T:g}   "
        f"(totals: W = {totals['W']:.4g}, Q = {totals['Q']:.4g}, W_ext = {totals['W_ext']:.4g} score units)",
        fontsize=_FONT + 4,
    )
    return fig


def save_plots(ledger: Ledger, out_dir: Union[str, os.PathLike[str]], T: float,
               work_per_sample: Optional[npt.ArrayLike] = None, work_cycle: Optional[int] = None,
               prefix: str = "", dpi: int = 120) -> list[pathlib.Path]:
    """Write the figures as PNG files into ``out_dir``.

    cycles.png, work_heat.png, feedback_bound.png, information.png, work_distribution.png (only
    when ``work_per_sample`` is given) and overview.png, each name preceded by ``prefix``.

    Parameters
    ----------
    ledger : thermossl.demon.Ledger
        The books (at least one cycle).
    out_dir : str or os.PathLike
        The folder (created if missing).
    T : float
        The representation temperature, > 0.
    work_per_sample : array_like, shape (N,), optional
        The per-sample work of one cycle.
    work_cycle : int, optional
        Its cycle (default: the ledger's last).
    prefix : str, optional
        Prepended to each file name.
    dpi : int, optional
        Resolution of the PNG files.

    Returns
    -------
    list of pathlib.Path
        The paths written, in that order.

    Raises
    ------
    OSError
        If ``out_dir`` cannot be created or written.
    ImportError
        If matplotlib is not installed (``pip install "thermossl[plot]"``).
    TypeError
        If ``ledger`` is not a Ledger.
    ValueError
        If the ledger is empty, ``T`` is not a positive finite number, or ``work_per_sample`` is not a
        non-empty 1-D array of finite numbers.
    """
    _check_ledger(ledger)
    T = _check_T(T)
    work = None if work_per_sample is None else _check_work(work_per_sample)
    if work is not None and work_cycle is None:
        work_cycle = int(ledger.column("t")[-1])
    _mpl()
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        ("cycles", lambda: plot_cycles(ledger)),
        ("work_heat", lambda: plot_work_heat(ledger)),
        ("feedback_bound", lambda: plot_feedback_bound(ledger, T)),
        ("information", lambda: plot_information(ledger)),
    ]
    if work is not None:
        figures.append(("work_distribution", lambda: plot_work_distribution(work, cycle=work_cycle)))
    figures.append(("overview", lambda: plot_ledger(ledger, T, work, work_cycle)))
    paths = []
    for name, make in figures:
        path = out / f"{prefix}{name}.png"
        make().savefig(path, dpi=dpi)
        paths.append(path)
    return paths
