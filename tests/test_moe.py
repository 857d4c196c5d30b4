import pytest
import torch

from transformer_course.models.moe import MoEFeedForward, load_balancing_loss, top_k_gating


def dense_moe(moe, x):
    """Run every expert on every token, then keep the chosen ones with their gates."""
    tokens = x.reshape(-1, x.shape[-1])
    all_outputs = torch.stack([expert(tokens) for expert in moe.experts], dim=1)  # (T, E, d)
    gates, experts, _ = top_k_gating(moe.router(tokens), moe.k)
    chosen = all_outputs.gather(1, experts[..., None].expand(-1, -1, tokens.shape[-1]))
    return (gates[..., None] * chosen).sum(1).view_as(x)


def test_top_k_picks_the_largest_probabilities():
    logits = torch.randn(50, 6)
    gates, experts, probs = top_k_gating(logits, 2)
    order = logits.argsort(dim=-1, descending=True)
    assert torch.equal(experts, order[:, :2])
    torch.testing.assert_close(gates.sum(-1), torch.ones(50))  # renormalised for k = 2
    top = probs.gather(1, experts)
    torch.testing.assert_close(gates, top / top.sum(-1, keepdim=True))
    gates1, experts1, probs1 = top_k_gating(logits, 1)
    assert torch.equal(experts1[:, 0], logits.argmax(-1))
    torch.testing.assert_close(gates1[:, 0], probs1.max(-1).values)  # raw probability for k = 1
    with pytest.raises(ValueError):
        top_k_gating(logits, 7)


@pytest.mark.parametrize("k", [1, 2])
def test_moe_equals_dense_computation_of_the_chosen_experts(k):
    moe = MoEFeedForward(12, 24, num_experts=4, k=k).eval()
    x = torch.randn(3, 7, 12)
    out = moe(x)
    torch.testing.assert_close(out, dense_moe(moe, x), atol=1e-6, rtol=1e-5)
    assert moe.expert_index.shape == (21, k) and moe.dropped == 0


def test_single_expert_is_a_plain_ffn():
    moe = MoEFeedForward(8, 16, num_experts=1, k=1).eval()
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(moe(x), moe.experts[0](x))  # probability 1, gate 1


def test_balance_loss_on_constructed_cases():
    num_experts, tokens = 4, 8
    even_probs = torch.full((tokens, num_experts), 1 / num_experts)
    even_choice = torch.arange(tokens) % num_experts
    assert load_balancing_loss(even_probs, even_choice).item() == pytest.approx(1.0)
    collapsed_probs = torch.zeros(tokens, num_experts)
    collapsed_probs[:, 0] = 1.0
    collapsed = torch.zeros(tokens, dtype=torch.long)
    assert load_balancing_loss(collapsed_probs, collapsed).item() == pytest.approx(num_experts)
    # f = (1/2, 1/2, 0, 0), P = (0.4, 0.3, 0.2, 0.1): 4 * (0.2 + 0.15) = 1.4
    probs = torch.tensor([0.4, 0.3, 0.2, 0.1]).expand(tokens, -1)
    choice = torch.tensor([0, 1] * 4)
    assert load_balancing_loss(probs, choice).item() == pytest.approx(1.4)
    # only the first choice of a top-2 assignment counts
    assert load_balancing_loss(probs, torch.stack([choice, 1 - choice], 1)).item() == \
        pytest.approx(1.4)


def test_gradients_reach_router_and_experts():
    for k in (1, 2):
        moe = MoEFeedForward(8, 16, num_experts=4, k=k)
        x = torch.randn(4, 6, 8)
        moe(x).pow(2).sum().backward()
        assert moe.router.weight.grad.abs().sum() > 0  # through the gates
        used = moe.expert_index.unique().tolist()
        for e, expert in enumerate(moe.experts):
            has_grad = expert.linear1.weight.grad is not None and \
                expert.linear1.weight.grad.abs().sum() > 0
            assert has_grad == (e in used)
        moe.zero_grad()
        moe(x)
        moe.aux_loss.backward()
        assert moe.router.weight.grad.abs().sum() > 0  # the balance loss trains the router


def test_capacity_drops_overflow_tokens():
    moe = MoEFeedForward(8, 16, num_experts=2, k=1, capacity_factor=1.0).eval()
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0, 0] = 10.0  # tokens with a positive first feature go to expert 0
    x = torch.randn(1, 20, 8)
    x[0, :15, 0] = 1.0  # 15 tokens want expert 0, whose capacity is ceil(20 / 2) = 10
    x[0, 15:, 0] = -1.0
    out = moe(x)
    assert moe.capacity(20) == 10 and moe.dropped == 5
    assert (out[0, 10:15] == 0).all()  # over capacity: nothing from the expert
    torch.testing.assert_close(out[0, :10], dense_moe(moe, x)[0, :10])
    torch.testing.assert_close(out[0, 15:], dense_moe(moe, x)[0, 15:])


def test_bad_input():
    with pytest.raises(ValueError):
        MoEFeedForward(8, 16, num_experts=2, k=3)
    with pytest.raises(ValueError, match="d_model"):
        MoEFeedForward(8, 16, num_experts=2)(torch.randn(2, 3, 7))
