"""A mixture-of-experts feed-forward layer with top-k routing (chapter 15).

A dense Transformer runs every token through the same feed-forward network. A
mixture-of-experts (MoE) layer holds ``num_experts`` such networks and a *router*, a linear
layer that scores the experts for each token; only the ``k`` best-scoring experts run. The
parameters grow with the number of experts while the work per token stays that of ``k``
experts. Switch Transformers use ``k = 1``; GShard and Mixtral ``k = 2``.

Routing on its own tends to collapse onto a few experts (they get more tokens, so they train
faster, so the router prefers them even more). The load-balancing loss of the Switch
Transformer, :func:`load_balancing_loss`, is added to the training loss to keep the experts
evenly used. With a ``capacity_factor``, each expert processes at most
``capacity_factor * tokens * k / num_experts`` tokens per batch, as on real hardware where
every expert gets a buffer of fixed size; tokens beyond it are dropped by that expert (their
residual connection carries them on unchanged).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .feedforward import PositionwiseFeedForward

__all__ = ["top_k_gating", "load_balancing_loss", "MoEFeedForward"]


def top_k_gating(
    logits: Tensor, k: int, renormalize: bool | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Choose the ``k`` experts with the highest router probability for each token.

    Args:
        logits: router scores ``(tokens, num_experts)``.
        k: experts per token, ``1 <= k <= num_experts``.
        renormalize: divide the chosen probabilities by their sum (GShard, Mixtral). Defaults
            to ``k > 1``: with ``k = 1`` renormalising would make every gate exactly 1, and the
            router would receive no gradient from the output (the Switch Transformer keeps the
            raw probability).

    Returns:
        ``gates`` ``(tokens, k)``, the weights of the chosen experts, ``experts``
        ``(tokens, k)`` int64, their indices, best first, and ``probs``
        ``(tokens, num_experts)``, the full softmax (for the balancing loss).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be (tokens, num_experts), got {tuple(logits.shape)}")
    num_experts = logits.shape[-1]
    if not 1 <= k <= num_experts:
        raise ValueError(f"k must be between 1 and num_experts={num_experts}, got {k}")
    renormalize = k > 1 if renormalize is None else renormalize
    probs = F.softmax(logits, dim=-1)  # (tokens, num_experts)
    gates, experts = probs.topk(k, dim=-1)  # (tokens, k) each, sorted best first
    if renormalize:
        gates = gates / gates.sum(dim=-1, keepdim=True)
    return gates, experts, probs


def load_balancing_loss(probs: Tensor, experts: Tensor) -> Tensor:
    """The Switch Transformer's auxiliary loss ``N * sum_i f_i * P_i``.

    ``f_i`` is the fraction of tokens whose *first* choice is expert ``i`` and ``P_i`` the mean
    router probability of expert ``i``, over the ``N`` experts. Both are ``1/N`` when the
    experts are used evenly, and the loss is then exactly 1; it grows towards ``N`` as routing
    collapses onto one expert. ``f`` is a count and has no gradient; the gradient flows
    through ``P``, pushing probability away from the overloaded experts.

    Args:
        probs: ``(tokens, num_experts)`` router probabilities.
        experts: ``(tokens,)`` or ``(tokens, k)`` chosen experts, best first.
    """
    if probs.dim() != 2:
        raise ValueError(f"probs must be (tokens, num_experts), got {tuple(probs.shape)}")
    first = experts if experts.dim() == 1 else experts[:, 0]  # (tokens,)
    if first.shape[0] != probs.shape[0]:
        raise ValueError(
            f"experts has {first.shape[0]} tokens, probs {probs.shape[0]}"
        )
    num_experts = probs.shape[-1]
    counts = torch.bincount(first, minlength=num_experts).to(probs.dtype)  # (num_experts,)
    fraction = counts / first.shape[0]  # f_i
    mean_prob = probs.mean(dim=0)  # P_i, (num_experts,)
    return num_experts * (fraction * mean_prob).sum()


class MoEFeedForward(nn.Module):
    """A drop-in replacement for
    :class:`~transformer_course.models.feedforward.PositionwiseFeedForward` with
    ``num_experts`` expert networks and top-``k`` routing.

    ``output[t] = sum over the k chosen experts e of gate[t, e] * expert_e(x[t])``.

    After each forward pass, ``aux_loss`` holds the load-balancing loss of the batch (add
    ``alpha * aux_loss`` to the training loss; the Switch Transformer uses ``alpha = 0.01``),
    ``expert_index`` the ``(tokens, k)`` choices and ``dropped`` how many (token, expert)
    assignments were over capacity.

    Args:
        d_model, d_ff, dropout, activation: as for ``PositionwiseFeedForward``, per expert.
        num_experts: how many experts.
        k: experts per token.
        capacity_factor: None for no limit, else the buffer of each expert, in multiples of
            an even share ``tokens * k / num_experts``.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        num_experts: int,
        k: int = 1,
        dropout: float = 0.0,
        activation: str = "relu",
        capacity_factor: float | None = None,
    ):
        super().__init__()
        if num_experts < 1 or not 1 <= k <= num_experts:
            raise ValueError(f"need 1 <= k <= num_experts, got k={k}, num_experts={num_experts}")
        if capacity_factor is not None and capacity_factor <= 0:
            raise ValueError(f"capacity_factor must be positive, got {capacity_factor}")
        self.d_model = d_model
        self.num_experts = num_experts
        self.k = k
        self.capacity_factor = capacity_factor
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.experts = nn.ModuleList(
            PositionwiseFeedForward(d_model, d_ff, dropout, activation) for _ in range(num_experts)
        )
        self.aux_loss: Tensor | None = None
        self.expert_index: Tensor | None = None
        self.dropped = 0

    def capacity(self, num_tokens: int) -> int | None:
        """Most (token, expert) assignments one expert takes in a batch, or None (no limit)."""
        if self.capacity_factor is None:
            return None
        return math.ceil(self.capacity_factor * num_tokens * self.k / self.num_experts)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, seq_len, d_model)`` -> ``(batch, seq_len, d_model)``."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(
                f"x must be (batch, seq_len, d_model={self.d_model}), got {tuple(x.shape)}"
            )
        tokens = x.reshape(-1, self.d_model)  # (T, d_model): routing ignores the batch layout
        gates, experts, probs = top_k_gating(self.router(tokens), self.k)  # (T, k) (T, k) (T, E)
        self.aux_loss = load_balancing_loss(probs, experts)
        self.expert_index = experts.detach()
        capacity = self.capacity(tokens.shape[0])
        output = torch.zeros_like(tokens)  # (T, d_model)
        self.dropped = 0
        for e, expert in enumerate(self.experts):
            # Every (token, slot) pair routed to expert e, in token order.
            token_ids, slot = (experts == e).nonzero(as_tuple=True)  # (n_e,) each
            if capacity is not None and token_ids.numel() > capacity:
                self.dropped += token_ids.numel() - capacity
                token_ids, slot = token_ids[:capacity], slot[:capacity]  # first come, first served
            if token_ids.numel() == 0:
                continue
            result = expert(tokens[token_ids])  # (n_e, d_model): only the routed tokens
            output.index_add_(0, token_ids, gates[token_ids, slot, None] * result)
        return output.view_as(x)  # (batch, seq_len, d_model)
