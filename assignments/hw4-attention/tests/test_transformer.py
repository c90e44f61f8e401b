"""The transformer block respects causality, and a small transformer learns to reverse sequences."""

import pytest
import submission
import torch

SEED = 0


@pytest.mark.points(1)
def test_causal_block_ignores_the_future(device):
    block = submission.TransformerBlock(16, 2, 32).to(device)  # a handle to the student's module
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(2, 5, 16, generator=g).to(device)
    changed = x.clone()
    changed[:, -1] = torch.randn(2, 16, generator=g).to(device)
    out, out_changed = block.forward(x, causal=True).cpu(), block.forward(changed, causal=True).cpu()
    assert tuple(out.shape) == (2, 5, 16)
    torch.testing.assert_close(out[:, :-1], out_changed[:, :-1], msg="earlier positions saw a future token")
    assert not torch.allclose(out[:, -1], out_changed[:, -1]), "the last position ignores its own input"


@pytest.mark.points(3)
def test_learns_to_reverse_sequences(device):
    vocab, length = 8, 6
    g = torch.Generator().manual_seed(SEED)
    X_train = torch.randint(0, vocab, (256, length), generator=g)
    X_test = torch.randint(0, vocab, (256, length), generator=g)
    # The answers before the call: code that changed X_test in place could otherwise change them.
    y_test = X_test.flip(1)
    preds = submission.train_and_predict(
        X_train.to(device), X_train.flip(1).to(device), X_test.to(device), vocab_size=vocab, seed=SEED
    )
    preds = torch.as_tensor(preds).cpu()
    assert preds.shape == y_test.shape
    accuracy = (preds == y_test).float().mean().item()
    # Without positions a model can only guess (1/8 per token).
    assert accuracy >= 0.9, f"token accuracy {accuracy:.2f} < 0.90"
