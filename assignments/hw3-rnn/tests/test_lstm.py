"""The LSTM cell and its unrolled sequence, against nn.LSTMCell / nn.LSTM holding the same weights."""

import math

import pytest
import submission
import torch
from torch import nn

SEED = 0
B, IN, H, T = 3, 4, 5, 6


def weights(module, device):
    """A torch LSTM's weights as plain detached tensors, in the order the homework's functions take."""
    suffix = "_l0" if isinstance(module, nn.LSTM) else ""
    return [
        getattr(module, name + suffix).detach().to(device)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    ]


def randn(*shape, generator, device):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)


@pytest.mark.points(1)
def test_lstm_cell_gate_order_by_hand(device):
    # Zero weights; biases saturate the gates: input open, forget shut, g = 1, output sigmoid(0) = 1/2.
    W_ih, W_hh = torch.zeros(4 * H, IN, device=device), torch.zeros(4 * H, H, device=device)
    b_ih = torch.cat([torch.full((H,), v) for v in (50.0, -50.0, 50.0, 0.0)]).to(device)
    b_hh = torch.zeros(4 * H, device=device)
    x, h, c = (
        torch.randn(B, IN, device=device),
        torch.randn(B, H, device=device),
        torch.randn(B, H, device=device),
    )
    h_new, c_new = submission.lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh)
    # c' = 0 * c + 1 * 1 = 1 and h' = 0.5 * tanh(1)
    torch.testing.assert_close(c_new.cpu(), torch.ones(B, H))
    torch.testing.assert_close(h_new.cpu(), torch.full((B, H), 0.5 * math.tanh(1.0)))


@pytest.mark.points(2)
def test_lstm_cell_matches_torch(device):
    g = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    cell = nn.LSTMCell(IN, H).double()
    x, h, c = (
        randn(B, IN, generator=g, device=device),
        randn(B, H, generator=g, device=device),
        randn(B, H, generator=g, device=device),
    )
    # Expected values before the student's call: code that changed its arguments in place (the weights
    # share the cell's storage) could otherwise change what it is compared with.
    expected_h, expected_c = cell.to(device)(x, (h, c))
    h_new, c_new = submission.lstm_cell(x, h, c, *weights(cell, device))
    torch.testing.assert_close(h_new.cpu(), expected_h.detach().cpu())
    torch.testing.assert_close(c_new.cpu(), expected_c.detach().cpu())


def sequence_case(device):
    g = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    lstm = nn.LSTM(IN, H).double().to(device)  # seq-first: (T, B, IN)
    x_seq = randn(T, B, IN, generator=g, device=device)
    h0, c0 = randn(B, H, generator=g, device=device), randn(B, H, generator=g, device=device)
    grad_output = randn(T, B, H, generator=g, device=device)
    return lstm, x_seq, h0, c0, grad_output


@pytest.mark.points(2)
def test_lstm_forward_matches_torch(device):
    lstm, x_seq, h0, c0, _ = sequence_case(device)
    expected, (eh, ec) = lstm(x_seq, (h0[None], c0[None]))  # before the student's call (see above)
    outputs, (h_T, c_T) = submission.lstm_forward(x_seq, h0, c0, *weights(lstm, device))
    torch.testing.assert_close(outputs.cpu(), expected.detach().cpu())
    torch.testing.assert_close(h_T.cpu(), eh[0].detach().cpu())
    torch.testing.assert_close(c_T.cpu(), ec[0].detach().cpu())


def torch_grads(lstm, x_seq, h0, c0, grad_output):
    x_seq, h0, c0 = (t.clone().requires_grad_(True) for t in (x_seq, h0, c0))
    lstm.zero_grad()
    outputs, _ = lstm(x_seq, (h0[None], c0[None]))
    (outputs * grad_output).sum().backward()
    grads = {"x_seq": x_seq.grad, "h0": h0.grad, "c0": c0.grad}
    for name in ("W_ih", "W_hh", "b_ih", "b_hh"):
        torch_name = {
            "W_ih": "weight_ih_l0",
            "W_hh": "weight_hh_l0",
            "b_ih": "bias_ih_l0",
            "b_hh": "bias_hh_l0",
        }[name]
        grads[name] = getattr(lstm, torch_name).grad
    return grads


@pytest.mark.points(2)
def test_gradients_through_time_for_inputs_and_initial_state(device):
    lstm, x_seq, h0, c0, grad_output = sequence_case(device)
    expected = torch_grads(lstm, x_seq, h0, c0, grad_output)  # before the student's call (see above)
    grads = submission.lstm_grads(x_seq, h0, c0, *weights(lstm, device), grad_output)
    for key in ("x_seq", "h0", "c0"):
        torch.testing.assert_close(
            grads[key].cpu(), expected[key].cpu(), msg=lambda m, key=key: f"{key}: {m}"
        )


@pytest.mark.points(2)
def test_gradients_through_time_for_weights(device):
    lstm, x_seq, h0, c0, grad_output = sequence_case(device)
    expected = torch_grads(lstm, x_seq, h0, c0, grad_output)  # before the student's call (see above)
    grads = submission.lstm_grads(x_seq, h0, c0, *weights(lstm, device), grad_output)
    for key in ("W_ih", "W_hh", "b_ih", "b_hh"):
        torch.testing.assert_close(
            grads[key].cpu(), expected[key].cpu(), msg=lambda m, key=key: f"{key}: {m}"
        )
