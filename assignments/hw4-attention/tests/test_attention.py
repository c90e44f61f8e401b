"""Masks, scaled dot-product attention, and multi-head attention against nn.MultiheadAttention."""

import math

import pytest
import submission
import torch
import torch.nn.functional as F
from torch import nn

SEED = 0


def randn(*shape, generator, device):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(device)


def reference_attention(q, k, v, mask=None):
    """The textbook formula, written out here so the tests do not depend on the student's code."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights


@pytest.mark.points(1)
def test_causal_mask_values(device):
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    mask = submission.causal_mask(4, device=device)
    assert mask.dtype == torch.bool
    torch.testing.assert_close(mask.cpu(), expected)


@pytest.mark.points(1)
def test_padding_mask_values(device):
    mask = submission.padding_mask(torch.tensor([3, 1, 4], device=device), 4)
    expected = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert mask.dtype == torch.bool
    torch.testing.assert_close(mask.cpu(), expected)


@pytest.mark.points(1)
def test_attention_by_hand(device):
    # One query, two keys: scores (2*1 + 0*0) / sqrt(2) and 0, so weights softmax([sqrt 2, 0]).
    q = torch.tensor([[[2.0, 0.0]]], dtype=torch.float64, device=device)
    k = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64, device=device)
    v = torch.tensor([[[10.0], [20.0]]], dtype=torch.float64, device=device)
    out, weights = submission.scaled_dot_product_attention(q, k, v)
    a = math.exp(math.sqrt(2)) / (math.exp(math.sqrt(2)) + 1)
    torch.testing.assert_close(weights.cpu(), torch.tensor([[[a, 1 - a]]], dtype=torch.float64))
    torch.testing.assert_close(out.cpu(), torch.tensor([[[10 * a + 20 * (1 - a)]]], dtype=torch.float64))


@pytest.mark.points(1)
def test_attention_without_mask_matches_formula(device):
    g = torch.Generator().manual_seed(SEED)
    q, k, v = (
        randn(2, 3, 5, 8, generator=g, device=device),
        randn(2, 3, 7, 8, generator=g, device=device),
        randn(2, 3, 7, 4, generator=g, device=device),
    )
    # Expected values before the student's call: code that changed its arguments in place could
    # otherwise change what it is compared with.
    expected_out, expected_weights = reference_attention(q, k, v)
    out, weights = submission.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out.cpu(), expected_out.cpu())
    torch.testing.assert_close(weights.cpu(), expected_weights.cpu())


@pytest.mark.points(2)
def test_attention_with_causal_mask(device):
    g = torch.Generator().manual_seed(SEED)
    q, k, v = (randn(2, 6, 8, generator=g, device=device) for _ in range(3))
    mask = torch.ones(6, 6, dtype=torch.bool, device=device).tril()
    # The expected output and the keys that must get no weight, before the call (see above).
    expected, future = F.scaled_dot_product_attention(q, k, v, attn_mask=mask), ~mask.cpu()
    out, weights = submission.scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out.cpu(), expected.cpu())
    assert torch.all(weights.cpu()[:, future] == 0), "weights on future keys must be exactly 0"


@pytest.mark.points(1)
def test_attention_with_padding_mask_broadcast(device):
    g = torch.Generator().manual_seed(SEED)
    q, k, v = (
        randn(3, 2, 4, 8, generator=g, device=device),
        randn(3, 2, 5, 8, generator=g, device=device),
        randn(3, 2, 5, 8, generator=g, device=device),
    )
    real = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool, device=device)
    mask = real[:, None, None, :]  # (B, 1, 1, Lk): the same keys hidden from every head and query
    expected_out, expected_weights = reference_attention(q, k, v, mask)  # before the call (see above)
    out, weights = submission.scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out.cpu(), expected_out.cpu())
    torch.testing.assert_close(weights.cpu(), expected_weights.cpu())


def mha_case(device, len_q, len_k, embed=12, heads=3):
    torch.manual_seed(SEED)
    mha = nn.MultiheadAttention(embed, heads, batch_first=True, dtype=torch.float64).to(device).eval()
    with torch.no_grad():  # non-zero biases, so a bias handled wrongly shows
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    g = torch.Generator().manual_seed(SEED)
    query = randn(2, len_q, embed, generator=g, device=device)
    key = randn(2, len_k, embed, generator=g, device=device)
    value = randn(2, len_k, embed, generator=g, device=device)
    weights = [
        t.detach() for t in (mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias)
    ]
    return mha, query, key, value, weights


def check_mha(out, weights, expected, expected_avg):
    torch.testing.assert_close(out.cpu(), expected.detach().cpu())
    # nn.MultiheadAttention averages the heads' weights.
    torch.testing.assert_close(weights.mean(dim=1).cpu(), expected_avg.detach().cpu())


@pytest.mark.points(2)
def test_multi_head_self_attention_matches_torch(device):
    mha, x, _, _, w = mha_case(device, 5, 5)
    expected = mha(x, x, x, need_weights=True)  # before the call: w shares the module's storage
    out, weights = submission.multi_head_attention(x, x, x, 3, *w)
    assert tuple(weights.shape) == (2, 3, 5, 5)
    check_mha(out, weights, *expected)


@pytest.mark.points(2)
def test_multi_head_cross_attention_with_key_padding_matches_torch(device):
    mha, query, key, value, w = mha_case(device, 4, 6)
    key_mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool, device=device)
    # PyTorch's boolean key_padding_mask means "ignore", the opposite of ours. Before the call (see above).
    expected = mha(query, key, value, key_padding_mask=~key_mask, need_weights=True)
    out, weights = submission.multi_head_attention(query, key, value, 3, *w, key_mask=key_mask)
    check_mha(out, weights, *expected)


@pytest.mark.points(1)
def test_multi_head_causal_self_attention_matches_torch(device):
    mha, x, _, _, w = mha_case(device, 6, 6)
    future = torch.ones(6, 6, dtype=torch.bool, device=device).triu(1)  # torch: True = not allowed
    expected = mha(x, x, x, attn_mask=future, need_weights=True)  # before the call (see above)
    out, weights = submission.multi_head_attention(x, x, x, 3, *w, causal=True)
    check_mha(out, weights, *expected)
