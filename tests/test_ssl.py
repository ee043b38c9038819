"""thermossl.ssl: the model's gradients against finite differences, the views, the optimiser, and
SeLa/SwAV/DINO training with the demon's books (first law, D1, D2, charges) on real data."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp
from numpy.testing import assert_allclose, assert_array_equal

from thermossl import ssl
from thermossl.ssl.model import Adam, Encoder
from thermossl.ssl.train import _swapped_loss
from thermossl.ssl.views import Views

sklearn = pytest.importorskip("sklearn", reason="the digits and the metrics come from scikit-learn (test extra)")


def blobs(seed=0, n=240, d=6, k=4, spread=0.3):
    """k well-separated Gaussian clusters in d dimensions and their labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, d))
    y = np.repeat(np.arange(k), n // k)
    return centers[y] + spread * rng.normal(size=(len(y), d)), y


def numerical_gradient(f, x, h=1e-6):
    g = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        up = f()
        x[index] = old - h
        down = f()
        x[index] = old
        g[index] = (up - down) / (2 * h)
    return g


# ----------------------------------------------------------------------------- model
def test_encoder_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    model = Encoder(5, 4, hidden=7, dim=3, rng=rng)
    x = rng.normal(size=(6, 5))
    G = rng.normal(size=(6, 4))  # loss = sum G * scores, so dLoss/dscores = G

    def loss():
        return float(np.sum(G * model.forward(x).scores))

    grads = model.backward(model.forward(x), G)
    for name, value in model.params.items():
        assert_allclose(grads[name], numerical_gradient(loss, value), rtol=1e-6, atol=1e-8, err_msg=name)


def test_scores_are_cosines_and_embeddings_unit_vectors():
    rng = np.random.default_rng(2)
    model = Encoder(4, 3, hidden=8, dim=5, rng=rng)
    x = rng.normal(size=(10, 4))
    out = model.forward(x)
    assert_allclose(np.linalg.norm(out.z, axis=1), 1.0, rtol=1e-10)
    hidden = np.maximum(x @ model.params["W1"] + model.params["b1"], 0)
    e = hidden @ model.params["W2"] + model.params["b2"]
    P = model.params["P"]
    cosine = (e @ P.T) / np.linalg.norm(e, axis=1)[:, None] / np.linalg.norm(P, axis=1)[None, :]
    assert_allclose(out.scores, cosine, rtol=1e-10, atol=1e-12)  # the norm's eps is 1e-6
    assert np.all(np.abs(out.scores) <= 1 + 1e-12)


def test_swapped_loss_and_gradient_match_numpy():
    rng = np.random.default_rng(3)
    model = Encoder(4, 5, hidden=12, dim=3, rng=rng)
    model.params["b1"] += 0.5  # no sample with every hidden unit off: the loss is smooth here
    xa, xb = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    qa = sp.softmax(rng.normal(size=(7, 5)), axis=1)
    qb = sp.softmax(rng.normal(size=(7, 5)), axis=1)
    T = 0.1

    def reference():  # the swapped cross-entropy written with scipy
        sa, sb = model.forward(xa).scores, model.forward(xb).scores
        la = -(qa * sp.log_softmax(sb / T, axis=1)).sum(axis=1).mean()
        lb = -(qb * sp.log_softmax(sa / T, axis=1)).sum(axis=1).mean()
        return 0.5 * (la + lb)

    loss, grads = _swapped_loss(model, model.forward(xa), model.forward(xb), qa, qb, T)
    assert_allclose(loss, reference(), rtol=1e-13)
    for name, value in model.params.items():
        assert_allclose(grads[name], numerical_gradient(reference, value), rtol=1e-5, atol=1e-7, err_msg=name)


def test_adam_first_steps_follow_the_formula():
    params = {"W": np.array([1.0, -2.0]), "P": np.array([0.5])}
    opt = Adam(params, lr=0.1, weight_decay=0.5)
    g = {"W": np.array([0.2, -0.4]), "P": np.array([3.0])}
    opt.step(g, frozen=("P",))
    # step 1: m/c1 = g, v/c2 = g^2, so the update is lr * sign(g) (up to eps); decay on W first.
    assert_allclose(params["W"], np.array([1.0, -2.0]) * (1 - 0.05) - 0.1 * np.sign(g["W"]), rtol=1e-7)
    assert_array_equal(params["P"], [0.5])  # frozen


# ----------------------------------------------------------------------------- views
def test_image_views_are_shifts_of_the_clean_image():
    rng = np.random.default_rng(4)
    X = rng.integers(0, 17, size=(30, 20)).astype(float)
    views = Views.fit(X, image_shape=(4, 5), noise=0.0, mask=0.0, shift=1)
    out = views(X, np.random.default_rng(5))
    clean = views.clean(X)
    background = views.clean(np.zeros((1, 20)))[0, 0]
    images = X.reshape(30, 4, 5)
    moved = 0
    for i in range(30):
        candidates = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                shifted = np.zeros((6, 7))
                shifted[1 + dy : 5 + dy, 1 + dx : 6 + dx] = images[i]
                candidates.append(views.clean(shifted[1:5, 1:6].reshape(1, 20))[0])
        assert any(np.array_equal(out[i], c) for c in candidates), i
        moved += not np.array_equal(out[i], clean[i])
    assert moved > 10  # most of the 30 images were moved
    assert background == views.clean(np.zeros((1, 20)))[0, 7]  # one scale for all pixels


def test_feature_views_noise_and_mask_at_the_stated_rates():
    rng = np.random.default_rng(6)
    X = rng.normal(loc=5.0, scale=[1.0, 2.0, 3.0], size=(20000, 3))
    views = Views.fit(X, noise=0.0, mask=0.25)
    out = views(X, np.random.default_rng(7))
    masked = out == 0.0
    assert abs(masked.mean() - 0.25) < 0.01
    assert_allclose(out[~masked], views.clean(X)[~masked], rtol=1e-15)
    noisy = Views.fit(X, noise=0.3, mask=0.0)(X, np.random.default_rng(8)) - views.clean(X)
    assert abs(noisy.std() - 0.3) < 0.01
    X_before = X.copy()
    views(X, np.random.default_rng(9))
    assert_array_equal(X, X_before)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("method", ["sela", "swav", "dino"])
def test_training_books_close_and_runs_are_reproducible(method):
    X, _ = blobs()
    X_before = X.copy()
    kwargs = dict(method=method, n_prototypes=4, epochs=3, seed=11, batch_size=60, hidden=16, dim=8)
    result = ssl.train(X, **kwargs)
    assert_array_equal(X, X_before)  # the input is not modified
    ledger = result.ledger
    assert len(ledger) == 3 * (240 // 60)  # one cycle per step
    assert result.history.shape == (3,) and np.all(np.isfinite(result.history))
    assert result.labels.shape == (240,) and result.labels.min() >= 0 and result.labels.max() < 4
    assert_array_equal(result.labels, result.label_state.q.argmax(axis=1))
    for field in ("res_first_law", "res_D1", "res_G1", "res_G2", "res_G4", "res_E2"):
        assert np.max(np.abs(ledger.column(field))) < 1e-12, field
    # D2: extracted work never beats the free energy the measurement created.
    T = result.T
    assert np.all(ledger.column("W_ext") + ledger.column("dF") <= T * ledger.column("D_before") + 1e-12)
    assert np.all(ledger.column("Sigma") >= -1e-12)  # E2: the measurement produces entropy
    if method == "sela":
        assert np.all(ledger.column("charge_err") <= 0.1 / 240)  # balanced to tolerance (0.1/n) every cycle
    features = result.embed(X)
    assert features.shape == (240, 16) and np.all(features >= 0)  # the ReLU backbone
    z = result.project(X)
    assert z.shape == (240, 8)
    assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-9)
    assert_allclose(z @ (result.model.params["P"] / np.linalg.norm(result.model.params["P"], axis=1)[:, None]).T,
                    result.scores(X), rtol=1e-12, atol=1e-14)
    assert result.work_per_sample.shape == (240 if method == "sela" else 60,)
    assert_allclose(result.work_per_sample.sum(), ledger[-1]["W"], rtol=1e-12, atol=1e-15)

    again = ssl.train(X, **kwargs)
    assert_array_equal(again.ledger.to_numpy(), ledger.to_numpy())
    assert_array_equal(again.labels, result.labels)
    other = ssl.train(X, **{**kwargs, "seed": 12})
    assert not np.array_equal(other.ledger.column("W"), ledger.column("W"))


def test_swav_learns_the_digits_and_the_demon_extracts_work():
    X, y, shape = ssl.load_digits()
    result = ssl.train(X, method="swav", n_prototypes=10, epochs=25, seed=0, image_shape=shape)
    scores = ssl.evaluate(result, X, y)
    # Far above chance (NMI ~0, 5-NN ~0.1); the demo's longer runs are reported in the README.
    assert scores["nmi"] > 0.5 and scores["ari"] > 0.35 and scores["knn"] > 0.95
    assert scores["clusters_used"] == 10  # no collapse: Sinkhorn keeps every prototype in use
    assert result.ledger.totals()["W"] < 0  # learning extracts work
    assert result.history[-1] < result.history[0]


def test_spherical_kmeans_finds_separated_directions_and_is_a_lloyd_fixed_point():
    from thermossl.ssl.train import spherical_kmeans

    rng = np.random.default_rng(4)
    directions = np.linalg.qr(rng.normal(size=(8, 4)))[0].T  # 4 orthonormal directions in R^8
    y = np.repeat(np.arange(4), 50)
    z = directions[y] + 0.1 * rng.normal(size=(200, 8))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    for seed in range(10):
        centroids = spherical_kmeans(z, 4, np.random.default_rng(seed))
        assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, rtol=1e-14)
        nearest = np.argmax(z @ centroids.T, axis=1)
        assert sklearn.metrics.adjusted_rand_score(y, nearest) == 1.0  # every cluster found
        # A converged centroid is the normalised mean of the rows nearest to it (numpy reference).
        for j in range(4):
            mean = z[nearest == j].mean(axis=0)
            assert_allclose(centroids[j], mean / np.linalg.norm(mean), rtol=1e-12, atol=1e-14)


def test_dino_starts_its_prototypes_at_the_kmeans_centroids():
    from thermossl.ssl.train import _Run, _options, spherical_kmeans

    X, _ = blobs(seed=5, n=120, k=3)
    opts = {**_options("dino", {"hidden": 8, "dim": 4}), "noise": 0.5, "mask": 0.3, "batch_size": 40, "tol": 0.1,
            "center_momentum": 0.9,
            "total_steps": 3}
    run = _Run("dino", X, 3, None, 7, opts)
    # Replay the initialisation: the same random stream draws the network, then seeds k-means.
    rng = np.random.default_rng(7)
    model = Encoder(X.shape[1], 3, 8, 4, rng)
    expected = spherical_kmeans(model.project(run.clean), 3, rng)
    assert_allclose(run.model.params["P"], expected, rtol=1e-13)
    assert_allclose(run.teacher.params["P"], expected, rtol=1e-13)  # the teacher is that student
    random_start = _Run("dino", X, 3, None, 7, {**opts, "init_prototypes": "random"})
    assert not np.allclose(random_start.model.params["P"], expected)
    with pytest.raises(ValueError, match="init_prototypes"):
        ssl.train(X, method="dino", epochs=1, init_prototypes="pca")


@pytest.mark.parametrize(
    "name, method, floor",
    [
        # At the defaults, epochs=30, K = the number of classes, seed 0 (k-means NMI: wine 0.876,
        # breast cancer 0.532). Measured: DINO 0.814 and 0.541, SwAV 0.821 and 0.632, SeLa on
        # breast cancer 0.584. Before issue 15's fixes DINO reached 0.350 and 0.159 here; with
        # DINO's mean-score center 0.704 on wine; SeLa with equal shares 0.40 on breast cancer.
        ("wine", "dino", 0.75),
        ("breast_cancer", "dino", 0.48),
        ("wine", "swav", 0.75),
        ("breast_cancer", "swav", 0.55),
        ("breast_cancer", "sela", 0.5),
    ],
)
def test_methods_learn_real_data_at_their_defaults(name, method, floor):
    import sklearn.datasets

    data = getattr(sklearn.datasets, f"load_{name}")()
    X, y = data.data, data.target
    result = ssl.train(X, method=method, n_prototypes=int(np.unique(y).size), epochs=30, seed=0)
    assert ssl.cluster_scores(result.labels, y)["nmi"] > floor
    assert result.ledger.totals()["W"] < 0  # the demon extracted work


def test_sela_labels_are_balanced_over_the_data_set():
    X, _ = blobs(seed=3, n=200, k=4)
    result = ssl.train(X, method="sela", n_prototypes=4, epochs=4, seed=0, batch_size=50, hidden=16, dim=8,
                       charge_targets="equal")  # SeLa's published equipartition
    assert_allclose(result.label_state.charges, 0.25, atol=0.1 / 200)  # default tol: a tenth of a sample
    assert result.label_state.converged
    assert result.options["tol"] == 0.1 / 200


def test_defaults_scale_with_the_data_and_the_run():
    # batch size ceil(n epochs / 512) in [max(8, n/20), 256]: about 512 steps per run where the data allow.
    X = np.random.default_rng(1).normal(size=(200, 5))
    result = ssl.train(X, method="swav", n_prototypes=3, epochs=2, seed=0, hidden=8, dim=4)
    assert result.options["batch_size"] == 10 and len(result.ledger) == 2 * 20  # at most 20 steps per epoch
    assert result.options["total_steps"] == 40
    small = ssl.train(X[:100], method="swav", n_prototypes=3, epochs=2, seed=0, hidden=8, dim=4)
    assert small.options["batch_size"] == 8  # at least 8
    result = ssl.train(X, method="swav", n_prototypes=3, epochs=40, seed=0, hidden=8, dim=4)
    assert result.options["batch_size"] == 16 and len(result.ledger) == 40 * (200 // 16)  # ceil(8000/512)
    big = ssl.train(np.repeat(X, 12, axis=0)[:2400], method="swav", n_prototypes=3, epochs=60, seed=0, hidden=8, dim=4)
    assert big.options["batch_size"] == 256 and len(big.ledger) == 60 * (2400 // 256)
    # DINO's teacher momentum: the cosine schedule from m0 to 1; m0 = min(0.996, 1 - 60/steps).
    m = ssl.teacher_momentum
    assert m(0, 240) == pytest.approx(1 - 60 / 240, rel=1e-15) and m(240, 240) == pytest.approx(1.0, abs=1e-15)
    assert m(0, 240, horizon=10.0) == pytest.approx(1 - 10 / 240, rel=1e-15)
    assert m(0, 10**6) == pytest.approx(0.996, rel=1e-15)  # long runs: DINO's published base
    assert m(120, 240) == pytest.approx(1 - (60 / 240) / 2, rel=1e-14)  # the cosine's midpoint
    steps = [m(t, 240) for t in range(241)]
    assert all(a <= b for a, b in zip(steps, steps[1:]))
    assert m(0, 100, base=0.9) == pytest.approx(0.9) and m(0, 50) == 0.0  # a short run: follow the student
    # The charge-target estimate: an EMA over steps / horizon steps, never a negative momentum.
    assert ssl.charge_momentum(480, 30.0) == pytest.approx(1 - 30 / 480, rel=1e-15)
    assert ssl.charge_momentum(480, 3.0) == pytest.approx(1 - 3 / 480, rel=1e-15) and ssl.charge_momentum(20) == 0.0
    # Augmentation defaults by kind of data; prototype start by method.
    feats = ssl.train(X, method="dino", n_prototypes=3, epochs=1, seed=0, hidden=8, dim=4)
    assert (feats.options["noise"], feats.options["mask"], feats.options["init_prototypes"]) == (0.3, 0.3, "kmeans")
    images = ssl.train(X[:, :4], method="sela", n_prototypes=3, epochs=1, seed=0, hidden=8, dim=4, image_shape=(2, 2))
    assert (images.options["noise"], images.options["mask"], images.options["init_prototypes"]) == (0.1, 0.1, "random")
    assert result.options["teacher_horizon"] == 60.0


def test_dino_teacher_follows_the_schedule():
    # Replaying the EMA with the schedule on the student's parameters needs the steps' student
    # states; instead check the end points: with base momentum 0 and one step, the teacher after
    # training is the student after its one step (m_0 = 0: the teacher takes the student's weights).
    X, _ = blobs(seed=2, n=64, k=2)
    result = ssl.train(X, method="dino", n_prototypes=2, epochs=1, seed=0, batch_size=64, hidden=8, dim=4,
                       teacher_momentum=0.0, freeze_prototypes_epochs=0)
    teacher_scores = result.label_state.q  # from the teacher with the final center
    student = result.scores(X)
    from thermossl import gibbs
    mu = result.label_state.mu
    assert_allclose(teacher_scores, gibbs(-student, result.T_label, mu=mu), rtol=1e-12, atol=1e-14)


def test_train_rejects_bad_input_with_named_arguments():
    X, _ = blobs(n=40)
    with pytest.raises(ValueError, match="method"):
        ssl.train(X, method="byol")
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="X must be finite"):
        ssl.train(bad, epochs=1)
    with pytest.raises(ValueError, match="X must be a 2-D"):
        ssl.train(X[0], epochs=1)
    with pytest.raises(ValueError, match="image_shape"):
        ssl.train(X, image_shape=(2, 2), epochs=1)
    with pytest.raises(TypeError, match="unknown option"):
        ssl.train(X, epochs=1, learning_rate=0.1)
    with pytest.raises(ValueError, match="n_prototypes"):
        ssl.train(X, n_prototypes=1, epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        ssl.train(X, epochs=0)
    with pytest.raises(ValueError, match="mask"):
        ssl.train(X, epochs=1, mask=1.0)
    with pytest.raises(ValueError, match="T must be"):
        ssl.train(X, epochs=1, T=0.0)
    with pytest.raises(TypeError, match="batch_size"):
        ssl.train(X, epochs=1, batch_size=2.5)
    with pytest.raises(ValueError, match="blas_threads"):
        ssl.train(X, epochs=1, blas_threads=0)
    result = ssl.train(X, n_prototypes=3, epochs=1, hidden=8, dim=4)
    with pytest.raises(ValueError, match="X must have 6 features"):
        result.embed(np.zeros((3, 5)))


# ----------------------------------------------------------------------------- charge targets
def test_floored_shares_is_the_projection_onto_shares_above_the_floor():
    import scipy.optimize
    from thermossl.ssl.train import floored_shares

    rng = np.random.default_rng(0)
    for k, floor in ((2, 0.1), (3, 0.05), (10, 0.025), (10, 0.1), (5, 0.2)):
        for _ in range(20):
            shares = rng.dirichlet(np.full(k, 0.3))
            c = floored_shares(shares, floor)
            assert c.sum() == pytest.approx(1.0, abs=1e-14) and np.all(c >= floor - 1e-15)
            # The reference: the solution of min sum_y (c_y - s_y)^2 / s_y subject to c >= floor and
            # sum c = 1 is c_y = max(floor, lam s_y), lam the root of sum_y max(floor, lam s_y) = 1.
            lam = scipy.optimize.brentq(lambda v: np.maximum(floor, v * shares).sum() - 1.0, 0.0, 1.0 / shares.min(),
                                        xtol=1e-15, rtol=1e-15)
            ref = np.maximum(floor, lam * shares)
            assert_allclose(c, ref, rtol=1e-12, atol=1e-15)
            free = c > floor + 1e-12
            if free.sum() > 1:  # entries above the floor keep their ratios
                assert_allclose(c[free] / c[free].sum(), shares[free] / shares[free].sum(), rtol=1e-12)
    above = np.array([0.5, 0.3, 0.2])
    same = floored_shares(above, 0.1)
    assert_array_equal(same, above)  # nothing to raise: unchanged
    assert same is not above  # a copy
    low = np.array([0.9, 0.05, 0.05])
    floored_shares(low, 0.2)
    assert_array_equal(low, [0.9, 0.05, 0.05])  # the input is not modified
    assert_allclose(floored_shares(np.array([1.0, 0.0]), 0.5), [0.5, 0.5], rtol=1e-15)


def test_share_centering_is_an_online_sinkhorn_and_reaches_the_targets():
    from thermossl import gibbs, sinkhorn
    from thermossl.ssl.train import ShareCenteringReservoir

    rng = np.random.default_rng(1)
    E = -rng.normal(scale=0.5, size=(300, 4))
    c = np.array([0.4, 0.3, 0.2, 0.1])
    T, m = 0.05, 0.5
    reservoir = ShareCenteringReservoir(T, momentum=m, c=c)
    center = np.zeros(4)
    for call in range(500):
        label = reservoir.assign(E)
        # Replay: q = softmax((s - C)/T') with the center before the call, then the log-ratio step.
        q = sp.softmax((-E - center) / T, axis=1)
        assert_allclose(label.q, q, rtol=1e-12, atol=1e-300)
        assert_allclose(label.mu, -center, atol=1e-15)
        assert_allclose(label.charges, q.mean(axis=0), rtol=1e-12)
        assert label.charge_err == pytest.approx(np.abs(q.mean(axis=0) - c).sum(), rel=1e-12)
        center = center + (1 - m) * T * np.log(q.mean(axis=0) / c)
        center -= center.mean()
        assert_allclose(reservoir.center, center, rtol=1e-10, atol=1e-15)
    # On fixed energies the steps converge to Sinkhorn's GGE at the targets (unique given its charges).
    assert label.charge_err < 1e-8
    reference = sinkhorn(E, T, c=c, tol=1e-12, max_iter=10000)
    assert_allclose(label.q, reference.q, atol=1e-7)
    assert_allclose(label.q, gibbs(E, T, mu=label.mu), rtol=1e-12)  # a GGE at the mu it reports
    # DINO's own mean-score center does not balance: its charges stay far from c.
    from thermossl.reservoirs import CenteringReservoir

    mean_center = CenteringReservoir(T, momentum=m)
    for _ in range(200):
        plain = mean_center.assign(E)
    assert np.abs(plain.charges - c).sum() > 0.1


def test_estimated_charge_targets_follow_imbalanced_classes():
    # Three clusters with shares 0.6, 0.25, 0.15: SeLa with equal targets must split the big one;
    # with estimated targets (the default) its labels keep the classes' shares.
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], [180, 75, 45])
    centers = rng.normal(scale=3.0, size=(3, 5))
    X = centers[y] + 0.4 * rng.normal(size=(300, 5))
    kwargs = dict(method="sela", n_prototypes=3, epochs=10, seed=0, hidden=32, dim=8)
    estimated = ssl.train(X, **kwargs)
    equal = ssl.train(X, **kwargs, charge_targets="equal")
    assert estimated.options["charge_targets"] == "estimated" and estimated.options["charge_floor"] == 0.25
    assert_allclose(equal.label_state.charges, 1 / 3, atol=0.1 / 300)
    shares = np.sort(estimated.label_state.charges)[::-1]
    assert shares[0] == pytest.approx(0.6, abs=0.03)  # the big class kept whole (measured 0.598)
    assert shares[-1] >= 0.25 / 3 - 0.1 / 300  # the floor: a quarter of an equal share
    # Measured: NMI 0.870 with estimated targets, 0.574 with equal ones (k-means: 1.0).
    nmi_estimated = ssl.cluster_scores(estimated.labels, y)["nmi"]
    assert nmi_estimated > 0.8 and nmi_estimated > ssl.cluster_scores(equal.labels, y)["nmi"] + 0.2
    # Every label update met its own targets (the books of a reservoir at known c) and extracted work.
    assert np.all(estimated.ledger.column("charge_err") <= 0.1 / 300)
    assert estimated.ledger.totals()["W"] < 0
    for field in ("res_first_law", "res_D1", "res_E2"):
        assert np.max(np.abs(estimated.ledger.column(field))) < 1e-12


def test_charge_target_options_are_checked():
    X, _ = blobs(n=40)
    with pytest.raises(ValueError, match="charge_targets"):
        ssl.train(X, epochs=1, charge_targets="uniform")
    with pytest.raises(ValueError, match="centering"):
        ssl.train(X, method="dino", epochs=1, centering="median")
    with pytest.raises(ValueError, match="charge_floor"):
        ssl.train(X, epochs=1, charge_floor=1.5)
    with pytest.raises(ValueError, match="charge_horizon"):
        ssl.train(X, epochs=1, charge_horizon=0.0)
    dino = ssl.train(X, method="dino", n_prototypes=3, epochs=1, hidden=8, dim=4)
    assert dino.options["centering"] == "shares" and dino.options["charge_horizon"] == 30.0
    # The center averages at least 64 samples per state: 8 of 40 samples a batch, K = 3.
    assert dino.options["batch_size"] == 8 and dino.options["center_momentum"] == pytest.approx(1 - 8 / 192, rel=1e-15)
    assert ssl.center_momentum(256, 10) == 0.9 and ssl.center_momentum(9, 3) == pytest.approx(1 - 9 / 192, rel=1e-15)
    with pytest.raises(ValueError, match="center_momentum"):
        ssl.train(X, method="dino", epochs=1, center_momentum=1.0)
    swav = ssl.train(X, method="swav", n_prototypes=3, epochs=1, hidden=8, dim=4)
    assert swav.options["charge_horizon"] == 3.0
