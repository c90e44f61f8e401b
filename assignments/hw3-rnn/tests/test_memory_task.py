"""A classifier on the student's LSTM learns to recall the first token of a sequence."""

import pytest
import submission
import torch

SEED = 0
VOCAB, LENGTH = 4, 8


def first_token_task(n, generator):
    tokens = torch.randint(0, VOCAB, (n, LENGTH), generator=generator)
    return tokens, tokens[:, 0].clone()


@pytest.mark.points(3)
def test_recalls_first_token(device):
    generator = torch.Generator().manual_seed(SEED)
    X_train, y_train = first_token_task(512, generator)
    X_test, y_test = first_token_task(256, generator)
    preds = submission.train_and_predict(
        X_train.to(device), y_train.to(device), X_test.to(device), vocab_size=VOCAB, seed=SEED
    )
    preds = torch.as_tensor(preds).cpu()
    assert preds.shape == y_test.shape
    accuracy = (preds == y_test).float().mean().item()
    # Chance is 25%; a model that ignores the first token cannot beat it.
    assert accuracy >= 0.9, f"test accuracy {accuracy:.2f} < 0.90"
