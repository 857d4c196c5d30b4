"""The optimizer and one update: which parameters get weight decay, AdamW built from those two
groups, and the step every training loop repeats (chapter 10).

A training loop stays written out where it is used; :func:`optimizer_step` is its last five
lines, the ones that are the same in every loop:

    for batch in batches:
        loss = criterion(model(batch.x), batch.y)  # forward: the recipe's own business
        optimizer_step(model, loss, optimizer, scheduler, clip_norm=1.0)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["NO_DECAY_NAMES", "parameter_groups", "make_optimizer", "optimizer_step"]


# --- weight decay: on the matrices only ---------------------------------------------------------

# Parameters whose name contains one of these are embeddings, and are not decayed: the token and
# position tables (``token_embed``, ``pos_embed``), a ViT's patch projection (``patch_embed``,
# a Linear layer, but the embedding of the image) and its ``[CLS]`` vector (``cls_token``).
NO_DECAY_NAMES = ("embed", "token")


def parameter_groups(
    model: nn.Module, weight_decay: float, no_decay_names: tuple[str, ...] = NO_DECAY_NAMES
) -> list[dict]:
    """The two AdamW parameter groups: ``[decay, no decay]``.

    Decayed (``weight_decay``): every trainable tensor of 2 or more dimensions, i.e. the weight
    matrices of the Linear layers, apart from embeddings (names containing one of
    ``no_decay_names``). Not decayed (0.0): biases and LayerNorm gains and shifts (1-D: they
    set a scale or an offset, and pulling them to 0 would switch features off rather than
    keep the model simple) and embeddings (a row of a token table gets gradient only when its
    token occurs, but would be shrunk at every step, so rare tokens would fade away).

    Each parameter appears once, even when it is shared (a tied output layer is the token
    embedding, so it is not decayed either). Both groups are always there (one may be empty),
    so ``param_groups[0]`` is always the decayed one.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():  # shared parameters are listed once
        if not param.requires_grad:
            continue
        if param.dim() >= 2 and not any(word in name for word in no_decay_names):
            decay.append(param)
        else:
            no_decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    no_decay_names: tuple[str, ...] = NO_DECAY_NAMES,
) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`: decoupled weight decay on the matrices only.

    ``lr`` is the peak learning rate; a schedule (:mod:`.scheduler`) multiplies it. The
    defaults of ``betas`` and ``eps`` are PyTorch's; the original Transformer used
    ``betas=(0.9, 0.98), eps=1e-9``.
    """
    groups = parameter_groups(model, weight_decay, no_decay_names)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


# --- one update -----------------------------------------------------------------------------------


def optimizer_step(
    model: nn.Module,
    loss: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None = None,
    clip_norm: float | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> Tensor | None:
    """One update from ``loss``: clear the old gradients, backpropagate, clip the global
    gradient norm to ``clip_norm``, step the optimizer, then the schedule.

    With a ``scaler`` (float16 mixed precision), the loss is scaled before backpropagating
    and the gradients unscaled before they are clipped; the scaler skips the step if any
    gradient overflowed. ``scheduler.step()`` comes after ``optimizer.step()``: the rate
    ``scheduler`` sets now is the one the *next* update uses.

    Returns the global gradient norm before clipping, a 0-d tensor (``None`` without
    ``clip_norm``); ``.item()`` it to log it: not done here, so that a GPU need not wait.
    """
    optimizer.zero_grad(set_to_none=True)  # gradients add up in .grad unless cleared
    if scaler is not None:
        scaler.scale(loss).backward()  # gradients of S * loss: small ones survive float16
        scaler.unscale_(optimizer)  # divide by S in place, so that clipping sees true norms
    else:
        loss.backward()
    grad_norm = None
    if clip_norm is not None:
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
    if scaler is not None:
        scaler.step(optimizer)  # skipped if an inf/nan gradient was found
        scaler.update()  # adjust S
    else:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return grad_norm
