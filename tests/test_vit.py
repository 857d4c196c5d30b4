"""The Vision Transformer and its digits recipe (chapter 16)."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from transformer_course.models.vit import (
    PatchEmbedding,
    VisionTransformer,
    ViTConfig,
    patchify,
    unpatchify,
)
from transformer_course.recipes.vit_digits import (
    ViTTrainingConfig,
    accuracy,
    load_digits_data,
    random_shift,
    train_vit,
)
from transformer_course.training.scheduler import warmup_cosine_schedule


def test_patchify_by_hand_and_roundtrip():
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    patches = patchify(image, 2)  # (1, 4, 4)
    assert patches.shape == (1, 4, 4)
    assert patches[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    images = torch.randn(3, 2, 8, 6)
    for p in (1, 2):
        assert_close(unpatchify(patchify(images, p), p, 2, 8, 6), images)


def test_patch_embedding_is_a_strided_convolution():
    torch.manual_seed(0)
    embed = PatchEmbedding(patch_size=2, in_channels=3, d_model=5)
    conv = nn.Conv2d(3, 5, kernel_size=2, stride=2)
    with torch.no_grad():
        conv.weight.copy_(embed.proj.weight.reshape(5, 3, 2, 2))
        conv.bias.copy_(embed.proj.bias)
    images = torch.randn(4, 3, 8, 8)
    expected = conv(images).flatten(2).transpose(1, 2)  # (4, 16, 5)
    assert_close(embed(images), expected)


def test_patch_errors():
    with pytest.raises(ValueError, match="divide"):
        patchify(torch.randn(1, 1, 8, 8), 3)
    with pytest.raises(ValueError, match="batch, channels"):
        patchify(torch.randn(8, 8), 2)
    with pytest.raises(ValueError, match="patch_size"):
        patchify(torch.randn(1, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="channel"):
        PatchEmbedding(2, 1, 8)(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="patches must have shape"):
        unpatchify(torch.randn(1, 5, 4), 2, 1, 4, 4)


def test_model_shapes_cls_attention_and_config_errors():
    torch.manual_seed(0)
    config = ViTConfig(d_model=32, num_heads=4, num_layers=2, dropout=0.0)
    model = VisionTransformer(config)
    images = torch.rand(5, 1, 8, 8)
    assert model(images).shape == (5, 10)
    assert_close(model(images[:, 0]), model(images))  # (batch, H, W) accepted for 1 channel
    assert model.features(images).shape == (5, 17, 32)
    cls = model.cls_attention(images)
    assert cls.shape == (2, 5, 4, 16)
    weights = torch.stack(model.attention_weights())  # (layers, batch, heads, 17, 17)
    assert_close(cls.sum(-1) + weights[..., 0, 0], torch.ones(2, 5, 4))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.rand(5, 1, 6, 6))
    with pytest.raises(ValueError, match="divide"):
        ViTConfig(image_size=8, patch_size=3)
    with pytest.raises(ValueError, match="divisible"):
        ViTConfig(d_model=30, num_heads=4)


def test_positions_matter_the_model_is_not_permutation_invariant():
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(d_model=32, num_heads=4, num_layers=1, dropout=0.0))
    with torch.no_grad():
        model.pos_embed.normal_(std=1.0)
    image = torch.rand(1, 1, 8, 8)
    swapped = image.clone()
    swapped[..., :2, :2], swapped[..., 6:, 6:] = image[..., 6:, 6:], image[..., :2, :2]
    assert not torch.allclose(model(image), model(swapped))
    with torch.no_grad():
        model.pos_embed.zero_()  # without positions, moving whole patches changes nothing
    assert_close(model(image), model(swapped))


def test_digits_split_is_seeded_and_stratified():
    pytest.importorskip("sklearn")  # the "advanced" extra
    data = load_digits_data(seed=0)
    assert data.train_images.shape == (1437, 1, 8, 8)
    assert data.test_images.shape == (360, 1, 8, 8)
    assert 0.0 <= data.train_images.min() and data.train_images.max() <= 1.0
    counts = torch.bincount(data.test_labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # 10% of each class's ~180 images
    again = load_digits_data(seed=0)
    assert torch.equal(again.test_labels, data.test_labels)
    with pytest.raises(ValueError, match="test_size"):
        load_digits_data(test_size=1.5)


def test_random_shift_moves_whole_images():
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3, 4] = 1.0
    g = torch.Generator().manual_seed(0)
    shifted = random_shift(image.repeat(200, 1, 1, 1), 1, g)
    assert shifted.shape == (200, 1, 8, 8)
    assert_close(shifted.sum(dim=(1, 2, 3)), torch.ones(200))  # nothing falls off the edge
    rows, cols = shifted[:, 0].nonzero()[:, 1], shifted[:, 0].nonzero()[:, 2]
    assert set(rows.tolist()) == {2, 3, 4} and set(cols.tolist()) == {3, 4, 5}
    assert torch.equal(random_shift(image, 0), image)


def test_a_short_training_run_learns():
    """Three epochs of a small model are far above chance (10%); the full recipe is measured by
    benchmarks/vit_digits.py."""
    pytest.importorskip("sklearn")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one core
    try:
        result = train_vit(ViTConfig(d_model=32, num_heads=4, num_layers=1),
                           ViTTrainingConfig(epochs=3, warmup_epochs=1, peak_lr=3e-3))
    finally:
        torch.set_num_threads(threads)
    assert result.test_accuracy > 0.5
    assert len(result.history) == 3 and result.steps == 3 * 23
    # history's lr is the rate of each epoch's last update: warm-up over epoch 1, then a cosine
    # that reaches 0 after the last update.
    assert [h["lr"] for h in result.history] == pytest.approx(
        [3e-3 * warmup_cosine_schedule(23, 69)(s) for s in (22, 45, 68)])
    assert result.history[0]["lr"] == pytest.approx(3e-3)
    assert result.test_accuracy == accuracy(result.model, result.data.test_images,
                                            result.data.test_labels)
