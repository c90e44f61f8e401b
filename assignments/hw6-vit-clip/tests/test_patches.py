"""Patches by hand and against F.unfold, and the patch embedding against a strided convolution."""

import pytest
import submission
import torch
import torch.nn.functional as F

SEED = 0
IMAGE, PATCH, CHANNELS, EMBED = 8, 4, 3, 10
PATCHES = (IMAGE // PATCH) ** 2


def test_patchify_by_hand(device):
    image = torch.arange(16.0).view(1, 1, 4, 4).to(device)
    expected = torch.tensor([[[0.0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]])
    torch.testing.assert_close(submission.patchify(image, 2).cpu(), expected)


@pytest.mark.points(2)
def test_patchify_matches_unfold_with_channels(device):
    images = torch.randn(2, 3, 8, 12, generator=torch.Generator().manual_seed(SEED))
    # F.unfold with stride = kernel size cuts the same patches, each flattened (C, p, p).
    expected = F.unfold(images, kernel_size=4, stride=4).transpose(1, 2)
    patches = submission.patchify(images.to(device), 4)
    assert tuple(patches.shape) == (2, 6, 48)
    torch.testing.assert_close(patches.cpu(), expected)


def embedding_case(device):
    """The student's module with the test's weights, the same weights as leaves, and images."""
    g = torch.Generator().manual_seed(SEED)
    weights = {
        "proj.weight": torch.randn(EMBED, CHANNELS * PATCH * PATCH, generator=g) / 7,
        "proj.bias": torch.randn(EMBED, generator=g),
        "cls_token": torch.randn(1, 1, EMBED, generator=g),
        "pos_embedding": torch.randn(1, PATCHES + 1, EMBED, generator=g),
    }
    images = torch.randn(2, CHANNELS, IMAGE, IMAGE, generator=g)
    module = submission.PatchEmbedding(IMAGE, PATCH, CHANNELS, EMBED)
    module.load_state_dict(weights)
    leaves = {name: value.clone().requires_grad_() for name, value in weights.items()}
    return module.to(device), leaves, images


def reference(images, w):
    """A ViT's patch embedding as it is usually written: a convolution with stride p."""
    kernel = w["proj.weight"].view(EMBED, CHANNELS, PATCH, PATCH)
    tokens = F.conv2d(images, kernel, w["proj.bias"], stride=PATCH).flatten(2).transpose(1, 2)
    cls = w["cls_token"].expand(images.shape[0], -1, -1)
    return torch.cat([cls, tokens], dim=1) + w["pos_embedding"]


def test_parameters_have_the_specified_shapes():
    torch.manual_seed(SEED)
    state = submission.PatchEmbedding(IMAGE, PATCH, CHANNELS, EMBED).state_dict()
    shapes = {name: tuple(value.shape) for name, value in state.items()}
    assert shapes == {
        "proj.weight": (EMBED, 48),
        "proj.bias": (EMBED,),
        "cls_token": (1, 1, EMBED),
        "pos_embedding": (1, PATCHES + 1, EMBED),
    }
    assert torch.all(state["cls_token"] == 0)


@pytest.mark.points(2)
def test_embedding_matches_a_strided_convolution(device):
    module, leaves, images = embedding_case(device)
    expected = reference(images, leaves).detach()
    out = module(images.to(device))
    assert tuple(out.shape) == (2, PATCHES + 1, EMBED)
    torch.testing.assert_close(out.detach().cpu(), expected)


@pytest.mark.points(2)
def test_gradients_reach_the_projection_class_token_and_positions(device):
    module, leaves, images = embedding_case(device)
    target = torch.randn(2, PATCHES + 1, EMBED, generator=torch.Generator().manual_seed(SEED + 1))
    F.mse_loss(reference(images, leaves), target).backward()
    F.mse_loss(module(images.to(device)), target.to(device)).backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    for name, leaf in leaves.items():
        assert grads[name] is not None, f"no gradient for {name}"
        torch.testing.assert_close(grads[name].cpu(), leaf.grad, msg=f"gradient of {name}")
