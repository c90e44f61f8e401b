"""The small CNN learns horizontal vs vertical bars at random places in noisy 8x8 images."""

import pytest
import submission
import torch

SEED = 0


def bars(n, generator):
    """n noisy 8x8 images holding one bright bar of length 3-6: label 0 horizontal, 1 vertical."""
    images = 0.3 * torch.randn(n, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    for i in range(n):
        length = int(torch.randint(3, 7, (1,), generator=generator))
        across = int(torch.randint(0, 8, (1,), generator=generator))
        start = int(torch.randint(0, 8 - length + 1, (1,), generator=generator))
        if labels[i] == 0:
            images[i, 0, across, start : start + length] += 1.0
        else:
            images[i, 0, start : start + length, across] += 1.0
    return images, labels


@pytest.mark.points(4)
def test_cnn_learns_bar_orientation(device):
    generator = torch.Generator().manual_seed(SEED)
    X_train, y_train = bars(400, generator)
    X_test, y_test = bars(200, generator)
    preds = submission.train_and_predict(X_train.to(device), y_train.to(device), X_test.to(device), seed=SEED)
    preds = torch.as_tensor(preds).cpu()
    assert preds.shape == y_test.shape
    accuracy = (preds == y_test).float().mean().item()
    assert accuracy >= 0.9, f"test accuracy {accuracy:.2f} < 0.90"
