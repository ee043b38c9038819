"""balancing._sinkhorn's defaults, as thermossl.ssl's trainer calls it (issue 20, mutation
testing, physics group).

``thermossl/ssl/train.py`` calls ``_sinkhorn(E, T, c=c, fixed=n)``: every other argument takes its
default (uniform weights, no warm start, plain iteration omega = 1, the labels returned, the
default tolerance 1e-6 for the converged flag). The
result is checked against POT's log-domain Sinkhorn run for the same number of iterations (an
independent reference): the iterates coincide for uniform sample weights (test_balancing.py).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from thermossl import balancing

ot = pytest.importorskip("ot", reason="POT is part of the test extra: pip install '.[test]'")


@pytest.mark.parametrize("n_iter", [1, 3, 10])
def test_the_trainers_call_is_plain_sinkhorn_for_n_iterations(n_iter):
    rng = np.random.default_rng(100 + n_iter)
    n, k = 64, 9
    E = rng.uniform(0, 1, size=(n, k))
    c = rng.uniform(0.2, 1.0, size=k)
    c /= c.sum()
    T = 0.07
    a = np.full(n, 1.0 / n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ot.sinkhorn(a, c, E, T, method="sinkhorn_log", numItermax=n_iter, stopThr=0.0)
    result = balancing._sinkhorn(E, T, c=c, fixed=n_iter)
    assert result.q is not None and result.n_iter == n_iter
    # converged means a charge error within the default tolerance 1e-6; these few iterations
    # are far from it (the error is the L1 distance of the charges from c, numpy)
    err = np.abs(result.q.mean(axis=0) - c).sum()
    assert result.err == pytest.approx(err, rel=1e-6) and err > 1e-4 and not result.converged
    assert_allclose(a[:, None] * result.q, ref, rtol=1e-10, atol=1e-300)
