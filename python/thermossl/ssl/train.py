"""Self-labelling training (SeLa, SwAV, DINO) with the demon's books kept as the model learns.

Every training step is one demon cycle (the theory page of the documentation):

1. measurement: the method's reservoir turns the current energies into labels (an isochoric
   stroke: heat, entropy production, information). A minibatch holds new samples, so the labels
   the measurement starts from are the representation's own Gibbs state of them (SwAV, DINO);
   SeLa labels the same data set every step and chains its labels from cycle to cycle;
2. feedback: one optimiser step on the cross-entropy of those labels (an adiabatic stroke: the
   energy levels move with the labels fixed; the demon extracts the work -W).

What the methods measure and where the feedback acts:

- **SwAV**: two views a, b of a batch; labels q_a are Sinkhorn-balanced (3 iterations,
  T' = 0.05, toward estimated charge targets; ``charge_targets='equal'``: SwAV's equipartition)
  codes of view a, q_b those of view b; the loss is the swapped prediction
  [L(q_a, E_b) + L(q_b, E_a)] / 2. The ledger follows q_a: measured on view a's energies, the
  work done on view b's energies (``Demon.feedback(E_b_after, E_before=E_b)``).
- **SeLa**: labels of the whole data set, Sinkhorn-balanced to tolerance (T' = 1/25, float64,
  toward charge targets estimated from the label shares during training — not SeLa's
  equipartition, which ``charge_targets='equal'`` restores;
  warm-started from the last potentials, over-relaxed; charge error sum_y |N_y - c_y| <= 0.1/n
  by default, a tenth of one sample's weight — SeLa's own code stops at a 10% relative change of
  the scalings), measured on the clean inputs every step and chained per sample
  (``Demon.measure(E, index=arange(n))``); the feedback is a step on an augmented batch with
  those labels, and the work is counted on the clean energies of the whole data set.
- **DINO**: a teacher (exponential moving average of the student, DINO's cosine momentum
  schedule to 1, its base scaled to the run's length) labels view a by centering and sharpening
  (T' = 0.04 — DINO's default teacher temperature, whose warm-up starts at 0.04, so no warm-up
  here; center momentum max(0.9, 1 - B / (64 K)) for batches of B, a horizon of ~10 steps, short
  against every run's length; by
  default the center follows the label shares toward estimated targets, ``centering='shares'``,
  where DINO's follows the mean score, ``centering='mean'``); the
  student learns to predict them from view b (and view b's teacher labels from view a, with the
  same center); its last layer (the prototypes) starts at the spherical k-means centroids of the
  initial embeddings (DINO's centering does not balance the labels, so the start decides the partition)
  and is frozen in the first epoch, as DINO's. The ledger follows the teacher's labels of view a
  and the work done on the student's energies of view b.

Batches: ceil(n * epochs / 512) samples (max(8, n/20) to 256) by default, ~512 steps per run.
Views of feature vectors: noise 0.3 and masking 0.3 (in data standard deviations); of images:
shifts, noise 0.1, masking 0.1 (see DEFAULTS).
"""
from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import numpy.typing as npt

from .._backends import cpu
from .._validation import as_real_array, positive_temperature
from ..balancing import _sinkhorn
from ..demon import Demon, Ledger
from ..gibbs import _cross_entropy, _gibbs
from ..reservoirs import CenteringReservoir, LabelState, SinkhornReservoir
from ..thermo import _charges as label_charges
from .model import Adam, Encoder
from .views import Views

__all__ = ["METHODS", "DEFAULTS", "TrainResult", "train", "teacher_momentum", "charge_momentum", "center_momentum",
           "floored_shares",
           "ShareCenteringReservoir"]

METHODS = ("sela", "swav", "dino")

#: Options of :func:`train` and their defaults. ``T_label`` None means the method's own:
#: SeLa 1/25, SwAV 0.05, DINO 0.04. Three defaults scale with the data and the run (None):
#:
#: - ``batch_size``: ceil(n * epochs / 512) between max(8, ceil(n / 20)) and 256 (at most n) —
#:   about 512 optimiser steps per run where the data allow, at most ~20 steps per epoch (SeLa
#:   labels the whole data set every step), 256 for long runs on larger data (the digits demo: 7
#:   steps per epoch, as before). A fixed 256 gave small data sets (150-570 samples) one or two steps per
#:   epoch, 30-60 steps in 30 epochs: too few for any method to learn (SeLa's median NMI on wine
#:   0.647 with 30 steps, 0.85x k-means with ~500), and DINO's teacher never left its random start.
#: - ``teacher_momentum`` (DINO): the base m0 of DINO's cosine schedule m_t = 1 - (1 - m0)(1 +
#:   cos(pi t / steps)) / 2, which rises to 1 at the last step as in the paper. DINO's 0.996 is an
#:   EMA horizon 1 / (1 - m0) of 250 steps against 125k steps of training; None scales it to the
#:   run: m0 = min(0.996, 1 - teacher_horizon / steps), a horizon of steps / teacher_horizon
#:   (60 horizons per run by default, see below). A fixed 0.99 over 30-60 steps left the teacher at its
#:   random initialisation (0.99^30 = 0.74 of it), labelling with a random network: no work was
#:   extracted (sum W > 0) and the labels matched nothing.
#: - ``tol`` (SeLa): the charge error sum_y |N_y - c_y| at which Sinkhorn stops, default 0.1 / n: the
#:   charges balanced to a tenth of one sample's weight. A fixed 1e-5 is a ten-thousandth of a
#:   sample at n = 150 and cost up to 2000 iterations per label update where the labels are sharp.
#:
#: Two defaults depend on the kind of data (None):
#:
#: - ``noise``, ``mask``: 0.1 and 0.1 for images (``image_shape`` given: the shifts are the main
#:   augmentation), 0.3 and 0.3 for feature vectors, where noise and masking are the only ones.
#:   Two views must differ by more than the gaps inside a class for invariance to them to say
#:   anything: at 0.1 data standard deviations any balanced cut through a class was as invariant
#:   as the class boundary, and training drifted to such cuts (DINO on wine, seed 0: the k-means
#:   NMI of its embeddings fell from 0.70 at initialisation to 0.40 after 30 epochs; SwAV on
#:   breast cancer, median of seeds 0-1: self-label NMI 0.466 at noise 0.1, 0.571 at 0.3).
#: - ``init_prototypes``: 'kmeans' for DINO, 'random' for SeLa and SwAV. 'kmeans' places the
#:   prototypes at the spherical k-means centroids of the initial network's embeddings of the
#:   clean data (greedy k-means++ seeding, 20 Lloyd steps; the teacher starts as that student).
#:   DINO's centering does not balance the labels, so its partition is decided by where the
#:   prototypes start: from random directions it kept a random cut (digits as feature vectors,
#:   seeds 0-1: median NMI 0.620 from random prototypes, 0.684 from k-means; k-means 0.626).
#:   Sinkhorn re-balances SeLa's and SwAV's labels from any start; there a k-means start gained
#:   nothing and made SeLa's summed work positive (its first labels are already sharp, and
#:   spreading the embeddings raised their energies).
#: - ``teacher_horizon`` (DINO) 60: a teacher that averages the student over steps / 60 steps
#:   (8.5 at 512 steps). At 10 (51 steps) the teacher lagged so far that the labels kept an early
#:   arbitrary cut (random prototypes, noise 0.5, mask 0.3, median of seeds 0-1: wine NMI 0.620
#:   at 10, 0.724 at 30 (seeds 0-2); breast cancer 0.429 and 0.481; at 3: 0.438 and 0.244). With
#:   the share centering (``centering``) 30 gave the digits demo NMI 0.687, 60 gave 0.752.
#: - ``center_momentum`` (DINO) max(0.9, 1 - batch_size / (64 K)) (:func:`center_momentum`):
#:   DINO's 0.9 unless the center would average fewer than 64 samples per state. Iris (batches of
#:   9, K = 3) at 0.9: median NMI 0.576 (0.87x k-means); at 0.953: 0.607 (0.92x). The digits demo
#:   (batches of 256) at 0.95: 0.449, at 0.9: 0.752, so the slower center is for small batches only.
#: - ``centering`` (DINO) 'shares': the teacher's center follows the log-ratio of the batch's label
#:   shares to the charge targets (:class:`ShareCenteringReservoir`, an online Sinkhorn across
#:   batches); 'mean' is DINO's published center, the moving average of the mean teacher score,
#:   which does not balance the labels (the digits demo: 8 of 10 states used, charge error 0.56,
#:   NMI 0.636 against k-means 0.742).
#: - ``charge_targets`` 'estimated': the charge targets c of SeLa's and SwAV's Sinkhorn and of
#:   DINO's share centering follow a running estimate of the label shares (``_Run._set_charge_targets``),
#:   floored at ``charge_floor`` / K (0.25: a quarter of an equal share); 'equal' is the published
#:   equipartition c = 1/K, which cuts unequal classes (breast cancer, penguins, cars: SeLa's median
#:   NMI 0.84x, 0.86x and 0.76x k-means with equal shares).
#: - ``charge_horizon``: the estimate averages over steps / charge_horizon steps
#:   (:func:`charge_momentum`); 30 for SeLa and DINO, 3 for SwAV (None: the method's). SwAV's
#:   targets drift with early chance imbalances at 30 (the digits demo: NMI 0.649, equal targets
#:   0.786; at 3: 0.752).
#: - ``max_iter`` (SeLa) 10000: with estimated charge targets the labels follow well-separated
#:   classes, and where a target share differs a little from such a class's size Sinkhorn moves
#:   mass across a gap in the data: slow. Warm-started label updates on penguins (seeds 2 and 4)
#:   took a median of 73 and 67 iterations, and at most 2958 and 3177 (4 updates each above
#:   2000, the former default, which warned). The limit costs nothing where Sinkhorn converges.
DEFAULTS = {
    "batch_size": None,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "hidden": 256,
    "dim": 32,
    "T": 0.1,
    "T_label": None,
    "noise": None,
    "mask": None,
    "shift": 1,
    "sinkhorn_iters": 3,
    "tol": None,
    "max_iter": 10000,
    "freeze_prototypes_epochs": 1,
    "init_prototypes": None,
    "teacher_momentum": None,
    "teacher_horizon": 60.0,
    "center_momentum": None,
    "centering": "shares",
    "charge_targets": "estimated",
    "charge_floor": 0.25,
    "charge_horizon": None,
    "progress": False,
    "blas_threads": 1,
}
_LABEL_TEMPERATURE = {"sela": 1.0 / 25.0, "swav": 0.05, "dino": 0.04}
#: Augmentation strengths (noise, mask) when ``noise``/``mask`` are None: images, feature vectors.
_AUGMENTATION = {"image": (0.1, 0.1), "features": (0.3, 0.3)}
#: Prototype initialisation when ``init_prototypes`` is None.
_PROTOTYPE_INIT = {"sela": "random", "swav": "random", "dino": "kmeans"}
#: Horizons (EMAs per run) of the charge-target estimate when ``charge_horizon`` is None.
_CHARGE_HORIZON = {"sela": 30.0, "swav": 3.0, "dino": 30.0}


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Parameters
    ----------
    method : str
        'sela', 'swav' or 'dino'.
    labels : numpy.ndarray, shape (n,)
        Each sample's self-label, the argmax of its final label state.
    label_state : thermossl.reservoirs.LabelState
        That final label state (clean inputs).
    ledger : thermossl.demon.Ledger
        The demon's books, one row per training step.
    history : numpy.ndarray, shape (epochs,)
        Mean training loss per epoch.
    work_per_sample : numpy.ndarray, shape (n_batch,)
        The per-sample work w_i sum_y q_iy (E'_iy - E_iy) of the last cycle (the distribution
        behind W).
    work_cycle : int
        That cycle's index.
    T : float
        The representation temperature.
    T_label : float
        The reservoir temperature.
    options : dict
        The options the run used (:data:`DEFAULTS` with the overrides).
    model : Encoder
        The trained encoder.
    views : Views
        The standardisation and augmentations of the run.
    """

    method: str
    labels: np.ndarray
    label_state: LabelState
    ledger: Ledger
    history: np.ndarray
    work_per_sample: np.ndarray
    work_cycle: int
    T: float
    T_label: float
    options: dict
    model: Encoder = field(repr=False)
    views: Views = field(repr=False)

    def embed(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The learned representation of X: the backbone's features.

        What a k-NN or linear probe evaluates (SSL's convention; the loss sees :meth:`project`).

        Parameters
        ----------
        X : array_like, shape (n, d)
            Inputs, with the features of the training data.

        Returns
        -------
        numpy.ndarray, shape (n, hidden)
            The features.

        Raises
        ------
        ValueError
            If X is not a finite 2-D array with the training data's number of features.
        """
        X = _check_inputs(X, "X", n_features=self.views.mean.shape[0])
        return self.model.features(self.views.clean(X))

    def project(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The L2-normalised embeddings of X that are scored against the prototypes.

        Parameters
        ----------
        X : array_like, shape (n, d)
            Inputs, with the features of the training data.

        Returns
        -------
        numpy.ndarray, shape (n, dim)
            The embeddings.

        Raises
        ------
        ValueError
            If X is not a finite 2-D array with the training data's number of features.
        """
        X = _check_inputs(X, "X", n_features=self.views.mean.shape[0])
        return self.model.project(self.views.clean(X))

    def scores(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Cosine scores of X against the prototypes; the energies are their negatives.

        Parameters
        ----------
        X : array_like, shape (n, d)
            Inputs, with the features of the training data.

        Returns
        -------
        numpy.ndarray, shape (n, K)
            The scores.

        Raises
        ------
        ValueError
            If X is not a finite 2-D array with the training data's number of features.
        """
        X = _check_inputs(X, "X", n_features=self.views.mean.shape[0])
        return self.model.forward(self.views.clean(X)).scores


def _check_inputs(X, name: str, n_features: Optional[int] = None) -> np.ndarray:
    X = as_real_array(X, name)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features), got ndim={X.ndim}")
    if X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features (as in training), got {X.shape[1]}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} must be finite (no nan or inf)")
    return X.astype(np.float64)


def _integer(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _real(value, name: str, low: float, high: float = math.inf, low_open=False, high_open=False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not math.isfinite(value) or too_low or too_high:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low:g}, {high:g}{hi}, got {value!r}")
    return value


def _options(method: str, options: dict) -> dict:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **options}
    for name in ("hidden", "dim", "sinkhorn_iters", "max_iter"):
        opts[name] = _integer(opts[name], name, 1)
    if opts["batch_size"] is not None:
        opts["batch_size"] = _integer(opts["batch_size"], "batch_size", 2)
    opts["shift"] = _integer(opts["shift"], "shift", 0)
    opts["freeze_prototypes_epochs"] = _integer(opts["freeze_prototypes_epochs"], "freeze_prototypes_epochs", 0)
    opts["lr"] = _real(opts["lr"], "lr", 0.0, low_open=True)
    opts["weight_decay"] = _real(opts["weight_decay"], "weight_decay", 0.0)
    if opts["noise"] is not None:
        opts["noise"] = _real(opts["noise"], "noise", 0.0)
    if opts["mask"] is not None:
        opts["mask"] = _real(opts["mask"], "mask", 0.0, 1.0, high_open=True)
    if opts["init_prototypes"] is None:
        opts["init_prototypes"] = _PROTOTYPE_INIT[method]
    elif opts["init_prototypes"] not in ("kmeans", "random"):
        raise ValueError(f"init_prototypes must be 'kmeans', 'random' or None, got {opts['init_prototypes']!r}")
    if opts["tol"] is not None:
        opts["tol"] = _real(opts["tol"], "tol", 0.0, low_open=True)
    if opts["teacher_momentum"] is not None:
        opts["teacher_momentum"] = _real(opts["teacher_momentum"], "teacher_momentum", 0.0, 1.0, high_open=True)
    opts["teacher_horizon"] = _real(opts["teacher_horizon"], "teacher_horizon", 0.0, low_open=True)
    if opts["center_momentum"] is not None:
        opts["center_momentum"] = _real(opts["center_momentum"], "center_momentum", 0.0, 1.0, high_open=True)
    if opts["charge_targets"] not in ("equal", "estimated"):
        raise ValueError(f"charge_targets must be 'equal' or 'estimated', got {opts['charge_targets']!r}")
    opts["charge_floor"] = _real(opts["charge_floor"], "charge_floor", 0.0, 1.0)
    if opts["charge_horizon"] is None:
        opts["charge_horizon"] = _CHARGE_HORIZON[method]
    opts["charge_horizon"] = _real(opts["charge_horizon"], "charge_horizon", 0.0, low_open=True)
    if opts["centering"] not in ("mean", "shares"):
        raise ValueError(f"centering must be 'mean' or 'shares', got {opts['centering']!r}")
    if opts["blas_threads"] is not None:
        opts["blas_threads"] = _integer(opts["blas_threads"], "blas_threads", 1)
    opts["T"] = positive_temperature(opts["T"])
    opts["T_label"] = positive_temperature(_LABEL_TEMPERATURE[method] if opts["T_label"] is None else opts["T_label"])
    return opts


def _image_shape(image_shape, n_features: int):
    if image_shape is None:
        return None
    try:
        h, w = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise TypeError(f"image_shape must be a pair (height, width), got {image_shape!r}") from None
    if h < 1 or w < 1 or h * w != n_features:
        raise ValueError(f"image_shape {image_shape!r} does not match the {n_features} features of X (h * w)")
    return (h, w)


def _swapped_loss(model: Encoder, view_a, view_b, q_a, q_b, T: float):
    """[L(q_a, E_b) + L(q_b, E_a)] / 2 averaged over the batch, and its parameter gradients.

    The kernel returns dL/dE; the scores are s = -E, so dLoss/ds = -dL/dE.
    """
    n = view_a.scores.shape[0]
    # Validated twins: labels and scores are this module's float64 arrays of one shape.
    loss_b, grad_b = _cross_entropy(q_a, -view_b.scores, T, grad=True)
    loss_a, grad_a = _cross_entropy(q_b, -view_a.scores, T, grad=True)
    grads = model.backward(view_b, grad_b * (-0.5 / n))
    model.backward(view_a, grad_a * (-0.5 / n), grads)
    return 0.5 * (float(loss_a.mean()) + float(loss_b.mean())), grads


class _Run:
    """State shared by the methods: data, views, model, optimiser, demon, random stream."""

    def __init__(self, method, X, n_prototypes, image_shape, seed, opts):
        self.method = method
        self.X = X
        self.opts = opts
        self.rng = np.random.default_rng(seed)
        self.views = Views.fit(X, image_shape, noise=opts["noise"], mask=opts["mask"], shift=opts["shift"])
        self.clean = self.views.clean(X)
        self.sample_ids = np.arange(X.shape[0])
        self.model = Encoder(X.shape[1], n_prototypes, opts["hidden"], opts["dim"], self.rng)
        if opts["init_prototypes"] == "kmeans":
            self.model.params["P"] = spherical_kmeans(self.model.project(self.clean), n_prototypes, self.rng)
        self.optimiser = Adam(self.model.params, opts["lr"], weight_decay=opts["weight_decay"])
        self.T, self.T_label = opts["T"], opts["T_label"]
        if method == "sela":
            reservoir = SinkhornReservoir(
                self.T_label, tol=opts["tol"], max_iter=opts["max_iter"], warm_start=True, relaxation="auto"
            )
        elif method == "swav":
            reservoir = SinkhornReservoir(self.T_label, n_iter=opts["sinkhorn_iters"], warm_start=False)
        elif opts["centering"] == "mean":
            reservoir = CenteringReservoir(self.T_label, momentum=opts["center_momentum"])
        else:
            reservoir = ShareCenteringReservoir(self.T_label, momentum=opts["center_momentum"])
        self.demon = Demon(self.T, reservoir)
        self.teacher = self.model.copy() if method == "dino" else None
        self.frozen = ()
        self.t = 0  # training steps done
        self.total_steps = opts["total_steps"]
        # DINO's mean-score center has no targets: nothing to estimate.
        self.estimate_charges = hasattr(reservoir, "c") and opts["charge_targets"] == "estimated"
        self.share_estimate = np.full(n_prototypes, 1.0 / n_prototypes)  # the running estimate of N[p]

    def _set_charge_targets(self, E: np.ndarray) -> None:
        """Set the reservoir's charge targets c from a running estimate of the label shares.

        The estimate is an exponential moving average (momentum :func:`charge_momentum`) of
        N[p] = sum_i w_i p_iy, the shares of the Gibbs state p = gibbs(E, T) at the representation
        temperature of the energies about to be measured (SeLa: the student's, clean data; SwAV:
        the student's, view a; DINO: the teacher's, view a). It starts at 1/K. The targets are the
        estimate with every share raised to at least floor / K (:func:`floored_shares`), so no
        state can be emptied: the collapse that equal shares prevent stays prevented. The targets
        are set before the measurement, so each label state is the GGE of the targets it was
        measured with and the demon's books are those of a reservoir at known (T', c).
        """
        if not self.estimate_charges:
            return
        m = charge_momentum(self.total_steps, self.opts["charge_horizon"])
        shares = label_charges(_gibbs(E, self.T))
        self.share_estimate = m * self.share_estimate + (1.0 - m) * shares
        self.demon.reservoir.c = floored_shares(self.share_estimate, self.opts["charge_floor"] / shares.shape[0])

    def step(self, batch: np.ndarray) -> float:
        return getattr(self, f"_{self.method}_step")(batch)

    def _swav_step(self, batch):
        x = self.X[batch]
        a = self.model.forward(self.views(x, self.rng))
        b = self.model.forward(self.views(x, self.rng))
        self._set_charge_targets(-a.scores)
        # A new batch: its labels before the measurement are the student's own Gibbs state.
        q_a = self.demon.measure(-a.scores, q_before=_gibbs(-a.scores, self.T)).q
        q_b = _sinkhorn(-b.scores, self.T_label, c=self.demon.reservoir.c, fixed=self.opts["sinkhorn_iters"]).q
        loss, grads = _swapped_loss(self.model, a, b, q_a, q_b, self.T)
        self.optimiser.step(grads, frozen=self.frozen)
        self.demon.feedback(-self.model.forward(b.x).scores, E_before=-b.scores)
        return loss

    def _sela_step(self, batch):
        E_all = -self.model.forward(self.clean).scores
        self._set_charge_targets(E_all)
        # The same samples every step: index chains each sample's labels from its last cycle.
        q_all = self.demon.measure(E_all, index=self.sample_ids).q
        view = self.model.forward(self.views(self.X[batch], self.rng))
        loss, grad = _cross_entropy(q_all[batch], -view.scores, self.T, grad=True)
        grads = self.model.backward(view, grad * (-1.0 / len(batch)))
        self.optimiser.step(grads, frozen=self.frozen)
        self.demon.feedback(-self.model.forward(self.clean).scores)
        return float(loss.mean())

    def _dino_step(self, batch):
        x = self.X[batch]
        view_a, view_b = self.views(x, self.rng), self.views(x, self.rng)
        E_teacher = -self.teacher.forward(view_a).scores
        self._set_charge_targets(E_teacher)
        label_a = self.demon.measure(E_teacher, q_before=_gibbs(E_teacher, self.T))
        q_b = _gibbs(-self.teacher.forward(view_b).scores, self.T_label, label_a.mu / self.T_label)
        a, b = self.model.forward(view_a), self.model.forward(view_b)
        loss, grads = _swapped_loss(self.model, a, b, label_a.q, q_b, self.T)
        self.optimiser.step(grads, frozen=self.frozen)
        m = self._teacher_momentum()
        for name, value in self.teacher.params.items():
            value *= m
            value += (1.0 - m) * self.model.params[name]
        self.demon.feedback(-self.model.forward(view_b).scores, E_before=-b.scores)
        return loss

    def _teacher_momentum(self) -> float:
        return teacher_momentum(self.t, self.total_steps, self.opts["teacher_momentum"], self.opts["teacher_horizon"])

    def final_labels(self) -> LabelState:
        """The method's label state of the clean inputs after training."""
        if self.method == "dino":
            E = -self.teacher.forward(self.clean).scores
            mu = -self.demon.reservoir.center
            q = _gibbs(E, self.T_label, mu / self.T_label)
            occupation = label_charges(q)
            targets = getattr(self.demon.reservoir, "c", None)
            targets = np.full(q.shape[1], 1.0 / q.shape[1]) if targets is None else targets
            charge_err = float(np.abs(occupation - targets).sum())
            return LabelState(q, mu, occupation, charge_err, self.T_label, "centering")
        # The training reservoir: SwAV's three iterations; SeLa warm-started from the last potentials.
        return self.demon.reservoir._assign(-self.model.forward(self.clean).scores, None)


class ShareCenteringReservoir(CenteringReservoir):
    """DINO's teacher with a center that follows the label shares instead of the mean score.

    q = softmax((s - C)/T') with s = -E, mu = -C, as :class:`~thermossl.reservoirs.CenteringReservoir`;
    after each call the center moves by the log-ratio of the batch's label shares N_y = sum_i w_i
    q_iy to the targets c_y:

        C_y <- C_y + (1 - m) T' log(N_y / c_y),  then C <- C - mean(C)  (the gauge sum_y C_y = 0),

    one damped step of Sinkhorn's mu-update per batch (an online Sinkhorn across batches: the
    step multiplies each state's weight exp(mu_y / T') by (c_y / N_y)^(1 - m)). An over-occupied
    state gets a higher center (a lower mu), an empty one a lower: the charges approach c over
    the batches, where DINO's mean-score center leaves them wherever the scores put them.

    Parameters
    ----------
    T : float
        Teacher temperature T' > 0.
    momentum : float, optional
        m in [0, 1): the step is 1 - m of a full log-ratio.
    c : array_like, shape (K,), optional
        Charge targets (default 1/K); may be replaced between calls (``reservoir.c = ...``).
    """

    def __init__(self, T: float, momentum: float = 0.9, c: Optional[npt.ArrayLike] = None) -> None:
        super().__init__(T, momentum)
        self.c = None if c is None else np.asarray(c, dtype=np.float64)

    def _assign(self, E, w) -> LabelState:
        k = E.shape[1]
        if self.center is None or self.center.shape != (k,):
            self.center = np.zeros(k)
        mu = -self.center
        (E_kernel,), _ = cpu.to_kernel(E)
        q = _gibbs(E_kernel, self.T, np.ascontiguousarray(mu / self.T, dtype=np.float64))
        occupation = label_charges(q, w)
        c = np.full(k, 1.0 / k) if self.c is None else self.c
        # A share that underflowed to 0 moves its center by at most (1 - m) T' log(1e-300 / c_y).
        step = (1.0 - self.momentum) * self.T * np.log(np.maximum(occupation, 1e-300) / c)
        self.center = self.center + step
        self.center -= self.center.mean()
        return LabelState(q=q, mu=mu, charges=occupation, charge_err=float(np.abs(occupation - c).sum()), T=self.T,
                          method="centering")

    def __repr__(self) -> str:
        return f"ShareCenteringReservoir(T={self.T:g}, momentum={self.momentum:g})"


def spherical_kmeans(z: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 20) -> np.ndarray:
    """Spherical k-means centroids of unit rows.

    Greedy k-means++ seeding on the cosine distance 1 - z.c (= |z - c|^2 / 2 for unit vectors;
    each new centroid the best of 2 + ln k rows drawn with probability proportional to their
    distance to the centroids so far, as scikit-learn's k-means++), then ``n_iter`` Lloyd steps
    (each row to its most similar centroid; a centroid becomes the normalised sum of its rows; one
    left without rows stays).

    Parameters
    ----------
    z : numpy.ndarray, shape (n, D)
        Unit rows.
    k : int
        The number of centroids.
    rng : numpy.random.Generator
        The random stream of the seeding.
    n_iter : int, optional
        Lloyd steps after the seeding.

    Returns
    -------
    numpy.ndarray, shape (k, D)
        Unit centroids.
    """
    n = z.shape[0]
    trials = 2 + int(math.log(k))
    centroids = np.empty((k, z.shape[1]))
    centroids[0] = z[rng.integers(n)]
    distance = np.maximum(1.0 - z @ centroids[0], 0.0)
    for j in range(1, k):
        total = distance.sum()
        candidates = rng.choice(n, size=trials, p=distance / total) if total > 0 else rng.integers(n, size=trials)
        # (trials, n) distances with each candidate added; keep the one with the smallest sum.
        with_candidate = np.minimum(distance[None, :], np.maximum(1.0 - z[candidates] @ z.T, 0.0))
        best = int(np.argmin(with_candidate.sum(axis=1)))
        centroids[j] = z[candidates[best]]
        distance = with_candidate[best]
    for _ in range(n_iter):
        nearest = np.argmax(z @ centroids.T, axis=1)
        sums = np.zeros_like(centroids)
        np.add.at(sums, nearest, z)
        norms = np.linalg.norm(sums, axis=1)
        filled = norms > 0
        centroids[filled] = sums[filled] / norms[filled, None]
    return centroids


def floored_shares(shares: np.ndarray, floor: float) -> np.ndarray:
    """The shares closest to ``shares`` with every entry at least ``floor``.

    Entries below the floor are raised to it and the others scaled down together to make room,
    repeated until none falls below: c_y = max(floor, lam s_y) with lam such that sum c = 1, the
    minimiser of sum_y (c_y - s_y)^2 / s_y over such distributions.

    Parameters
    ----------
    shares : numpy.ndarray, shape (K,)
        Positive shares summing to 1.
    floor : float
        The smallest share, at most 1 / K.

    Returns
    -------
    numpy.ndarray, shape (K,)
        The floored shares (a new array; ``shares`` is not modified).
    """
    c = np.array(shares, dtype=np.float64)  # a copy: the caller's shares stay as they are
    held = np.zeros(c.shape, dtype=bool)
    for _ in range(c.shape[0]):
        low = ~held & (c < floor)
        if not low.any():
            break
        held |= low
        free = ~held
        rest = 1.0 - floor * held.sum()
        c = np.where(held, floor, c)
        if free.any():
            c[free] *= rest / c[free].sum()
    return c


_SAMPLES_PER_STATE = 64


def center_momentum(batch_size: int, n_states: int) -> float:
    """DINO's center momentum for batches of ``batch_size`` over ``n_states`` states.

    max(0.9, 1 - batch_size / (64 K)): DINO's 0.9, unless a batch is so small that the center
    would average fewer than 64 samples per state. The center follows the batch's label shares
    (or mean scores), whose relative noise is ~sqrt(K / samples); 1 / (1 - m) batches of B
    samples hold B / (1 - m) samples.

    Parameters
    ----------
    batch_size : int
        B, samples per batch.
    n_states : int
        K, the states (prototypes).

    Returns
    -------
    float
        The momentum m.
    """
    return max(0.9, 1.0 - batch_size / (_SAMPLES_PER_STATE * n_states))


def charge_momentum(total_steps: int, horizon: float = 30.0) -> float:
    """The momentum of the charge-target estimate: an EMA over total_steps / horizon steps.

    Parameters
    ----------
    total_steps : int
        Steps of the run.
    horizon : float, optional
        EMA horizons per run.

    Returns
    -------
    float
        1 - horizon / total_steps, at least 0.
    """
    return max(0.0, 1.0 - horizon / total_steps)


def teacher_momentum(step: int, total_steps: int, base: Optional[float] = None, horizon: float = 60.0) -> float:
    """DINO's teacher momentum at ``step`` of ``total_steps``.

    The cosine schedule m_t = 1 - (1 - m0)(1 + cos(pi t / total_steps)) / 2 from m0 at the first
    step to 1 at the end (Caron et al. 2021).

    Parameters
    ----------
    step : int
        The step t, from 0.
    total_steps : int
        Steps of the run.
    base : float, optional
        m0; None scales it to the run: m0 = min(0.996, 1 - horizon / total_steps), so the EMA
        horizon 1 / (1 - m0) is total_steps / horizon steps, never longer than DINO's 250 steps'
        worth of 0.996.
    horizon : float, optional
        EMA horizons per run when ``base`` is None.

    Returns
    -------
    float
        The momentum m_t.
    """
    m0 = base if base is not None else min(0.996, max(0.0, 1.0 - horizon / total_steps))
    return 1.0 - (1.0 - m0) * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


_TARGET_STEPS = 512


_MAX_STEPS_PER_EPOCH = 20


def _default_batch_size(n: int, epochs: int) -> int:
    """ceil(n * epochs / 512) between max(8, ceil(n / 20)) and 256 (and at most n): about 512
    optimiser steps per run where the data allow it, never batches larger than 256 (SwAV's
    per-GPU batch), and at most ~20 steps per epoch (each SeLa step labels the whole data set, so
    a short run of many tiny batches would cost SeLa epochs x n / 8 full passes)."""
    smallest = max(8, math.ceil(n / _MAX_STEPS_PER_EPOCH))
    return int(min(n, 256, max(smallest, math.ceil(n * epochs / _TARGET_STEPS))))


def _blas_threads(limit):
    """Limit numpy's BLAS to ``limit`` threads while training (threadpoolctl, if installed).

    The model's matrices are small (a batch times a few hundred units): a multi-threaded BLAS
    gains nothing there and its spinning threads collapse when the cores are shared (measured:
    10-17x slower SwAV/DINO epochs on a loaded 2-core machine). None leaves BLAS alone.
    """
    if limit is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=limit, user_api="blas")


def _progress_bar(total: int, method: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError('progress=True needs tqdm: pip install "thermossl[demo]"') from None
    # disable=None: no bar when stderr is not a terminal (logs, CI), where each update is a line.
    return tqdm(total=total, desc=f"{method} training", unit="step", leave=False, disable=None)


def _train_epochs(run: "_Run", epochs: int, n_batches: int, bar, history: np.ndarray) -> None:
    n = run.X.shape[0]
    freeze = run.opts["freeze_prototypes_epochs"]
    try:
        for epoch in range(epochs):
            # SwAV freezes the prototypes and DINO its last layer in the first epoch.
            run.frozen = ("P",) if epoch < freeze else ()
            losses = []
            for batch in np.array_split(run.rng.permutation(n), n_batches):
                losses.append(run.step(batch))
                run.t += 1
                if bar is not None:
                    bar.update()
                    bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.4f}", refresh=False)
            history[epoch] = float(np.mean(losses))
    finally:
        if bar is not None:
            bar.close()


def train(X: npt.ArrayLike, method: str = "swav", n_prototypes: int = 10, epochs: int = 50, seed: int = 0,
          image_shape: Optional[tuple[int, int]] = None, **options: Any) -> TrainResult:
    """Train a small self-labelling model on X with SeLa, SwAV or DINO; keep the demon's ledger.

    How each method trains, and the options: the self-labelling page of the documentation.

    Parameters
    ----------
    X : array_like, shape (n, d)
        Real inputs (raw: standardised inside, with the clean data's statistics).
    method : {'sela', 'swav', 'dino'}, optional
        The method.
    n_prototypes : int, optional
        K, the number of prototypes (states, self-label classes), >= 2.
    epochs : int, optional
        Passes over the data; each epoch is ``n // batch_size`` steps (at least 1), each step one
        demon cycle.
    seed : int, optional
        The one seed of every random choice (initialisation, batches, views): a run is
        reproducible for a given seed on a given machine.
    image_shape : tuple of int, optional
        (h, w) with h * w = d turns on image augmentations (shifts).
    **options
        See :data:`DEFAULTS` — batch_size (default ceil(n epochs / 512) in [max(8, n/20), 256]),
        lr, weight_decay (Adam with decoupled decay), hidden, dim (encoder sizes), T (student
        temperature, 0.1), T_label (reservoir temperature; method default), noise, mask (default 0.3, 0.3
        for feature vectors, 0.1, 0.1 for images), shift (augmentations), sinkhorn_iters (SwAV),
        init_prototypes ('kmeans' or 'random'; default 'kmeans' for DINO, 'random' for SeLa and
        SwAV), tol (default 0.1 / n), max_iter (SeLa; cycles that
        stop at max_iter are counted in one RuntimeWarning after training and show in the ledger's
        charge_err), freeze_prototypes_epochs (SwAV/SeLa: prototypes fixed at first, as in SwAV),
        teacher_momentum (the base of DINO's cosine schedule; default scaled to the run),
        teacher_horizon (EMA horizons per run when teacher_momentum is None, default 60), center_momentum
        (DINO), centering (DINO: 'shares', default, or DINO's 'mean'), charge_targets ('estimated',
        default, or the published 'equal' shares), charge_floor (smallest target share, in units of
        1/K, default 0.25), charge_horizon (EMA horizons per run of the share estimate; None: 30
        for SeLa and DINO, 3 for SwAV), progress (a tqdm bar), blas_threads (numpy's BLAS threads while training, default 1
        through threadpoolctl when installed; None: leave).

    Returns
    -------
    TrainResult
        The labels, the ledger, the model and the run's settings.

    Raises
    ------
    TypeError
        If an option is unknown or of the wrong type, or ``image_shape`` is not a pair.
    ValueError
        If ``method`` is unknown, X is not a finite 2-D array of at least 2 samples, a count or an
        option is out of range, or ``image_shape`` does not match d.
    ImportError
        If ``progress=True`` and tqdm is not installed.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    X = _check_inputs(X, "X")
    if X.shape[0] < 2:
        raise ValueError(f"X must have at least 2 samples, got {X.shape[0]}")
    n_prototypes = _integer(n_prototypes, "n_prototypes", 2)
    epochs = _integer(epochs, "epochs", 1)
    seed = _integer(seed, "seed", 0)
    image_shape = _image_shape(image_shape, X.shape[1])
    opts = _options(method, options)
    n = X.shape[0]
    if opts["batch_size"] is None:
        opts["batch_size"] = _default_batch_size(n, epochs)
    if opts["tol"] is None:
        opts["tol"] = 0.1 / n
    noise, mask = _AUGMENTATION["features" if image_shape is None else "image"]
    opts["noise"] = noise if opts["noise"] is None else opts["noise"]
    opts["mask"] = mask if opts["mask"] is None else opts["mask"]
    if opts["center_momentum"] is None:
        opts["center_momentum"] = center_momentum(opts["batch_size"], n_prototypes)
    n_batches = max(1, n // opts["batch_size"])
    opts["total_steps"] = epochs * n_batches

    run = _Run(method, X, n_prototypes, image_shape, seed, opts)
    bar = _progress_bar(epochs * n_batches, method) if opts["progress"] else None
    history = np.empty(epochs)
    # SeLa: a cycle whose Sinkhorn stops at max_iter is recorded in the ledger (charge_err > tol);
    # one warning after training says how many, instead of one per step.
    with warnings.catch_warnings(), _blas_threads(opts["blas_threads"]):
        warnings.filterwarnings("ignore", message="sinkhorn did not converge", category=RuntimeWarning)
        _train_epochs(run, epochs, n_batches, bar, history)
        final = run.final_labels()
    if method == "sela":
        errors = np.append(run.demon.ledger.column("charge_err"), final.charge_err)
        late = int(np.sum(errors > opts["tol"]))
        if late:
            warnings.warn(
                f"SeLa's Sinkhorn stopped at max_iter={opts['max_iter']} before tol={opts['tol']:g} in {late} of "
                f"{len(errors)} label updates (largest charge error {errors.max():.2e}); raise max_iter or tol",
                RuntimeWarning,
                stacklevel=2,
            )

    return TrainResult(
        method=method,
        labels=np.argmax(final.q, axis=1),
        label_state=final,
        ledger=run.demon.ledger,
        history=history,
        work_per_sample=run.demon.work_per_sample,
        work_cycle=len(run.demon.ledger) - 1,
        T=run.T,
        T_label=run.T_label,
        options={**opts, "n_prototypes": n_prototypes, "epochs": epochs, "seed": seed, "image_shape": image_shape},
        model=run.model,
        views=run.views,
    )
