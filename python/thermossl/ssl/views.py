"""Augmented views of the inputs, the raw material of self-supervision.

Two views of one sample should get one label: the augmentations say what the representation
must not depend on. Images (``image_shape=(h, w)``): a random shift of up to ``shift`` pixels
(zero fill), Gaussian pixel noise and pixel masking. Generic feature vectors: Gaussian noise and
feature masking. Inputs are standardised with statistics of the clean data first (one scale for
all pixels of an image so shifted pixels stay comparable; per feature otherwise), so noise levels
are in units of the data's standard deviation and a masked entry is set to the data mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

__all__ = ["Views"]


@dataclass(frozen=True)
class Views:
    """Standardisation plus augmentation for data of ``n_features`` features.

    Parameters
    ----------
    mean : numpy.ndarray, shape (n_features,)
        The standardisation's mean.
    scale : numpy.ndarray, shape (n_features,)
        The standardisation's scale (> 0).
    image_shape : tuple of int, optional
        (h, w) of images; None for feature vectors.
    noise : float, optional
        Standard deviation of the Gaussian noise (in data standard deviations).
    mask : float, optional
        Probability that a pixel/feature is masked (set to the data mean).
    shift : int, optional
        Largest image shift in pixels (images only).
    """

    mean: np.ndarray
    scale: np.ndarray
    image_shape: Optional[Tuple[int, int]] = None
    noise: float = 0.1
    mask: float = 0.1
    shift: int = 1

    @classmethod
    def fit(cls, X: np.ndarray, image_shape: Optional[Tuple[int, int]] = None, **augmentation: Any) -> Views:
        """The views of data X: its standardisation and the given augmentations.

        Images (``image_shape`` given) are standardised with one mean and scale over all pixels,
        feature vectors per feature.

        Parameters
        ----------
        X : numpy.ndarray, shape (n, n_features)
            The raw inputs.
        image_shape : tuple of int, optional
            (h, w) of images.
        **augmentation
            ``noise``, ``mask``, ``shift`` (see :class:`Views`).

        Returns
        -------
        Views
            The fitted views.
        """
        if image_shape is None:
            mean = X.mean(axis=0)
            scale = X.std(axis=0)
        else:
            mean = np.full(X.shape[1], X.mean())
            scale = np.full(X.shape[1], X.std())
        scale = np.where(scale > 0, scale, 1.0)  # constant features stay at 0 instead of nan
        return cls(mean=mean, scale=scale, image_shape=image_shape, **augmentation)

    def clean(self, X: np.ndarray) -> np.ndarray:
        """The standardised inputs, no augmentation: what ``embed`` and evaluation see.

        Parameters
        ----------
        X : numpy.ndarray, shape (n, n_features)
            Raw inputs.

        Returns
        -------
        numpy.ndarray, shape (n, n_features)
            Standardised inputs.
        """
        return (X - self.mean) / self.scale

    def __call__(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random view of each row of X (raw inputs), standardised."""
        if self.image_shape is not None and self.shift > 0:
            X = self._shifted(X, rng)
        view = self.clean(X)
        if self.noise > 0:
            view = view + rng.normal(0.0, self.noise, size=view.shape)
        if self.mask > 0:
            view[rng.random(view.shape) < self.mask] = 0.0  # the mean, after standardisation
        return view

    def _shifted(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each image moved by (dy, dx) in [-shift, shift]^2, filled with zeros (the background)."""
        h, w = self.image_shape
        s = self.shift
        n = X.shape[0]
        padded = np.zeros((n, h + 2 * s, w + 2 * s), dtype=np.float64)
        padded[:, s : s + h, s : s + w] = X.reshape(n, h, w)
        dy = rng.integers(0, 2 * s + 1, size=n)
        dx = rng.integers(0, 2 * s + 1, size=n)
        rows = dy[:, None] + np.arange(h)[None, :]  # (n, h)
        cols = dx[:, None] + np.arange(w)[None, :]  # (n, w)
        out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
        return out.reshape(n, h * w)
