"""Causal self-attention against the formula, and its KV cache against recomputing the whole sequence."""

import pytest
import submission
import torch
import torch.nn.functional as F

SEED = 0
D_MODEL, HEADS = 16, 4


def random_weights(generator):
    return {
        "qkv.weight": torch.randn(3 * D_MODEL, D_MODEL, generator=generator) / D_MODEL**0.5,
        "qkv.bias": torch.randn(3 * D_MODEL, generator=generator),
        "proj.weight": torch.randn(D_MODEL, D_MODEL, generator=generator) / D_MODEL**0.5,
        "proj.bias": torch.randn(D_MODEL, generator=generator),
    }


def attention(device):
    """The student's module with the test's weights (non-zero biases, so a bias handled wrongly shows)."""
    g = torch.Generator().manual_seed(SEED)
    weights = random_weights(g)
    module = submission.CausalSelfAttention(D_MODEL, HEADS)
    module.load_state_dict(weights)
    return module.to(device).eval(), weights, g


def reference(x, w):
    """The formula, written out here: output, keys and values (B, heads, T, d)."""
    batch, length, _ = x.shape
    q, k, v = (
        t.view(batch, length, HEADS, D_MODEL // HEADS).transpose(1, 2)
        for t in (x @ w["qkv.weight"].T + w["qkv.bias"]).chunk(3, dim=-1)
    )
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return out.transpose(1, 2).reshape(batch, length, D_MODEL) @ w["proj.weight"].T + w["proj.bias"], k, v


def test_parameters_are_laid_out_as_specified():
    state = submission.CausalSelfAttention(D_MODEL, HEADS).state_dict()
    shapes = {name: tuple(value.shape) for name, value in state.items()}
    assert shapes == {"qkv.weight": (48, 16), "qkv.bias": (48,), "proj.weight": (16, 16), "proj.bias": (16,)}


@pytest.mark.points(2)
def test_attention_matches_the_formula(device):
    module, w, g = attention(device)
    x = torch.randn(2, 6, D_MODEL, generator=g)
    expected, _, _ = reference(x, w)  # before the call: code that changed x in place could change it
    out, _ = module(x.to(device))
    torch.testing.assert_close(out.detach().cpu(), expected)


def test_returns_the_keys_and_values_as_the_cache(device):
    module, w, g = attention(device)
    x = torch.randn(2, 5, D_MODEL, generator=g)
    _, k, v = reference(x, w)
    _, (cached_k, cached_v) = module(x.to(device))
    assert tuple(cached_k.shape) == (2, HEADS, 5, D_MODEL // HEADS)
    torch.testing.assert_close(cached_k.detach().cpu(), k)
    torch.testing.assert_close(cached_v.detach().cpu(), v)


@pytest.mark.points(2)
def test_decoding_one_token_at_a_time_equals_full_recompute(device):
    module, _, g = attention(device)
    x = torch.randn(2, 8, D_MODEL, generator=g).to(device)
    with torch.no_grad():  # copies: code that changed its input in place could otherwise change x
        full, _ = module(x.clone())
        out, cache = module(x[:, :5].clone())
        steps = [out]
        for t in range(5, 8):
            out, cache = module(x[:, t : t + 1].clone(), cache)
            steps.append(out)
    assert tuple(cache[0].shape) == (2, HEADS, 8, D_MODEL // HEADS)
    torch.testing.assert_close(torch.cat(steps, dim=1).cpu(), full.cpu())


def test_a_chunk_after_the_cache_equals_full_recompute(device):
    module, _, g = attention(device)
    x = torch.randn(1, 7, D_MODEL, generator=g).to(device)
    with torch.no_grad():
        full, _ = module(x.clone())  # copies (see above)
        first, cache = module(x[:, :4].clone())
        rest, _ = module(x[:, 4:].clone(), cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1).cpu(), full.cpu())
