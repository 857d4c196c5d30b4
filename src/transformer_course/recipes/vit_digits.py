"""The Vision Transformer's recipe: scikit-learn's digits, 2 x 2 patches, 95% within two minutes
(chapter 16; benchmarks/vit_digits.py)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.vit import VisionTransformer, ViTConfig
from ..training.optimizer import make_optimizer, optimizer_step
from ..training.scheduler import make_scheduler, warmup_cosine_schedule
from ..utils.device import set_seed

__all__ = ["DigitsData", "load_digits_data", "random_shift", "accuracy", "ViTTrainingConfig",
           "ViTResult", "train_vit"]


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
    # Weight decay on the matrices only, not on biases, norms, the patch projection, [CLS] or
    # positions.
    optimizer = make_optimizer(model, training.peak_lr, training.weight_decay)
    n_train = len(data.train_labels)
    steps_per_epoch = math.ceil(n_train / training.batch_size)
    total = training.epochs * steps_per_epoch
    warmup = min(training.warmup_epochs * steps_per_epoch, total // 2)
    schedule = warmup_cosine_schedule(warmup, total)
    scheduler = make_scheduler(optimizer, schedule)
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
            logits = model(images)  # (batch, classes)
            loss = F.cross_entropy(logits, data.train_labels[rows],
                                   label_smoothing=training.label_smoothing)
            optimizer_step(model, loss, optimizer, scheduler)
            loss_sum += loss.item() * len(rows)
            step += 1
        seconds += time.perf_counter() - started
        test_acc = accuracy(model, data.test_images, data.test_labels)
        # The rate of the epoch's last update (the scheduler has already set the next one's).
        history.append({"epoch": epoch, "seconds": seconds,
                        "lr": training.peak_lr * schedule(step - 1),
                        "train_loss": loss_sum / n_train, "test_accuracy": test_acc})
        log(f"epoch {epoch:3d}: loss {loss_sum / n_train:.4f}, test accuracy {test_acc:.1%}, "
            f"{seconds:.1f} s")
    model.eval()
    return ViTResult(model, config, training, history, seconds, history[-1]["test_accuracy"],
                     accuracy(model, data.train_images, data.train_labels), step, data)
