"""conv2d by hand: output sizes by hand, values and autograd gradients against F.conv2d."""

import pytest
import submission
import torch
import torch.nn.functional as F

SEED = 0

# (input shape, weight shape, stride, padding, dilation, bias?)
CONFIGS = {
    "basic": ((2, 3, 7, 7), (4, 3, 3, 3), 1, 0, 1, True),
    "stride2_pad1": ((2, 3, 8, 8), (5, 3, 3, 3), 2, 1, 1, True),
    "dilation2_pad2": ((1, 2, 9, 9), (3, 2, 3, 3), 1, 2, 2, True),
    "rectangular_mixed": ((2, 2, 6, 9), (3, 2, 2, 3), (2, 1), (1, 0), (1, 2), True),
    "no_bias_1x1_stride3": ((3, 4, 7, 5), (2, 4, 1, 1), 3, 1, 1, False),
}


def make(config, device):
    x_shape, w_shape, stride, padding, dilation, with_bias = config
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(x_shape, generator=g, dtype=torch.float64).to(device)
    w = torch.randn(w_shape, generator=g, dtype=torch.float64).to(device)
    b = torch.randn(w_shape[0], generator=g, dtype=torch.float64).to(device) if with_bias else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation)


@pytest.mark.points(1)
def test_output_size_formula():
    # Worked by hand from floor((H + 2p - d(k-1) - 1) / s) + 1.
    assert submission.conv2d_output_size(7, 3) == 5
    assert submission.conv2d_output_size(8, 3, stride=2, padding=1) == 4
    assert submission.conv2d_output_size(9, 3, padding=2, dilation=2) == 9
    assert submission.conv2d_output_size(10, 4, stride=3, padding=0, dilation=2) == 2


@pytest.mark.points(1)
def test_conv2d_small_example_by_hand(device):
    x = torch.arange(16.0, device=device).view(1, 1, 4, 4)
    w = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]]], device=device)  # top-left minus bottom-right
    out = submission.conv2d(x, w, torch.tensor([0.5], device=device))
    # Every 2x2 window gives x[r, c] - x[r+1, c+1] = -5, plus the bias.
    torch.testing.assert_close(out.cpu(), torch.full((1, 1, 3, 3), -4.5))


@pytest.mark.points(1)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_conv2d_matches_torch(name, device):
    x, w, b, args = make(CONFIGS[name], device)
    # Expected values before the student's call: code that changed its arguments in place could
    # otherwise change what it is compared with.
    expected = F.conv2d(x, w, b, **args)
    out = submission.conv2d(x, w, b, **args)
    torch.testing.assert_close(out.cpu(), expected.cpu())


@pytest.mark.points(2)
def test_conv2d_gradients_match_torch(device):
    x, w, b, args = make(CONFIGS["dilation2_pad2"], device)
    args["stride"] = 2
    expected_out = F.conv2d(x, w, b, **args)
    grad_output = torch.randn(
        expected_out.shape, generator=torch.Generator().manual_seed(SEED + 1), dtype=torch.float64
    ).to(device)
    ref = [t.clone().requires_grad_(True) for t in (x, w, b)]
    (F.conv2d(*ref, **args) * grad_output).sum().backward()  # before the student's call (see above)
    grads = submission.conv2d_grads(x, w, b, grad_output, **args)
    for key, tensor in zip(("x", "weight", "bias"), ref, strict=True):
        torch.testing.assert_close(grads[key].cpu(), tensor.grad.cpu(), msg=lambda m, key=key: f"{key}: {m}")
