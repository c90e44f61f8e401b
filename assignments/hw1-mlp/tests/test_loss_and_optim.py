"""Softmax cross-entropy (value, gradient, large logits) and the SGD-with-momentum step."""

import math

import numpy as np
import pytest
import submission

SEED = 0


@pytest.mark.points(1)
def test_softmax_cross_entropy_value():
    logits = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    y = np.array([0, 2])
    loss, _ = submission.softmax_cross_entropy(logits, y)
    # Row 1: uniform over 3 classes -> log 3. Row 2: -log(e^3 / (e + e^2 + e^3)) = log(1 + e^-1 + e^-2).
    expected = (math.log(3) + math.log(1 + math.exp(-1) + math.exp(-2))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-9)


@pytest.mark.points(1)
def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(SEED)
    logits = rng.normal(size=(4, 5))
    y = np.array([0, 3, 4, 3])
    # Hand-checkable row: for equal logits the softmax is uniform, so the gradient is (1/C - onehot) / N.
    _, d_uniform = submission.softmax_cross_entropy(np.zeros((2, 4)), np.array([1, 1]))
    np.testing.assert_allclose(d_uniform, [[0.125, -0.375, 0.125, 0.125]] * 2, atol=1e-12)
    # The numerical gradient before the analytic one, and the student's code only ever gets copies:
    # code that changed logits or y in place would otherwise change what it is compared with.
    numerical = np.zeros_like(logits)
    h = 1e-6
    for idx in np.ndindex(logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[idx] += h
        minus[idx] -= h
        numerical[idx] = (
            submission.softmax_cross_entropy(plus, y.copy())[0]
            - submission.softmax_cross_entropy(minus, y.copy())[0]
        ) / (2 * h)
    _, dlogits = submission.softmax_cross_entropy(logits.copy(), y.copy())
    np.testing.assert_allclose(dlogits, numerical, rtol=1e-5, atol=1e-8)


@pytest.mark.points(1)
def test_softmax_cross_entropy_is_stable_for_large_logits():
    logits = np.array([[1000.0, 1000.0], [-1000.0, 0.0]])
    y = np.array([0, 0])
    with np.errstate(all="ignore"):  # a student's overflow must fail the asserts, not raise a warning
        loss, dlogits = submission.softmax_cross_entropy(logits, y)
    assert float(loss) == pytest.approx((math.log(2) + 1000.0) / 2, rel=1e-9)
    np.testing.assert_allclose(dlogits, [[-0.25, 0.25], [-0.5, 0.5]], atol=1e-12)


@pytest.mark.points(1)
def test_sgd_momentum_two_steps():
    w, v = np.array([1.0, 2.0]), np.array([0.1, 0.0])
    w1, v1 = submission.sgd_momentum(w, np.array([0.5, -1.0]), v, lr=0.1, momentum=0.9)
    # v = 0.9 * v - 0.1 * dw; w = w + v
    np.testing.assert_allclose(v1, [0.04, 0.1], atol=1e-12)
    np.testing.assert_allclose(w1, [1.04, 2.1], atol=1e-12)
    # A fresh dw: the second step must not depend on what the first did to its arguments.
    w2, v2 = submission.sgd_momentum(w1, np.array([0.5, -1.0]), v1, lr=0.1, momentum=0.9)
    np.testing.assert_allclose(v2, [-0.014, 0.19], atol=1e-12)
    np.testing.assert_allclose(w2, [1.026, 2.29], atol=1e-12)


@pytest.mark.points(1)
def test_sgd_momentum_leaves_its_arguments_unchanged():
    # The docstring asks for new arrays: this test reads its arguments after the call on purpose
    # (`grader assignments check` warns about it, as it should).
    w, v = np.array([1.0, 2.0]), np.array([0.1, 0.0])
    submission.sgd_momentum(w, np.array([0.5, -1.0]), v, lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(w, [1.0, 2.0])
    np.testing.assert_array_equal(v, [0.1, 0.0])
