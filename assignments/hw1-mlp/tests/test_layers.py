"""Linear and ReLU layers: values checked by hand, gradients against central differences."""

import numpy as np
import pytest
import submission

SEED = 0


def numerical_grad(f, x, h=1e-6):
    """Central differences of the scalar f() with respect to every entry of x (changed in place)."""
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = f()
        x[idx] = old - h
        minus = f()
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


@pytest.mark.points(1)
def test_linear_forward_values():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    W = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    b = np.array([0.5, -1.0, 2.0])
    out = submission.linear_forward(x, W, b)
    np.testing.assert_allclose(out, [[5.5, 1.0, 1.0], [11.5, 3.0, -1.0]], atol=1e-12)


@pytest.mark.points(2)
def test_linear_backward_matches_numerical_gradient():
    rng = np.random.default_rng(SEED)
    x, W, b = rng.normal(size=(2, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
    dout = rng.normal(size=(2, 4))

    def loss():
        return float(np.sum(submission.linear_forward(x.copy(), W.copy(), b.copy()) * dout))

    # The expected values first, and copies to the student's code: code that changed its arguments in
    # place (zeroing dout) would otherwise change what it is compared with.
    expected = [numerical_grad(loss, wrt) for wrt in (x, W, b)]
    dx, dW, db = submission.linear_backward(dout.copy(), x.copy(), W.copy(), b.copy())
    for got, want in zip((dx, dW, db), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.points(1)
def test_relu_forward_values():
    x = np.array([[-2.0, 0.0, 3.0], [1.5, -0.1, 0.0]])
    np.testing.assert_array_equal(submission.relu_forward(x), [[0.0, 0.0, 3.0], [1.5, 0.0, 0.0]])


@pytest.mark.points(1)
def test_relu_backward_values_including_zero():
    x = np.array([[-2.0, 0.0, 3.0], [1.5, -0.1, 0.0]])
    dout = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    # The derivative at exactly 0 is taken to be 0 (the docstring says so).
    np.testing.assert_array_equal(submission.relu_backward(dout, x), [[0.0, 0.0, 3.0], [4.0, 0.0, 0.0]])


@pytest.mark.points(1)
def test_relu_backward_matches_numerical_gradient():
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(3, 4))
    x[np.abs(x) < 0.05] = 0.5  # keep away from the kink, where central differences are meaningless
    dout = rng.normal(size=(3, 4))

    def loss():
        return float(np.sum(submission.relu_forward(x.copy()) * dout))

    expected = numerical_grad(loss, x)  # before the call, which gets copies (see above)
    np.testing.assert_allclose(submission.relu_backward(dout.copy(), x.copy()), expected, atol=1e-7)
