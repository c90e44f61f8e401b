"""CLIP's symmetric contrastive loss: values, symmetry, gradients, and training two encoders with it."""

import math

import pytest
import submission
import torch
import torch.nn.functional as F
from torch import nn

SEED = 0


def reference_loss(images, texts, temperature):
    """The loss written out here: cross-entropy both ways over the cosine similarities / temperature."""
    logits = F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T / temperature
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def features(n=8, dim=16, seed=SEED):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64), torch.randn(
        n, dim, generator=g, dtype=torch.float64
    )


def test_logits_by_hand(device):
    images = torch.tensor([[1.0, 0.0], [0.0, 2.0]], device=device)
    texts = torch.tensor([[1.0, 1.0], [0.0, -3.0]], device=device)
    # Normalised: images [1, 0] and [0, 1], texts [1, 1] / sqrt 2 and [0, -1]; divided by 0.5.
    r = math.sqrt(2)
    expected = torch.tensor([[r, 0.0], [r, -2.0]])
    torch.testing.assert_close(submission.clip_logits(images, texts, 0.5).cpu(), expected)


@pytest.mark.points(2)
def test_loss_matches_the_formula(device):
    images, texts = features()
    expected = reference_loss(images, texts, 0.1)
    loss = submission.clip_loss(images.to(device), texts.to(device), temperature=0.1)
    torch.testing.assert_close(loss.cpu(), expected)


def test_loss_is_symmetric_in_images_and_texts(device):
    images, texts = (f.to(device) for f in features(seed=SEED + 1))
    forward = submission.clip_loss(images.clone(), texts.clone(), temperature=0.2)  # copies: used twice
    backward = submission.clip_loss(texts.clone(), images.clone(), temperature=0.2)
    torch.testing.assert_close(forward.cpu(), backward.cpu())


def test_loss_gradients_match_the_formula(device):
    images, texts = features(6, 5)
    leaves = images.clone().requires_grad_(), texts.clone().requires_grad_()
    reference_loss(*leaves, 0.07).backward()
    images, texts = images.to(device).requires_grad_(), texts.to(device).requires_grad_()
    submission.clip_loss(images, texts).backward()  # the default temperature, 0.07
    torch.testing.assert_close(images.grad.cpu(), leaves[0].grad)
    torch.testing.assert_close(texts.grad.cpu(), leaves[1].grad)


def paired_data(n):
    """Images and captions that are two noisy views of the same 6-dimensional content."""
    g = torch.Generator().manual_seed(SEED)
    content = torch.randn(n, 6, generator=g)
    to_image, to_text = torch.randn(6, 12, generator=g), torch.randn(6, 10, generator=g)
    images = content @ to_image + 0.1 * torch.randn(n, 12, generator=g)
    texts = content @ to_text + 0.1 * torch.randn(n, 10, generator=g)
    return images, texts


@pytest.mark.points(2)
def test_training_two_encoders_with_the_loss_retrieves_captions(device):
    images, texts = (t.to(device) for t in paired_data(320))
    torch.manual_seed(SEED)
    image_encoder, text_encoder = nn.Linear(12, 16).to(device), nn.Linear(10, 16).to(device)
    optimizer = torch.optim.Adam([*image_encoder.parameters(), *text_encoder.parameters()], lr=0.01)
    for _ in range(60):
        optimizer.zero_grad()
        loss = submission.clip_loss(image_encoder(images[:256]), text_encoder(texts[:256]), temperature=0.1)
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # held-out pairs: each image must find its own caption among 64
        similarity = (
            F.normalize(image_encoder(images[256:]), dim=-1)
            @ F.normalize(text_encoder(texts[256:]), dim=-1).T
        )
    accuracy = (similarity.argmax(dim=1).cpu() == torch.arange(64)).float().mean().item()
    # Untrained encoders retrieve 0-8% of the captions; the reference solution gets 100%.
    assert accuracy >= 0.9, f"retrieval accuracy {accuracy:.2f} < 0.90"
