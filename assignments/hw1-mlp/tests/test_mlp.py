"""The two-layer network: forward values, gradients of every parameter, and training on spirals."""

import numpy as np
import pytest
import submission

SEED = 0


@pytest.mark.points(1)
def test_mlp_forward_values():
    params = {
        "W1": np.array([[1.0, -1.0], [0.0, 1.0]]),
        "b1": np.array([0.0, 0.5]),
        "W2": np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]]),
        "b2": np.array([0.0, 0.0, 1.0]),
    }
    X = np.array([[1.0, 2.0], [-1.0, 1.0]])
    # Hidden pre-activations [1, 1.5] and [-1, 2.5]; after ReLU [1, 1.5] and [0, 2.5].
    np.testing.assert_allclose(
        submission.mlp_forward(params, X), [[1.0, 3.5, -0.5], [0.0, 2.5, -1.5]], atol=1e-12
    )


@pytest.mark.points(2)
def test_mlp_gradients_match_numerical_gradients():
    rng = np.random.default_rng(SEED)
    D, H, C, N = 3, 4, 3, 5
    params = {
        "W1": rng.normal(size=(D, H)),
        "b1": rng.normal(size=H) * 0.1,
        "W2": rng.normal(size=(H, C)),
        "b2": rng.normal(size=C) * 0.1,
    }
    X, y = rng.normal(size=(N, D)), rng.integers(0, C, size=N)
    # The numerical gradients first, and the student's code only ever gets copies: code that changed
    # its arguments in place would otherwise change what it is compared with.
    h = 1e-6
    expected = {}
    for name, value in params.items():
        numerical = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            up = submission.mlp_loss_and_grads(plus, X.copy(), y.copy())[0]
            down = submission.mlp_loss_and_grads(minus, X.copy(), y.copy())[0]
            numerical[idx] = (up - down) / (2 * h)
        expected[name] = numerical
    loss, grads = submission.mlp_loss_and_grads(params, X, y)
    assert sorted(grads) == ["W1", "W2", "b1", "b2"]
    for name, numerical in expected.items():
        np.testing.assert_allclose(grads[name], numerical, rtol=1e-4, atol=1e-7, err_msg=name)


def spirals(n_per_class, rng, classes=3, noise=0.2):
    """Interleaved 2-D spirals (the CS231n toy set): no linear model gets far above chance."""
    X, y = [], []
    for k in range(classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        theta = k * 2 * np.pi / classes + r * 4 + rng.normal(scale=noise, size=n_per_class)
        X.append(np.c_[r * np.sin(theta), r * np.cos(theta)])
        y.append(np.full(n_per_class, k))
    return np.concatenate(X), np.concatenate(y)


@pytest.mark.points(3)
def test_training_on_spirals_reaches_90_percent():
    rng = np.random.default_rng(SEED)
    X, y = spirals(150, rng)
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    X_train, y_train, X_test, y_test = X[:300], y[:300], X[300:], y[300:]
    preds = np.asarray(submission.train_and_predict(X_train, y_train, X_test, seed=SEED))
    assert preds.shape == y_test.shape
    accuracy = float((preds == y_test).mean())
    assert accuracy >= 0.9, f"test accuracy {accuracy:.2f} < 0.90"
