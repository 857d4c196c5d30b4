"""Deliberately wrong submissions, one list per assignment, for tests/test_assignments.py.

Each mutation edits the reference solution (``solutions/<assignment>/<assignment>.ipynb``) by
replacing ``old``, which must occur exactly once in the notebook, with ``new``: one of the
mistakes students really make. Autograding the result must lose points on exactly the tasks
in ``loses``, named by their answer cell's ``grade_id`` (task ``softmax`` is graded by the test
cell ``softmax_tests``), and keep full marks on every other autograded task.

To add the assignment of a new chapter, write ``solutions/<assignment>/<assignment>.ipynb`` and
add an entry here with at least two mutations; the tests find the assignment on their own.
"""

from typing import NamedTuple


class Mutation(NamedTuple):
    description: str
    old: str
    new: str
    loses: tuple[str, ...]


MUTATIONS: dict[str, list[Mutation]] = {
    "ch01_introduction": [
        Mutation("softmax normalised over the last axis whatever dim says",
                 "return e / e.sum(dim=dim, keepdim=True)",
                 "return e / e.sum(dim=-1, keepdim=True)", ("softmax",)),
        Mutation("scores not divided by sqrt(d_k)",
                 "scores = keys @ query / math.sqrt(d_k)",
                 "scores = keys @ query", ("attend",)),
        Mutation("scores divided by d_k instead of its square root",
                 "scores = keys @ query / math.sqrt(d_k)",
                 "scores = keys @ query / d_k", ("attend",)),
        Mutation("RNN path length off by one (seq_len instead of seq_len - 1)",
                 'return seq_len - 1 if layer == "rnn" else 1',
                 'return seq_len if layer == "rnn" else 1', ("costs",)),
    ],
    "ch02_attention": [
        Mutation("naive softmax: no subtraction of the maximum, overflows on large scores",
                 "shifted = x - x.amax(dim=dim, keepdim=True)",
                 "shifted = x", ("stable_softmax",)),
        Mutation("causal mask off by one: a position may not attend to itself",
                 "torch.ones(size, size, dtype=torch.bool).tril()",
                 "torch.ones(size, size, dtype=torch.bool).tril(diagonal=-1)", ("masks",)),
        Mutation("scores not divided by sqrt(d_k)",
                 "scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)",
                 "scores = query @ key.transpose(-2, -1)", ("attention",)),
        Mutation("softmax over the queries (dim=-2) instead of the keys",
                 "weights = torch.softmax(scores, dim=-1)",
                 "weights = torch.softmax(scores, dim=-2)", ("attention",)),
        Mutation("mask with the wrong polarity: blocks the keys that may be attended to",
                 "scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)",
                 "scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)",
                 ("attention",)),
        Mutation("fully masked rows not zeroed: they get uniform weights",
                 "weights = weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)",
                 "pass", ("attention",)),
        Mutation("entropy in bits (log base 2) instead of nats",
                 "return -torch.special.xlogy(weights, weights).sum(dim=-1)",
                 "return -torch.special.xlogy(weights, weights).sum(dim=-1) / math.log(2)",
                 ("entropy", "scaling")),
    ],
    "ch03_multihead_attention": [
        Mutation("split into heads with view alone, without the transpose",
                 "return x.view(batch, seq_len, num_heads, d_model // num_heads).transpose(1, 2)",
                 "return x.view(batch, num_heads, seq_len, d_model // num_heads)",
                 ("heads", "mha")),
        Mutation("heads merged with reshape alone, without transposing back",
                 "return x.transpose(1, 2).reshape(batch, seq_len, num_heads * d_k)",
                 "return x.reshape(batch, seq_len, num_heads * d_k)", ("heads", "mha")),
        Mutation("output projection W_O forgotten",
                 'return project(merge_heads(heads), "W_O"), weights',
                 "return merge_heads(heads), weights", ("mha",)),
        Mutation("one bias vector counted instead of one per projection",
                 "biases = 4 * d_model if bias else 0",
                 "biases = d_model if bias else 0", ("count",)),
    ],
    "ch04_positional_encoding": [
        Mutation("sines and cosines swapped",
                 "table[:, 0::2] = torch.sin(angles)\n    table[:, 1::2] = torch.cos(angles)",
                 "table[:, 0::2] = torch.cos(angles)\n    table[:, 1::2] = torch.sin(angles)",
                 ("table",)),
        Mutation("frequency exponent i / d_model instead of 2i / d_model",
                 "two_i = torch.arange(0, d_model, 2, dtype=torch.float32)",
                 "two_i = torch.arange(0, d_model // 2, dtype=torch.float32)", ("table",)),
        Mutation("output of the original order not shuffled before comparing",
                 "return (model(shuffled) - model(x)[:, perm]).abs().max().item()",
                 "return (model(shuffled) - model(x)).abs().max().item()", ("equivariance",)),
        Mutation("length check off by one: a sequence of exactly max_len is refused",
                 "if seq_len > self.max_len:",
                 "if seq_len >= self.max_len:", ("learned",)),
        Mutation("token embeddings not multiplied by sqrt(d_model)",
                 "scaled = embedding_weight[tokens] * math.sqrt(d_model)",
                 "scaled = embedding_weight[tokens]", ("input",)),
    ],
}
