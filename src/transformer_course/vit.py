"""The Vision Transformer: an image read as a sequence of patches (chapter 16).

Dosovitskiy et al. (2021) cut an image into square patches, flatten each patch into a vector
and project it to ``d_model``: the patches play the part of words. A learned ``[CLS]`` vector is
put in front of the sequence, learned position embeddings are added, and the sequence goes
through an ordinary Transformer encoder (here the course's
:class:`~transformer_course.encoder.TransformerEncoder`, pre-norm). The encoder's output at the
``[CLS]`` position, which may attend to every patch, is the image's summary; a linear head
turns it into class logits.

The course trains it on scikit-learn's handwritten digits (1,797 images of 8 x 8 pixels, 16
grey levels, bundled with scikit-learn): 2 x 2 patches give 16 tokens per image.
:func:`load_digits_data` makes the seeded stratified split and :func:`train_vit` the chapter's
training recipe, which ``benchmarks/vit_digits.py`` logs to ``results/vit_digits.json``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .device import set_seed
from .encoder import TransformerEncoder
from .transformer import check_layer_settings, init_linear_layers

__all__ = [
    "patchify",
    "unpatchify",
    "PatchEmbedding",
    "ViTConfig",
    "VisionTransformer",
    "DigitsData",
    "load_digits_data",
    "random_shift",
    "accuracy",
    "ViTTrainingConfig",
    "ViTResult",
    "train_vit",
]


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
        self.encoder = TransformerEncoder(c.num_layers, c.d_model, c.num_heads, c.d_ff,
                                          c.dropout, c.activation, norm_first=True)
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


# --- data and training ------------------------------------------------------------------------


@dataclass
class DigitsData:
    """scikit-learn's digits as tensors: images ``(N, 1, 8, 8)`` in [0, 1], labels ``(N,)``."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


def load_digits_data(test_size: float = 0.2, seed: int = 0) -> DigitsData:
    """The 1,797 digits of ``sklearn.datasets.load_digits``, split stratified by class.

    The pixels (0-16) are divided by 16. ``seed`` fixes the split: seed 0 and a test size of
    0.2 give 1,437 training and 360 test images, each class in the same proportion in both.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as error:  # scikit-learn is in the "advanced" extra
        raise ImportError("the digits data set needs scikit-learn: pip install scikit-learn"
                          ) from error
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    labels = torch.tensor(digits.target, dtype=torch.long)  # (N,)
    train_idx, test_idx = train_test_split(torch.arange(len(labels)).numpy(),
                                           test_size=test_size, random_state=seed,
                                           stratify=labels.numpy())
    train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
    return DigitsData(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx])


def random_shift(images: Tensor, max_shift: int, generator: torch.Generator | None = None
                 ) -> Tensor:
    """Move each image by up to ``max_shift`` pixels in each direction, filling with zeros.

    ``(batch, channels, H, W)`` -> same shape. A handwritten digit moved by a pixel is still
    the same digit, so this augmentation gives the model new training images for free.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    if images.dim() != 4:
        raise ValueError(f"images must be (batch, channels, H, W), got {tuple(images.shape)}")
    if max_shift == 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images, (max_shift,) * 4)  # (batch, C, H + 2s, W + 2s)
    offsets = torch.randint(0, 2 * max_shift + 1, (batch, 2), generator=generator)
    rows = offsets[:, 0, None] + torch.arange(height)  # (batch, H)
    cols = offsets[:, 1, None] + torch.arange(width)  # (batch, W)
    index = torch.arange(batch)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]]  # (b, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 512) -> float:
    """Share of ``images`` whose arg-max class is the label, in evaluation mode."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(images[start : start + batch_size])  # (batch, classes)
        correct += int((logits.argmax(dim=-1) == labels[start : start + batch_size]).sum())
    model.train(was_training)
    return correct / len(labels)


@dataclass
class ViTTrainingConfig:
    """The chapter's recipe: AdamW, a linear warm-up and a cosine decay over ``epochs``, label
    smoothing and weight decay. ``max_shift`` > 0 adds random shifts of the training images
    (:func:`random_shift`); within this short budget they slowed learning more than they
    helped, so the recipe leaves them off."""

    epochs: int = 20
    batch_size: int = 64
    peak_lr: float = 3e-3
    warmup_epochs: int = 2
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    max_shift: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.peak_lr <= 0:
            raise ValueError(f"peak_lr must be positive, got {self.peak_lr}")


@dataclass
class ViTResult:
    """What :func:`train_vit` returns. ``history`` has one record per epoch: ``epoch``,
    ``seconds`` (training time so far), ``lr``, ``train_loss`` (mean training objective of the
    epoch) and ``test_accuracy`` (measured after the epoch; used for the curve only, nothing is
    selected on it). ``seconds`` is the training loop's time, evaluations excluded."""

    model: VisionTransformer
    config: ViTConfig
    training: ViTTrainingConfig
    history: list[dict]
    seconds: float
    test_accuracy: float
    train_accuracy: float
    steps: int
    data: DigitsData = field(repr=False)

    def summary(self) -> dict:
        return {"test_accuracy": self.test_accuracy, "train_accuracy": self.train_accuracy,
                "seconds": self.seconds, "steps": self.steps,
                "parameters": self.model.num_parameters(),
                "train_images": len(self.data.train_labels),
                "test_images": len(self.data.test_labels),
                "model": dataclasses.asdict(self.config),
                "training": dataclasses.asdict(self.training), "history": self.history}


def train_vit(
    config: ViTConfig | None = None,
    training: ViTTrainingConfig | None = None,
    data: DigitsData | None = None,
    log: Callable[[str], None] | None = None,
) -> ViTResult:
    """Train a :class:`VisionTransformer` on the digits with the chapter's recipe (CPU).

    The model is the final one (nothing is selected on the test set); its test accuracy is
    measured once more at the end, in evaluation mode.
    """
    config = config or ViTConfig()
    training = training or ViTTrainingConfig()
    log = log or (lambda *_: None)
    data = data or load_digits_data(seed=training.seed)
    set_seed(training.seed)
    model = VisionTransformer(config)
    # Weight decay on the matrices only, not on biases, norms, [CLS] or positions.
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n
             and "token" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n
                                                            and "token" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": training.weight_decay},
                                   {"params": other, "weight_decay": 0.0}],
                                  lr=training.peak_lr)
    n_train = len(data.train_labels)
    steps_per_epoch = math.ceil(n_train / training.batch_size)
    total = training.epochs * steps_per_epoch
    warmup = min(training.warmup_epochs * steps_per_epoch, total // 2)
    generator = torch.Generator().manual_seed(training.seed)
    history: list[dict] = []
    step, seconds = 0, 0.0
    for epoch in range(1, training.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n_train, generator=generator)
        loss_sum = 0.0
        for start in range(0, n_train, training.batch_size):
            rows = order[start : start + training.batch_size]
            images = data.train_images[rows]  # (batch, 1, 8, 8)
            if training.max_shift:
                images = random_shift(images, training.max_shift, generator)
            if step < warmup:
                multiplier = (step + 1) / warmup
            else:
                multiplier = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
            for group in optimizer.param_groups:
                group["lr"] = training.peak_lr * multiplier
            logits = model(images)  # (batch, classes)
            loss = F.cross_entropy(logits, data.train_labels[rows],
                                   label_smoothing=training.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(rows)
            step += 1
        seconds += time.perf_counter() - started
        test_acc = accuracy(model, data.test_images, data.test_labels)
        history.append({"epoch": epoch, "seconds": seconds,
                        "lr": optimizer.param_groups[0]["lr"],
                        "train_loss": loss_sum / n_train, "test_accuracy": test_acc})
        log(f"epoch {epoch:3d}: loss {loss_sum / n_train:.4f}, test accuracy {test_acc:.1%}, "
            f"{seconds:.1f} s")
    model.eval()
    return ViTResult(model, config, training, history, seconds, history[-1]["test_accuracy"],
                     accuracy(model, data.train_images, data.train_labels), step, data)
