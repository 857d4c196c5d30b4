"""The training toolkit every recipe uses: parameter groups, AdamW, one optimizer step and the
warm-up schedules (training/optimizer.py, training/scheduler.py)."""

import copy
import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from transformer_course.models.gpt import GPT, GPTConfig
from transformer_course.models.normalization import LayerNorm
from transformer_course.models.vit import VisionTransformer, ViTConfig
from transformer_course.training.optimizer import (
    make_optimizer,
    optimizer_step,
    parameter_groups,
)
from transformer_course.training.scheduler import (
    make_scheduler,
    warmup_constant_schedule,
    warmup_cosine,
    warmup_cosine_schedule,
)


class Block(nn.Module):
    """Token embedding -> Linear -> our LayerNorm -> nn.LayerNorm -> output tied to the table."""

    def __init__(self):
        super().__init__()
        self.token_embed = nn.Embedding(10, 8)
        self.linear = nn.Linear(8, 8)
        self.norm = LayerNorm(8)
        self.torch_norm = nn.LayerNorm(8)
        self.out = nn.Linear(8, 10, bias=False)
        self.out.weight = self.token_embed.weight  # tied: one parameter under two names

    def forward(self, tokens):  # (batch, seq) -> (batch, seq, 10)
        return self.out(self.torch_norm(self.norm(self.linear(self.token_embed(tokens)))))


def names_of(model, group):
    ids = {id(p) for p in group["params"]}
    return {n for n, p in model.named_parameters() if id(p) in ids}


# --- parameter groups ---------------------------------------------------------------------------


def test_only_the_linear_matrices_are_decayed():
    model = Block()
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert names_of(model, decay) == {"linear.weight"}
    assert names_of(model, no_decay) == {"token_embed.weight", "linear.bias", "norm.gamma",
                                         "norm.beta", "torch_norm.weight", "torch_norm.bias"}
    # Every parameter once: the tied output layer is the embedding, listed a single time.
    everything = decay["params"] + no_decay["params"]
    assert len(everything) == len({id(p) for p in everything}) == len(list(model.parameters()))


def test_frozen_parameters_are_left_out():
    model = Block()
    model.linear.weight.requires_grad_(False)
    decay, no_decay = parameter_groups(model, 0.1)
    assert decay["params"] == [] and len(no_decay["params"]) == 6
    make_optimizer(model, 1e-3, 0.1)  # an empty group is allowed


@pytest.mark.parametrize("make_model, skip", [
    (lambda: GPT(GPTConfig(vocab_size=20, context_length=8, d_model=16, num_heads=2,
                           num_layers=2)), ("embed",)),
    (lambda: VisionTransformer(ViTConfig(d_model=16, num_heads=2, num_layers=2)),
     ("embed", "token")),
])
def test_the_groups_are_those_the_recipes_built_by_hand(make_model, skip):
    """TinyTalks decayed the >= 2-D tensors without "embed" in their name, the ViT those without
    "embed" or "token": the shared rule gives each the same groups, so results are unchanged."""
    model = make_model()
    by_hand = {n for n, p in model.named_parameters()
               if p.dim() >= 2 and not any(word in n for word in skip)}
    decay, no_decay = parameter_groups(model, 0.05)
    assert names_of(model, decay) == by_hand
    assert names_of(model, no_decay) == {n for n, _ in model.named_parameters()} - by_hand


def test_vit_embeddings_cls_and_positions_are_not_decayed():
    model = VisionTransformer(ViTConfig(d_model=16, num_heads=2, num_layers=1))
    no_decay = names_of(model, parameter_groups(model, 0.05)[1])
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight",
            "encoder.layers.0.norm1.gamma", "head.bias"} <= no_decay
    assert "encoder.layers.0.self_attn.W_Q.weight" not in no_decay


def test_adamw_decays_the_matrices_and_nothing_else():
    model = Block()
    optimizer = make_optimizer(model, lr=0.1, weight_decay=0.5, betas=(0.8, 0.9), eps=1e-6)
    assert isinstance(optimizer, torch.optim.AdamW)
    for group in optimizer.param_groups:
        assert (group["lr"], group["betas"], group["eps"]) == (0.1, (0.8, 0.9), 1e-6)
    before = copy.deepcopy(model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # Adam's own update is 0: only the decay moves anything
    optimizer.step()
    assert_close(model.linear.weight, before.linear.weight * (1 - 0.1 * 0.5))
    for name in ("token_embed.weight", "linear.bias", "norm.gamma", "norm.beta",
                 "torch_norm.weight"):
        assert torch.equal(model.get_parameter(name), before.get_parameter(name)), name


# --- one optimizer step -------------------------------------------------------------------------


def loss_of(model, seed=0):
    tokens = torch.randint(0, 10, (4, 5), generator=torch.Generator().manual_seed(seed))
    return model(tokens).square().mean() * 100  # large gradients: clipping has work to do


def global_norm(model):
    return torch.stack([p.grad.norm() for p in model.parameters()]).norm()


def test_a_step_is_zero_grad_backward_clip_step_schedule():
    model = Block()
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    sched = make_scheduler(opt, warmup_cosine_schedule(2, 10))
    twin_sched = make_scheduler(twin_opt, warmup_cosine_schedule(2, 10))
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)  # stale gradients must not be added to the new ones
    for seed in range(3):
        norm = optimizer_step(model, loss_of(model, seed), opt, sched, clip_norm=1.0)
        twin_opt.zero_grad()
        loss_of(twin, seed).backward()
        expected = nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
        twin_opt.step()
        twin_sched.step()
        assert norm.item() == pytest.approx(expected.item()) and norm.item() > 1.0
        assert global_norm(model).item() == pytest.approx(1.0, rel=1e-4)  # clipped, kept
        for p, q in zip(model.parameters(), twin.parameters(), strict=True):
            assert_close(p, q)
    assert sched.last_epoch == 3  # one schedule step per update


def test_without_clip_norm_the_gradients_are_left_alone():
    model = Block()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    assert optimizer_step(model, loss_of(model), opt) is None
    assert global_norm(model).item() > 1.0


def test_the_first_update_uses_the_first_rate_of_the_schedule():
    """Update k uses peak * multiplier(k): the scheduler steps after the optimizer."""
    param = nn.Parameter(torch.zeros(1))
    model = nn.ParameterList([param])
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    multiplier = warmup_cosine_schedule(4, 10)
    sched = make_scheduler(opt, multiplier)
    moves = []
    for _ in range(6):
        before = param.item()
        optimizer_step(model, -param.sum(), opt, sched)  # gradient -1: moves by +lr
        moves.append(param.item() - before)
    assert moves == pytest.approx([multiplier(k) for k in range(6)])
    assert moves[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_a_grad_scaler_is_unscaled_before_clipping():
    try:
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    except (AttributeError, RuntimeError, TypeError):
        pytest.skip("this PyTorch has no CPU GradScaler")
    model = Block()
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1)
    norm = optimizer_step(model, loss_of(model), opt, clip_norm=1.0, scaler=scaler)
    expected = optimizer_step(twin, loss_of(twin), twin_opt, clip_norm=1.0)
    assert norm.item() == pytest.approx(expected.item(), rel=1e-4)  # true, not 1024x, norms
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert_close(p, q)


# --- warm-up schedules --------------------------------------------------------------------------


def test_warmup_cosine_counts_updates_from_zero():
    assert [warmup_cosine(s, 4, 0.0) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert warmup_cosine(10, 4, 0.5) == pytest.approx(0.5)
    assert warmup_cosine(10, 4, 1.0) == pytest.approx(0.0)
    assert warmup_cosine(10, 4, 1.0, min_ratio=0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 0, 0.0) == 1.0  # no warm-up: the full rate at once
    # The decay follows progress, not the step: a time budget half used is half way down.
    assert warmup_cosine(5, 4, 0.5) == warmup_cosine(500, 4, 0.5)


def test_warmup_cosine_schedule_is_warmup_cosine_over_the_steps_after_the_warmup():
    f = warmup_cosine_schedule(3, 13)
    for step in range(14):
        progress = max(0.0, (step - 3) / 10)
        assert f(step) == warmup_cosine(step, 3, progress)
    assert f(13) == pytest.approx(0.0) and f(50) == pytest.approx(0.0)  # stays at the end
    assert math.isclose(f(8), 0.5)


def test_warmup_constant_schedule_warms_up_then_stays():
    f = warmup_constant_schedule(4)
    assert [f(s) for s in range(7)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    assert warmup_constant_schedule(1)(0) == 1.0
    with pytest.raises(ValueError):
        warmup_constant_schedule(0)
