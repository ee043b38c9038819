"""Evaluation against ground truth (never used in training) and the k-means baseline.

Self-labels are scored by NMI and ARI against the true classes; the representation by the
k-NN accuracy (cosine, k = 5, stratified 5-fold cross-validation). The baseline is k-means with
the same number of clusters on the same (standardised) inputs, and k-NN on those inputs.
scikit-learn provides the metrics, k-means, k-NN and the digits data (the ``demo`` extra).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .train import TrainResult

__all__ = ["load_digits", "cluster_scores", "knn_accuracy", "kmeans_baseline", "evaluate"]


def _sklearn():
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError('evaluation and the digits data need scikit-learn: pip install "thermossl[demo]"') from None


def load_digits() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], tuple[int, int]]:
    """The handwritten digits that ship with scikit-learn (no download).

    Returns
    -------
    X : numpy.ndarray, shape (1797, 64)
        float64 pixel intensities 0..16 of 8x8 images.
    y : numpy.ndarray, shape (1797,)
        The digit (int64).
    image_shape : tuple of int
        (8, 8).

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install "thermossl[demo]"``).
    """
    _sklearn()
    from sklearn.datasets import load_digits as sk_load_digits

    data = sk_load_digits()
    return data.data.astype(np.float64), data.target.astype(np.int64), (8, 8)


def cluster_scores(labels: npt.ArrayLike, y: npt.ArrayLike) -> dict[str, float]:
    """NMI and ARI of predicted labels against the true classes y.

    Parameters
    ----------
    labels : array_like, shape (N,)
        Predicted labels.
    y : array_like, shape (N,)
        True classes.

    Returns
    -------
    dict of str to float
        ``{"nmi": ..., "ari": ...}``.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install "thermossl[demo]"``).
    """
    _sklearn()
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {"nmi": float(normalized_mutual_info_score(y, labels)), "ari": float(adjusted_rand_score(y, labels))}


def knn_accuracy(features: npt.ArrayLike, y: npt.ArrayLike, seed: int = 0, k: int = 5) -> float:
    """Mean accuracy of a k-NN classifier (cosine) in stratified 5-fold cross-validation.

    Parameters
    ----------
    features : array_like, shape (N, D)
        The representation.
    y : array_like, shape (N,)
        True classes.
    seed : int, optional
        Seed of the folds.
    k : int, optional
        Neighbours.

    Returns
    -------
    float
        The mean accuracy over the folds.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install "thermossl[demo]"``).
    """
    _sklearn()
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    classifier = KNeighborsClassifier(n_neighbors=k, metric="cosine")
    return float(np.mean(cross_val_score(classifier, features, y, cv=folds)))


def kmeans_baseline(features: npt.ArrayLike, y: npt.ArrayLike, n_clusters: int, seed: int = 0) -> dict[str, float]:
    """k-means (10 restarts) on the features: NMI, ARI of its clusters, k-NN accuracy of the features.

    Parameters
    ----------
    features : array_like, shape (N, D)
        The inputs.
    y : array_like, shape (N,)
        True classes.
    n_clusters : int
        Clusters.
    seed : int, optional
        Seed of k-means and of the folds.

    Returns
    -------
    dict of str to float
        ``{"nmi", "ari", "knn"}``.

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install "thermossl[demo]"``).
    """
    _sklearn()
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(features)
    return {**cluster_scores(labels, y), "knn": knn_accuracy(features, y, seed)}


def evaluate(result: TrainResult, X: npt.ArrayLike, y: npt.ArrayLike, seed: int = 0) -> dict[str, float]:
    """Scores of a trained run against the true classes.

    Parameters
    ----------
    result : TrainResult
        The run (:func:`thermossl.ssl.train`).
    X : array_like, shape (N, D)
        The inputs it was trained on.
    y : array_like, shape (N,)
        True classes.
    seed : int, optional
        Seed of the k-NN folds.

    Returns
    -------
    dict of str to float
        NMI and ARI of the run's self-labels, the k-NN accuracy of its representation of X
        (``"knn"``) and the number of distinct self-labels used (``"clusters_used"``).

    Raises
    ------
    ImportError
        If scikit-learn is not installed (``pip install "thermossl[demo]"``).
    """
    return {
        **cluster_scores(result.labels, y),
        "knn": knn_accuracy(result.embed(X), y, seed),
        "clusters_used": int(np.unique(result.labels).size),
    }
