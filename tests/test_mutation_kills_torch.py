"""thermossl.torch.sinkhorn's argument errors and edge sizes to the letter, found by mutation
testing (issue 20); checked against the public behaviour (values against plain torch, errors) so
that they hold whatever the op's internals."""
from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
import thermossl.torch as tt  # noqa: E402


def raises_exactly(exc, message, fn, *args, **kwargs):
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message


E43 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("E, message", [
    (torch.zeros(3, dtype=torch.float64), "E must be a 2-D tensor of shape (N, K), got ndim=1"),
    (torch.zeros(0, 3, dtype=torch.float64), "E must have at least one sample and one state, got shape (0, 3)"),
    (torch.zeros(3, 0, dtype=torch.float64), "E must have at least one sample and one state, got shape (3, 0)"),
])
def test_sinkhorn_shape_errors(E, message):
    raises_exactly(ValueError, message, tt.sinkhorn, E, 0.1)


def test_sinkhorn_takes_a_tensor_only():
    raises_exactly(TypeError, "E must be a torch.Tensor, got list", tt.sinkhorn, [[1.0]], 0.1)


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"n_iter": 1.5}, TypeError, "n_iter must be an int, got float"),
    ({"n_iter": True}, TypeError, "n_iter must be an int, got bool"),
    ({"n_iter": 0}, ValueError, "n_iter must be >= 1, got 0"),
    ({"max_iter": 0}, ValueError, "max_iter must be >= 1, got 0"),
    ({"max_iter": 2.0}, TypeError, "max_iter must be an int, got float"),
])
def test_sinkhorn_count_errors(kwargs, exc, message):
    raises_exactly(exc, message, tt.sinkhorn, E43, 0.1, **kwargs)


def test_one_sample_or_one_state():
    # N = 1: the row's Gibbs state at the solved mu; K = 1: every label is 1.
    one_row = tt.sinkhorn(E43[:1], 0.5, n_iter=2)
    assert one_row.q.shape == (1, 3) and torch.allclose(one_row.q.sum(), torch.tensor(1.0, dtype=torch.float64))
    one_state = tt.sinkhorn(E43[:, :1], 0.5, n_iter=2)
    assert torch.equal(one_state.q, torch.ones(4, 1, dtype=torch.float64))


def test_one_iteration_is_allowed_and_the_default_budget_is_1000():
    assert int(tt.sinkhorn(E43, 0.1, n_iter=1).n_iter) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert int(tt.sinkhorn(E43, 0.1, max_iter=1, tol=1e-300).n_iter) == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = tt.sinkhorn(E43 * 50, 0.001, tol=1e-300)
    assert int(result.n_iter) == 1000
    assert [str(w.message).split(":")[0] for w in caught] == ["sinkhorn did not converge in max_iter=1000 iterations"]
