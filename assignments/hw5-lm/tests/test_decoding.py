"""Top-k filtering and sampling, and greedy generation with the cache against recomputing every step."""

import pytest
import submission
import torch

SEED = 0
VOCAB = 11


def test_top_k_filter_by_hand(device):
    logits = torch.tensor([[1.0, 3.0, 2.0, -1.0, 0.5], [0.0, -2.0, 5.0, 4.0, 4.5]], device=device)
    inf = float("inf")
    filtered = submission.top_k_filter(logits, 3)
    expected = torch.tensor([[1.0, 3.0, 2.0, -inf, -inf], [-inf, -inf, 5.0, 4.0, 4.5]])
    assert torch.equal(filtered.cpu(), expected)


@pytest.mark.points(2)
def test_top_k_sampling_follows_the_renormalised_distribution(device):
    logits = torch.tensor([0.2, 1.5, -0.3, 1.0, 0.7, -1.0])
    allowed = torch.tensor([1, 3, 4])  # the three largest
    expected = torch.zeros(6)
    expected[allowed] = logits[allowed].softmax(dim=0)
    samples = submission.sample_top_k(logits.repeat(20000, 1).to(device), 3).cpu()
    assert tuple(samples.shape) == (20000,)
    frequencies = torch.bincount(samples, minlength=6).float() / 20000
    assert frequencies[[0, 2, 5]].sum() == 0, "sampled a token outside the top k"
    # 20000 draws: the standard error of each frequency is under 0.004.
    torch.testing.assert_close(frequencies, expected, atol=0.02, rtol=0)


def model(device):
    torch.manual_seed(SEED)
    return submission.TinyLM(VOCAB, d_model=32, num_heads=4, max_len=32).to(device).eval()


@pytest.mark.points(2)
def test_greedy_generation_with_the_cache_matches_full_recompute(device):
    lm = model(device)
    prompt = torch.randint(0, VOCAB, (3, 4), generator=torch.Generator().manual_seed(SEED)).to(device)
    expected = prompt
    with torch.no_grad():  # greedy decoding the slow way: the whole sequence again for every token
        for _ in range(10):
            logits, _ = lm(expected.clone())  # a copy: the prompt is used again below
            expected = torch.cat([expected, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    out = submission.generate(lm, prompt.clone(), 10)
    assert torch.equal(torch.as_tensor(out).cpu(), expected.cpu())


def test_top_k_1_sampling_is_greedy(device):
    lm = model(device)
    prompt = torch.randint(0, VOCAB, (2, 3), generator=torch.Generator().manual_seed(SEED)).to(device)
    greedy = submission.generate(lm, prompt.clone(), 6)  # copies: the prompt is used twice
    sampled = submission.generate(lm, prompt.clone(), 6, top_k=1)
    assert tuple(sampled.shape) == (2, 9)
    assert torch.equal(sampled.cpu(), greedy.cpu())
