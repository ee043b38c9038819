"""The small self-labelling model: an MLP encoder, L2-normalised embeddings and prototypes.

Backbone: one hidden ReLU layer (its output is the learned representation); projection: a linear
layer to the embedding e, normalised to z = e/|e|; head: K prototypes.

scores s_iy = <z_i, c_y> with z_i = e_i / |e_i| (e = MLP(x)) and c_y = P_y / |P_y|: cosine
similarities in [-1, 1], as in SwAV and DINO. The energies of the thermodynamic model are
E = -s; the student's Gibbs state at T is softmax(s / T).

The forward pass keeps what the backward pass needs; the backward pass takes dLoss/ds, which the
training loop gets from the package's kernels (``cross_entropy(..., grad=True)`` gives dL/dE, and
dL/ds = -dL/dE). Everything here is float64 numpy: the model is tiny, the matrices that matter
(N x K scores) go through the C++ kernels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import numpy as np

__all__ = ["Encoder", "Adam"]

_PARAMS = ("W1", "b1", "W2", "b2", "P")


@dataclass
class _Forward:
    x: np.ndarray
    pre: np.ndarray  # x W1 + b1
    hidden: np.ndarray  # relu(pre)
    norm: np.ndarray  # |e_i|, (n, 1)
    z: np.ndarray  # e / |e|, (n, D)
    prototypes: np.ndarray  # c = P / |P|, (K, D)
    prototype_norm: np.ndarray  # |P_y|, (K, 1)
    scores: np.ndarray  # z c^T, (n, K)


_NORM_EPS2 = 1e-12  # (1e-6)^2: a zero row (e.g. every hidden unit off) maps to 0, not nan


def _unit_rows(a: np.ndarray):
    """u = a / r with r = sqrt(|a|^2 + eps^2): the L2-normalised rows, smooth at a = 0."""
    norm = np.sqrt(np.einsum("ij,ij->i", a, a) + _NORM_EPS2)[:, None]
    return a / norm, norm


def _unit_rows_backward(unit: np.ndarray, norm: np.ndarray, d_unit: np.ndarray) -> np.ndarray:
    """d(a/r): (g - u (u.g)) / r for each row (exact for r = sqrt(|a|^2 + eps^2) too)."""
    return (d_unit - unit * np.einsum("ij,ij->i", unit, d_unit)[:, None]) / norm


class Encoder:
    """x (n, d) -> hidden ReLU layer (H) -> embedding (D), L2-normalised; K prototypes in R^D.

    ``params`` is a dict of float64 arrays (W1 (d, H), b1 (H,), W2 (H, D), b2 (D,), P (K, D)),
    so optimisers and the DINO teacher (an exponential moving average) act on it by name.

    Parameters
    ----------
    n_features : int
        d, the input features.
    n_prototypes : int
        K, the prototypes.
    hidden : int
        H, the ReLU units of the backbone.
    dim : int
        D, the embedding dimension.
    rng : numpy.random.Generator
        The initialisation's random numbers (He for the ReLU layer, Glorot for the embedding).
    """

    def __init__(self, n_features: int, n_prototypes: int, hidden: int, dim: int, rng: np.random.Generator) -> None:
        self.params = {
            # He initialisation for the ReLU layer, Glorot for the linear embedding layer.
            "W1": rng.normal(0.0, np.sqrt(2.0 / n_features), size=(n_features, hidden)),
            "b1": np.zeros(hidden),
            "W2": rng.normal(0.0, np.sqrt(2.0 / (hidden + dim)), size=(hidden, dim)),
            "b2": np.zeros(dim),
            "P": rng.normal(size=(n_prototypes, dim)),
        }

    def copy(self) -> "Encoder":
        """A copy with its own parameter arrays.

        Returns
        -------
        Encoder
            The copy.
        """
        other = Encoder.__new__(Encoder)
        other.params = {name: value.copy() for name, value in self.params.items()}
        return other

    @property
    def n_prototypes(self) -> int:
        """K, the number of prototypes."""
        return self.params["P"].shape[0]

    def forward(self, x: np.ndarray) -> _Forward:
        """The forward pass, with what the backward pass needs.

        Parameters
        ----------
        x : numpy.ndarray, shape (n, d)
            Standardised inputs.

        Returns
        -------
        _Forward
            The intermediate arrays; ``.scores`` (n, K) are the cosine scores z c^T.
        """
        p = self.params
        pre = x @ p["W1"] + p["b1"]
        hidden = np.maximum(pre, 0.0)
        z, norm = _unit_rows(hidden @ p["W2"] + p["b2"])
        prototypes, prototype_norm = _unit_rows(p["P"])
        return _Forward(x, pre, hidden, norm, z, prototypes, prototype_norm, z @ prototypes.T)

    def features(self, x: np.ndarray) -> np.ndarray:
        """The backbone's output, relu(x W1 + b1): the representation SSL evaluates.

        The embedding z after it is the projection the loss sees, as in SimCLR, SwAV and DINO.

        Parameters
        ----------
        x : numpy.ndarray, shape (n, d)
            Standardised inputs.

        Returns
        -------
        numpy.ndarray, shape (n, H)
            The features.
        """
        p = self.params
        return np.maximum(x @ p["W1"] + p["b1"], 0.0)

    def project(self, x: np.ndarray) -> np.ndarray:
        """The L2-normalised embeddings z that are scored against the prototypes.

        Parameters
        ----------
        x : numpy.ndarray, shape (n, d)
            Standardised inputs.

        Returns
        -------
        numpy.ndarray, shape (n, D)
            The embeddings.
        """
        return self.forward(x).z

    def backward(self, cache: _Forward, d_scores: np.ndarray, grads: dict | None = None) -> dict:
        """Gradients of a loss with dLoss/dscores = d_scores.

        Parameters
        ----------
        cache : _Forward
            The forward pass of the scores.
        d_scores : numpy.ndarray, shape (n, K)
            The loss's gradient in the scores.
        grads : dict of str to numpy.ndarray, optional
            Gradients to add into (in place).

        Returns
        -------
        dict of str to numpy.ndarray
            The gradient of every parameter (``grads`` itself when given).
        """
        p = self.params
        d_z = d_scores @ cache.prototypes
        d_prototypes = d_scores.T @ cache.z
        d_e = _unit_rows_backward(cache.z, cache.norm, d_z)
        d_hidden = d_e @ p["W2"].T
        d_pre = d_hidden * (cache.pre > 0.0)
        new = {
            "W1": cache.x.T @ d_pre,
            "b1": d_pre.sum(axis=0),
            "W2": cache.hidden.T @ d_e,
            "b2": d_e.sum(axis=0),
            "P": _unit_rows_backward(cache.prototypes, cache.prototype_norm, d_prototypes),
        }
        if grads is None:
            return new
        for name in _PARAMS:
            grads[name] += new[name]
        return grads


class Adam:
    """Adam (Kingma & Ba) with decoupled weight decay (AdamW) on a dict of arrays, in place.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The parameters, updated in place.
    lr : float
        Learning rate.
    betas : tuple of float, optional
        The moment decay rates.
    eps : float, optional
        Added to the denominator.
    weight_decay : float, optional
        Decoupled weight decay of the weight matrices (names starting with W).
    """

    def __init__(self, params: dict, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        self.params = params
        self.lr, self.eps, self.weight_decay = lr, eps, weight_decay
        self.beta1, self.beta2 = betas
        self.m = {name: np.zeros_like(v) for name, v in params.items()}
        self.v = {name: np.zeros_like(v) for name, v in params.items()}
        self.t = 0

    def step(self, grads: dict, frozen: Collection[str] = ()) -> None:
        """One update of every parameter not in ``frozen``.

        Parameters
        ----------
        grads : dict of str to numpy.ndarray
            The gradients, by parameter name.
        frozen : collection of str, optional
            Names of the parameters to leave unchanged.
        """
        self.t += 1
        c1 = 1.0 - self.beta1**self.t
        c2 = 1.0 - self.beta2**self.t
        for name, g in grads.items():
            if name in frozen:
                continue
            m, v = self.m[name], self.v[name]
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            param = self.params[name]
            if self.weight_decay and name.startswith("W"):
                param *= 1.0 - self.lr * self.weight_decay
            param -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
