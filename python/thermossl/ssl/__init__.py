"""Self-labelling SSL on numpy arrays — SeLa, SwAV, DINO — with the demon's ledger.

``train(X, method="swav", n_prototypes=K, epochs=E, seed=0, image_shape=None, **options)``
trains a small encoder (MLP, L2-normalised embeddings and prototypes, cosine scores, student
temperature 0.1) whose losses and gradients come from the package's kernels; each training step
is one demon cycle in the returned ledger. Needs numpy only; ``load_digits`` and the evaluation
helpers need scikit-learn (the ``demo`` extra).
"""
from .evaluate import cluster_scores, evaluate, kmeans_baseline, knn_accuracy, load_digits
from .model import Adam, Encoder
from .train import (
    DEFAULTS,
    METHODS,
    ShareCenteringReservoir,
    TrainResult,
    center_momentum,
    charge_momentum,
    floored_shares,
    teacher_momentum,
    train,
)
from .views import Views

__all__ = [
    "train",
    "TrainResult",
    "teacher_momentum",
    "charge_momentum",
    "center_momentum",
    "floored_shares",
    "ShareCenteringReservoir",
    "METHODS",
    "DEFAULTS",
    "Encoder",
    "Adam",
    "Views",
    "load_digits",
    "evaluate",
    "cluster_scores",
    "knn_accuracy",
    "kmeans_baseline",
]
