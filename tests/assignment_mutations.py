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
    "ch05_tokenization": [
        Mutation("pairs counted once per occurrence, not weighted by the word's count",
                 "pair_counts[pair] = pair_counts.get(pair, 0) + count",
                 "pair_counts[pair] = pair_counts.get(pair, 0) + 1",
                 ("count_pairs", "train_bpe")),
        Mutation("merge scanned from right to left: ('a', 'a', 'a') becomes ('a', 'aa')",
                 "        i = 0\n"
                 "        while i < len(symbols):\n"
                 "            if symbols[i:i + 2] == pair:\n"
                 "                new_symbols.append(merged_symbol)\n"
                 "                i += 2  # the right symbol is used up\n"
                 "            else:\n"
                 "                new_symbols.append(symbols[i])\n"
                 "                i += 1\n",
                 "        i = len(symbols)\n"
                 "        while i > 0:\n"
                 "            if symbols[max(i - 2, 0):i] == pair:\n"
                 "                new_symbols.insert(0, merged_symbol)\n"
                 "                i -= 2\n"
                 "            else:\n"
                 "                new_symbols.insert(0, symbols[i - 1])\n"
                 "                i -= 1\n",
                 ("merge_pair", "train_bpe")),
        Mutation("ties broken by the order the pairs were counted in, not by their strings",
                 "best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))",
                 "best = max(pair_counts, key=pair_counts.get)", ("train_bpe",)),
        Mutation("min_frequency off by one: a pair seen exactly min_frequency times is refused",
                 "if pair_counts[best] < min_frequency:",
                 "if pair_counts[best] <= min_frequency:", ("train_bpe",)),
        Mutation("encoding merges the leftmost known pair instead of the earliest-learned one",
                 "best = min(adjacent, key=lambda pair: ranks.get(pair, len(ranks)))",
                 "best = next((pair for pair in adjacent if pair in ranks), None)",
                 ("encode_word",)),
    ],
    "ch06_feedforward_normalization": [
        Mutation("unbiased variance (torch.var's default, divided by d - 1) in LayerNorm",
                 "variance = centred.pow(2).mean(dim=-1, keepdim=True)",
                 "variance = x.var(dim=-1, keepdim=True)", ("layer_norm",)),
        Mutation("epsilon added outside the square root",
                 "x_hat = centred / torch.sqrt(variance + eps)",
                 "x_hat = centred / (torch.sqrt(variance) + eps)", ("layer_norm",)),
        Mutation("GELU's tanh approximation instead of the exact x * Phi(x)",
                 "hidden = hidden * 0.5 * (1.0 + torch.erf(hidden / math.sqrt(2.0)))",
                 "hidden = 0.5 * hidden * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi)"
                 " * (hidden + 0.044715 * hidden**3)))", ("ffn",)),
        Mutation("FFN parameters counted without the biases",
                 "biases = d_ff + d_model if bias else 0",
                 "biases = 0", ("count",)),
        Mutation("post-norm and pre-norm swapped",
                 "return x + sublayer(norm(x))  # pre-norm: the stream itself is never normalized"
                 "\n    return norm(x + sublayer(x))  # post-norm",
                 "return norm(x + sublayer(x))  # post-norm"
                 "\n    return x + sublayer(norm(x))  # pre-norm", ("residual",)),
    ],
    "ch07_encoder": [
        Mutation("pre-norm residual added to the normalized copy instead of the stream",
                 "x = x + self_attn(h, h, h, mask)[0]",
                 "x = h + self_attn(h, h, h, mask)[0]", ("layer",)),
        Mutation("course mask passed to PyTorch without inverting it (True = padding there)",
                 "key_padding_mask = None if mask is None else ~mask[:, 0, 0]",
                 "key_padding_mask = None if mask is None else mask[:, 0, 0]", ("layer",)),
        Mutation("padding mask off by one: position `length` counted as a real token",
                 "real = positions[None, :] < lengths[:, None]",
                 "real = positions[None, :] <= lengths[:, None]", ("mask",)),
        Mutation("padding put on the left of the sentence instead of the right",
                 "torch.tensor([sentence + [pad_id] * num_padding])",
                 "torch.tensor([[pad_id] * num_padding + sentence])", ("invariance",)),
        Mutation("LayerNorm counted with its scale only, its shift beta forgotten",
                 "one_norm = 2 * d_model if bias else d_model",
                 "one_norm = d_model", ("count",)),
    ],
    "ch08_decoder": [
        Mutation("causal mask off by one: a position may not attend to itself",
                 "allowed.tril(diagonal=key_len - query_len)",
                 "allowed.tril(diagonal=key_len - query_len - 1)", ("masks",)),
        Mutation("causal and padding masks combined with OR instead of AND",
                 "return real_keys & causal", "return real_keys | causal", ("masks",)),
        Mutation("shift right forgets </s>: tgt_out is the target and padding only",
                 "tgt_out[torch.arange(batch), lengths] = eos_id", "pass", ("shift",)),
        Mutation("cross-attention mask built from the target instead of the source",
                 "make_padding_mask(batch.src, batch.pad_id)",
                 "make_padding_mask(batch.tgt_in, batch.pad_id)", ("cross",)),
        Mutation("causality test compares positions 0..t-1, leaving out position t",
                 "past = difference[:, : t + 1].max().item()",
                 "past = difference[:, :t].max().item()", ("causality",)),
    ],
    "ch09_generation": [
        Mutation("logits multiplied by the temperature instead of divided",
                 "scaled = logits.float() / temperature",
                 "scaled = logits.float() * temperature", ("sampling",)),
        Mutation("top-k applied to the probabilities after the softmax, without renormalising",
                 'scaled = scaled.masked_fill(scaled < kth_largest, float("-inf"))',
                 "return torch.softmax(scaled, dim=-1).masked_fill(scaled < kth_largest, 0.0)",
                 ("sampling",)),
        Mutation("beam step forgets the hypotheses' running scores",
                 "candidates = beam_scores[:, None] + log_probs",
                 "candidates = log_probs", ("beam_step",)),
        Mutation("beam step takes the top k of each hypothesis, beam by beam, not over all",
                 "top_scores, flat_index = candidates.flatten().topk(n_best)",
                 "top_scores, token_index = candidates.topk(min(beam_size, vocab), dim=-1)\n"
                 "    flat_index = (torch.arange(live)[:, None] * vocab + token_index).flatten()\n"
                 "    top_scores = top_scores.flatten()", ("beam_step",)),
        Mutation("cached decoding feeds the whole sequence again at every step",
                 "step_input = next_token if use_cache else tokens",
                 "step_input = tokens", ("kv_cache",)),
    ],
    "ch10_training": [
        Mutation("smoothing spread over the V - 1 wrong ids with 1 - eps on the target, not "
                 "eps / V over all ids as F.cross_entropy does",
                 "uniform_share = smoothing / vocab_size  # what every id gets from the smoothing\n"
                 "    q = torch.full((*target.shape, vocab_size), uniform_share)  # (..., V)\n"
                 "    on_target = torch.full((*target.shape, 1), 1.0 - smoothing)  # (..., 1)\n"
                 "    q = q.scatter_add(-1, safe_target.unsqueeze(-1), on_target)  # (..., V)",
                 "uniform_share = smoothing / (vocab_size - 1)  # over the V - 1 wrong ids\n"
                 "    q = torch.full((*target.shape, vocab_size), uniform_share)  # (..., V)\n"
                 "    on_target = torch.full((*target.shape, 1), 1.0 - smoothing)  # (..., 1)\n"
                 "    q = q.scatter(-1, safe_target.unsqueeze(-1), on_target)  # (..., V)",
                 ("label_smoothing",)),
        Mutation("padding positions counted in the mean of the loss",
                 "return per_position[is_real].mean()  # the mean over real tokens only",
                 "return per_position.mean()  # the mean over every position",
                 ("label_smoothing",)),
        Mutation("warm-up peak one step late (step / w): the first update gets learning rate 0",
                 "return (step + 1) / warmup_steps",
                 "return step / warmup_steps", ("schedules",)),
        Mutation("each gradient tensor clipped by its own norm instead of the global norm",
                 "gradient.mul_(scale)",
                 "gradient.mul_((max_norm / (gradient.norm() + 1e-6)).clamp(max=1.0))",
                 ("clipping",)),
        Mutation("PyTorch's random generator state not restored: other dropout masks on resume",
                 'torch.set_rng_state(checkpoint["rng"]["torch"])',
                 "pass", ("checkpoint",)),
    ],
    "ch11_evaluation": [
        Mutation("clipped by the sum of the reference counts instead of their maximum",
                 "max_reference_counts[gram] = max(max_reference_counts[gram], count)",
                 "max_reference_counts[gram] += count", ("clipped",)),
        Mutation("shortest reference length instead of the closest",
                 "return min(ref_lens, key=lambda ref_len: (abs(ref_len - hyp_len), ref_len))",
                 "return min(ref_lens)", ("brevity",)),
        Mutation("brevity penalty applied to long hypotheses too (BP > 1)",
                 "if hyp_len >= ref_len:",
                 "if hyp_len == ref_len:", ("brevity",)),
        Mutation("corpus BLEU as the mean of the sentence BLEUs",
                 "return bleu_from_statistics(corpus_stats, max_n)",
                 "return sum(bleu_from_statistics(s, max_n) for s in sentence_stats)"
                 " / len(sentence_stats)", ("corpus",)),
        Mutation("precisions averaged arithmetically instead of geometrically",
                 "return 100 * bp * math.exp(log_mean)",
                 "return 100 * bp * sum(m / t for m, t in zip(matches, totals)) / max_n",
                 ("corpus",)),
    ],
    "ch12_data_pipeline": [
        Mutation("OOV rate over the distinct test words (types) instead of the running words",
                 "word_rate = sum(sum(flags) for flags in unseen) / num_words",
                 "types = {word for words in test_words for word in words}\n"
                 "    word_rate = len(types - vocabulary) / len(types)", ("statistics",)),
        Mutation("decoder target without </s>: the model never learns to stop",
                 "tgt_out[row, : len(target) + 1] = torch.tensor(target + [eos_id])",
                 "tgt_out[row, : len(target)] = torch.tensor(target)", ("collate",)),
        Mutation("decoder mask causal only: padded keys of tgt_in not masked",
                 "tgt_mask = (tgt_in != pad_id)[:, None, None, :] & causal",
                 "tgt_mask = causal.expand(batch, 1, tgt_len, tgt_len)", ("collate",)),
        Mutation("token budget without the + 1 for <s> or </s>: batches over budget",
                 "cost = (lengths[index] + 1) * (len(current) + 1)",
                 "cost = lengths[index] * (len(current) + 1)", ("budget",)),
        Mutation("BPE-dropout applies the leftmost kept merge, not the earliest-learned one",
                 "_, i = min(kept)", "i = min(i for _, i in kept)", ("dropout",)),
    ],
    "ch13_model_training": [
        Mutation("output projection counted even when it is tied to the embeddings",
                 '"output": 0 if config.tie_output else config.tgt_vocab_size * d,',
                 '"output": config.tgt_vocab_size * d,', ("count",)),
        Mutation("first checkpoint summed into in place, without a copy: the input changes",
                 "total = value.clone()", "total = value", ("average",)),
        Mutation("warm-up not capped at a quarter of the run",
                 "warmup = min(warmup_steps, total // 4)\n    steps = torch.arange",
                 "warmup = warmup_steps\n    steps = torch.arange", ("schedule",)),
        Mutation("cosine decay spread over T steps instead of the T - w after the warm-up",
                 "progress = ((steps - warmup) / (total - warmup)).clamp(0, 1)",
                 "progress = ((steps - warmup) / total).clamp(0, 1)", ("schedule",)),
        Mutation("the history's cumulative step count taken as the steps of each epoch",
                 "steps = [after - before for before, after in pairwise(cumulative)]",
                 "steps = cumulative[1:]", ("throughput",)),
    ],
    "ch14_evaluation_analysis": [
        Mutation("a bucket's BLEU as the mean of its sentence BLEUs",
                 "(len(members), metrics.bleu_from_statistics(total).score)",
                 "(len(members), sum(metrics.sentence_bleu(hypotheses[i], references[i]).score\n"
                 "                                          for i in members) / len(members))",
                 ("bucket",)),
        Mutation("bootstrap not paired: system B scored on resamples of its own",
                 "resampled_b = counts @ stats_b  # the same resampled test sets: paired",
                 "resampled_b = stats_b[torch.randint(n, (resamples, n), generator=generator)]"
                 ".sum(dim=1)", ("bootstrap",)),
        Mutation("output split at spaces: punctuation stays on the words ('handy.' is not 'handy')",
                 "for word in words(output):",
                 "for word in output.lower().split():", ("detector",)),
        Mutation("precision and recall divided by each other's denominator",
                 "precision = true_positives / num_flagged if num_flagged else 0.0\n"
                 "    recall = true_positives / num_labelled if num_labelled else 0.0",
                 "precision = true_positives / num_labelled if num_labelled else 0.0\n"
                 "    recall = true_positives / num_flagged if num_flagged else 0.0",
                 ("evaluate",)),
        Mutation("alignment: most attended piece first, then its word (pieces not summed)",
                 "return word_weights.argmax(dim=-1), source_words",
                 "return word_of_piece[mean.argmax(dim=-1)], source_words", ("alignment",)),
    ],
    "ch15_advanced_architectures": [
        Mutation("ALiBi slopes of a non-power-of-two head count computed as for a power of two",
                 "slopes = geometric(power) + geometric(2 * power)[0::2][: num_heads - power]",
                 "slopes = geometric(num_heads)", ("alibi",)),
        Mutation("RoPE applied to the values as well as to the queries and keys",
                 "return scaled_dot_product_attention(rotated_query, rotated_key, value, mask)",
                 "return scaled_dot_product_attention(rotated_query, rotated_key,"
                 " apply_rope(value, torch.arange(k_len)), mask)", ("rope",)),
        Mutation("offset test moves the queries only, which changes every offset",
                 "rotate(key, k_positions + shift)", "rotate(key, k_positions)", ("offset",)),
        Mutation("dilated window off by one: the farthest key, window * dilation back, left out",
                 "(distance <= window * dilation)", "(distance < window * dilation)",
                 ("sparse",)),
        Mutation("load-balancing loss with the mean probabilities instead of the dispatch fraction",
                 "dispatch = F.one_hot(first, num_experts).to(probs.dtype).mean(dim=0)  # (N,): f",
                 "dispatch = probs.mean(dim=0)  # (N,): f", ("moe",)),
    ],
    "ch16_modern_variants": [
        Mutation("80/10/10 applied as 80/20/0: every selected token not [MASK]ed is randomised",
                 "to_random = selected & (choice >= mask_token_prob) & (\n"
                 "        choice < mask_token_prob + random_token_prob)",
                 "to_random = selected & (choice >= mask_token_prob)", ("masking",)),
        Mutation("padding and special tokens may be selected for prediction",
                 "selected = (torch.rand(tokens.shape, generator=generator) < mask_prob)"
                 " & eligible",
                 "selected = torch.rand(tokens.shape, generator=generator) < mask_prob",
                 ("masking",)),
        Mutation("patch vectors in pixel order with the channels last, not Conv2d's layout",
                 "x = x.permute(0, 2, 4, 1, 3, 5)", "x = x.permute(0, 2, 4, 3, 5, 1)",
                 ("patches",)),
        Mutation("merge: the older partial output not rescaled by exp(m_old - m_new)",
                 "o = o_a * scale_a[..., None] + o_b * scale_b[..., None]",
                 "o = o_a + o_b * scale_b[..., None]", ("merge",)),
        Mutation("merge: each block's output divided by its own sum before merging",
                 "o = o_a * scale_a[..., None] + o_b * scale_b[..., None]",
                 "o = o_a / l_a[..., None] * scale_a[..., None]"
                 " + o_b / l_b[..., None] * scale_b[..., None]", ("merge",)),
    ],
    "ch17_production": [
        Mutation("per-channel scales taken over the columns (dim 0) instead of the output rows",
                 "w.abs().amax(dim=1, keepdim=True)", "w.abs().amax(dim=0, keepdim=True)",
                 ("quantize",)),
        Mutation("integer product rescaled by the weight scale only, forgetting the input's",
                 "y = acc.float() * s_x * self.weight_scale.reshape(-1)",
                 "y = acc.float() * self.weight_scale.reshape(-1)", ("int8_linear",)),
        Mutation("preallocated cache returns the whole buffers instead of the filled part",
                 "return self.key_buffer[:, :, :end], self.value_buffer[:, :, :end]  # views",
                 "return self.key_buffer, self.value_buffer", ("cache",)),
        Mutation("latency measured from the start of the batch instead of the request's arrival",
                 "latency[request] = end - arrivals_ms[request]",
                 "latency[request] = end - start", ("batcher",)),
        Mutation("batcher never flushes on max_wait_ms: it waits until the batch is full",
                 "while stop < last and arrivals_ms[stop] <= deadline:  # step 2",
                 "while stop < last:  # step 2", ("batcher",)),
    ],
}
