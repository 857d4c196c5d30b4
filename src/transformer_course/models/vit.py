"""The Vision Transformer: an image read as a sequence of patches (chapter 16).

Dosovitskiy et al. (2021) cut an image into square patches, flatten each patch into a vector
and project it to ``d_model``: the patches play the part of words. A learned ``[CLS]`` vector is
put in front of the sequence, learned position embeddings are added, and the sequence goes
through an ordinary Transformer encoder (here the course's
:class:`~transformer_course.models.encoder.TransformerEncoder`, pre-norm). The encoder's output
at the ``[CLS]`` position, which may attend to every patch, is the image's summary; a linear head
turns it into class logits.

The course trains it on scikit-learn's handwritten digits (1,797 images of 8 x 8 pixels, 16
grey levels, bundled with scikit-learn): 2 x 2 patches give 16 tokens per image.
:func:`load_digits_data` makes the seeded stratified split and :func:`train_vit` the chapter's
training recipe, which ``benchmarks/vit_digits.py`` logs to ``results/vit_digits.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .encoder import EncoderLayer, TransformerEncoder
from .normalization import LayerNorm
from .transformer import check_layer_settings, init_linear_layers

__all__ = ["patchify", "unpatchify", "PatchEmbedding", "ViTConfig", "VisionTransformer",
           "vit_layer"]


def _check_images(images: Tensor, patch_size: int, channels: int | None = None) -> None:
    if images.dim() != 4:
        raise ValueError(
            f"images must have shape (batch, channels, height, width), got {tuple(images.shape)}"
        )
    if channels is not None and images.shape[1] != channels:
        raise ValueError(
            f"expected {channels} channel(s), got images of shape {tuple(images.shape)}"
        )
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"the patch size {patch_size} must divide the image's height and width, got "
            f"{height} x {width}"
        )
    if not images.is_floating_point():
        raise ValueError(f"images must be a floating tensor, got dtype {images.dtype}")


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into non-overlapping square patches, flattened, in reading order.

    ``(batch, channels, height, width)`` -> ``(batch, num_patches, channels * p * p)`` with
    ``num_patches = (height / p) * (width / p)``; patch ``r * (width / p) + c`` is the one in
    patch row ``r`` and patch column ``c``. Each patch vector lists channel 0's ``p x p``
    pixels row by row, then channel 1's, ...: the order in which ``nn.Conv2d`` flattens its
    kernels, so a linear layer on these vectors is a convolution with stride ``p``.
    """
    if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
    _check_images(images, patch_size)
    batch, channels, height, width = images.shape
    rows, cols = height // patch_size, width // patch_size
    x = images.reshape(batch, channels, rows, patch_size, cols, patch_size)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (batch, rows, cols, channels, p, p)
    return x.reshape(batch, rows * cols, channels * patch_size * patch_size)


def unpatchify(patches: Tensor, patch_size: int, channels: int, height: int, width: int
               ) -> Tensor:
    """The inverse of :func:`patchify`: ``(batch, num_patches, channels * p * p)`` ->
    ``(batch, channels, height, width)``."""
    rows, cols = height // patch_size, width // patch_size
    expected = (rows * cols, channels * patch_size * patch_size)
    if patches.dim() != 3 or tuple(patches.shape[1:]) != expected:
        raise ValueError(
            f"patches must have shape (batch, {expected[0]}, {expected[1]}) for {channels} x "
            f"{height} x {width} images and patch size {patch_size}, got {tuple(patches.shape)}"
        )
    x = patches.reshape(-1, rows, cols, channels, patch_size, patch_size)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (batch, channels, rows, p, cols, p)
    return x.reshape(-1, channels, height, width)


class PatchEmbedding(nn.Module):
    """Flattened patches projected to ``d_model``: ``(batch, C, H, W)`` -> ``(batch, N, d)``.

    One ``nn.Linear`` of ``C * p * p`` inputs shared by all patches; the same map as
    ``nn.Conv2d(C, d, kernel_size=p, stride=p)`` followed by a flatten.
    """

    def __init__(self, patch_size: int, in_channels: int, d_model: int):
        super().__init__()
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.proj = nn.Linear(in_channels * patch_size * patch_size, d_model)

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images, self.patch_size, self.in_channels)
        return self.proj(patchify(images, self.patch_size))  # (batch, num_patches, d_model)


@dataclass
class ViTConfig:
    """Sizes of a Vision Transformer; the defaults are the chapter's model for 8 x 8 digits."""

    image_size: int = 8
    patch_size: int = 2
    in_channels: int = 1
    num_classes: int = 10
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 3
    d_ff: int | None = None  # None: 2 * d_model
    dropout: float = 0.0  # in the digits recipe, dropout slowed learning and gained nothing
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.d_ff is None:
            self.d_ff = 2 * self.d_model
        for name in ("image_size", "patch_size", "in_channels", "num_classes", "d_model",
                     "num_heads", "num_layers", "d_ff"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"patch_size {self.patch_size} must divide image_size {self.image_size}"
            )
        check_layer_settings(self)

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def vit_layer(config: ViTConfig) -> EncoderLayer:
    """One encoder layer of the model: pre-norm, as in the ViT paper."""
    c = config
    return EncoderLayer(c.d_model, c.num_heads, c.d_ff, c.dropout, c.activation, norm_first=True)


class VisionTransformer(nn.Module):
    """Patches -> ``[CLS]`` + patch embeddings + learned positions -> encoder -> head.

    ``forward(images)``: ``(batch, channels, H, W)`` (or ``(batch, H, W)`` for one channel)
    -> logits ``(batch, num_classes)``. The sequence inside has ``num_patches + 1`` positions,
    the ``[CLS]`` token at position 0.
    """

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        self.patch_embed = PatchEmbedding(c.patch_size, c.in_channels, c.d_model)
        # The [CLS] token is a parameter, not an embedding of an input: the same learned vector
        # starts every sequence, and training makes it ask the patches the right questions.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.d_model))
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_patches + 1, c.d_model))
        self.dropout = nn.Dropout(c.dropout)
        # Pre-norm layers, so the stack ends with a LayerNorm.
        self.encoder = TransformerEncoder([vit_layer(c) for _ in range(c.num_layers)],
                                          LayerNorm(c.d_model))
        self.head = nn.Linear(c.d_model, c.num_classes)
        init_linear_layers(self)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)

    def _as_4d(self, images: Tensor) -> Tensor:
        if images.dim() == 3 and self.config.in_channels == 1:
            images = images[:, None]  # (batch, 1, H, W)
        size = self.config.image_size
        if images.dim() != 4 or tuple(images.shape[-2:]) != (size, size):
            raise ValueError(
                f"expected images of shape (batch, {self.config.in_channels}, {size}, {size}), "
                f"got {tuple(images.shape)}"
            )
        return images

    def features(self, images: Tensor) -> Tensor:
        """The encoder's output for every position, ``(batch, num_patches + 1, d_model)``."""
        images = self._as_4d(images)
        x = self.patch_embed(images)  # (batch, num_patches, d_model)
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # (batch, 1, d_model)
        x = torch.cat([cls, x], dim=1) + self.pos_embed  # (batch, num_patches + 1, d_model)
        return self.encoder(self.dropout(x))  # (batch, num_patches + 1, d_model)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images)[:, 0])  # (batch, num_classes), from [CLS]

    def attention_weights(self) -> list[Tensor]:
        """Per layer, ``(batch, heads, N + 1, N + 1)`` weights of the last forward pass."""
        return self.encoder.attention_weights()

    @torch.no_grad()
    def cls_attention(self, images: Tensor) -> Tensor:
        """Where ``[CLS]`` looks: ``(layers, batch, heads, num_patches)``, the attention of
        position 0 on the patches (its weight on itself left out), in evaluation mode."""
        was_training = self.training
        self.eval()
        self(images)
        self.train(was_training)
        weights = torch.stack(self.attention_weights())  # (layers, batch, heads, N + 1, N + 1)
        return weights[..., 0, 1:]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
