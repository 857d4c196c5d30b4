"""Generating text: greedy decoding, beam search and sampling, with a KV cache (chapter 9).

Every decoding path can run with the key/value cache (each step feeds only the newest token
and reuses the keys and values of the earlier ones) or without it (each step recomputes the
whole prefix). Both give the same tokens; the cache makes a step cost O(t) instead of O(t^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..utils.tokenizer import BOS_ID, EOS_ID
from .gpt import GPT
from .transformer import Transformer

__all__ = [
    "greedy_decode",
    "beam_search",
    "sampling_distribution",
    "generate",
    "length_penalty",
]


def _check_source(model: Transformer, src: Tensor, max_len: int | None) -> int:
    if src.dim() != 2:
        raise ValueError(f"src must have shape (batch, src_len), got {tuple(src.shape)}")
    limit = model.config.max_len - 1  # one position is taken by <s>
    max_len = min(src.shape[1] + 50, limit) if max_len is None else max_len
    if not 1 <= max_len <= limit:
        raise ValueError(f"max_len must be in 1..{limit} (the model's max_len - 1), got {max_len}")
    return max_len


def _new_cache(model: Transformer, max_len: int, preallocate: bool):
    # Decoding feeds <s> and then at most max_len - 1 generated tokens: max_len positions.
    return model.new_cache(max_len) if preallocate else model.new_cache()


def _strip(tokens: list[int], eos_id: int) -> list[int]:
    return tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens


@torch.no_grad()
def greedy_decode(
    model: Transformer,
    src: Tensor,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    max_len: int | None = None,
    use_cache: bool = True,
    preallocate: bool = False,
) -> list[list[int]]:
    """Pick the most probable token at every step, for a whole batch at once.

    Args:
        src: ``(batch, src_len)`` source ids (padded with the model's pad id).
        max_len: most tokens to generate (default: source length + 50, within the model's
            positions).
        preallocate: with the cache, write keys and values into buffers allocated once for
            ``max_len`` positions
            (:class:`~transformer_course.models.multihead.PreallocatedKVCache`) instead of
            growing them step by step; the tokens are the same.
    Returns:
        one list of ids per sentence, without <s> and </s>.
    """
    model.eval()
    max_len = _check_source(model, src, max_len)
    src_mask = model.source_mask(src)  # (batch, 1, 1, src_len)
    memory = model.encode(src, src_mask)  # (batch, src_len, d_model)
    tokens = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    cache = _new_cache(model, max_len, preallocate) if use_cache else None
    for _ in range(max_len):
        step_input = tokens[:, -1:] if use_cache else tokens  # (batch, 1) or (batch, t)
        logits = model.decode(step_input, memory, src_mask, cache)[:, -1]  # (batch, vocab)
        next_token = logits.argmax(dim=-1)  # (batch,)
        next_token = next_token.masked_fill(finished, eos_id)  # finished rows just repeat </s>
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)  # (batch, t + 1)
        finished |= next_token == eos_id
        if finished.all():
            break
    return [_strip(row[1:], eos_id) for row in tokens.tolist()]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's length normalisation ((5 + length) / 6) ** alpha: dividing a hypothesis' log
    probability by it stops beam search from preferring short outputs (alpha = 0: none)."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search(
    model: Transformer,
    src: Tensor,
    beam_size: int = 4,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    max_len: int | None = None,
    alpha: float = 0.6,
    use_cache: bool = True,
    preallocate: bool = False,
) -> list[list[int]]:
    """Keep the ``beam_size`` most probable prefixes at every step, for a batch at once.

    A hypothesis that emits </s> is finished and scored by its log probability divided by
    :func:`length_penalty`; a sentence is done when it has ``beam_size`` finished
    hypotheses, and the best-scoring one is returned. ``preallocate`` picks the cache with
    fixed-size buffers, as in :func:`greedy_decode`.

    Returns one list of ids per sentence, without <s> and </s>.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    model.eval()
    max_len = _check_source(model, src, max_len)
    batch, k = src.shape[0], beam_size
    device = src.device
    src_mask = model.source_mask(src)  # (batch, 1, 1, src_len)
    memory = model.encode(src, src_mask)  # (batch, src_len, d_model)
    # Every hypothesis needs its own copy of the memory: (batch * k, src_len, d_model).
    memory = memory.repeat_interleave(k, dim=0)
    src_mask = src_mask.repeat_interleave(k, dim=0)  # (batch * k, 1, 1, src_len)

    tokens = torch.full((batch * k, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch, k, device=device)  # summed log probabilities
    scores[:, 1:] = float("-inf")  # all beams start identical: expand only the first one
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    cache = _new_cache(model, max_len, preallocate) if use_cache else None

    for step in range(max_len):
        step_input = tokens[:, -1:] if use_cache else tokens
        logits = model.decode(step_input, memory, src_mask, cache)[:, -1]  # (batch*k, vocab)
        log_probs = F.log_softmax(logits.float(), dim=-1)
        vocab = log_probs.shape[-1]
        candidates = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)  # (batch, k*vocab)
        # 2k candidates: even if k of them end in </s>, k can still continue.
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # (batch, 2k)
        origin = top_index // vocab  # which beam each candidate extends
        token = top_index % vocab

        new_scores = torch.full((batch, k), float("-inf"), device=device)
        new_origin = torch.zeros(batch, k, dtype=torch.long, device=device)
        new_token = torch.full((batch, k), eos_id, dtype=torch.long, device=device)
        top_scores_l, origin_l, token_l = top_scores.tolist(), origin.tolist(), token.tolist()
        for b in range(batch):
            if done[b]:
                continue
            kept = 0
            for score, beam, tok in zip(top_scores_l[b], origin_l[b], token_l[b], strict=True):
                if score == float("-inf"):
                    break
                if tok == eos_id:
                    prefix = tokens[b * k + beam, 1:].tolist()
                    finished[b].append((score / length_penalty(step + 1, alpha), prefix))
                else:
                    new_scores[b, kept], new_origin[b, kept], new_token[b, kept] = score, beam, tok
                    kept += 1
                    if kept == k:
                        break
            if len(finished[b]) >= k:
                done[b] = True
        if all(done):
            break
        reorder = (torch.arange(batch, device=device)[:, None] * k + new_origin).view(-1)
        tokens = torch.cat([tokens[reorder], new_token.view(-1, 1)], dim=1)  # (batch*k, t+1)
        if cache is not None:
            cache.reorder(reorder)
        scores = new_scores

    results = []
    for b in range(batch):
        if not finished[b]:  # nothing reached </s> within max_len: take the best open beam
            best = int(scores[b].argmax())
            length = tokens.shape[1] - 1
            finished[b].append((float(scores[b, best]) / length_penalty(length, alpha),
                                tokens[b * k + best, 1:].tolist()))
        results.append(max(finished[b], key=lambda item: item[0])[1])
    return results


def sampling_distribution(
    logits: Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Tensor:
    """Turn next-token logits ``(..., vocab)`` into the distribution to sample from.

    - temperature divides the logits: below 1 sharpens the distribution, above 1 flattens it;
    - top-k keeps the k most probable tokens;
    - top-p (nucleus) keeps the smallest set of most probable tokens whose probabilities add
      up to at least p.
    The kept probabilities are renormalised to sum to 1.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy decoding for 0), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (..., 1) smallest kept logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the tokens ranked higher
        drop_sorted = before >= top_p  # keep a token if the ones above it have not reached p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


@torch.no_grad()
def generate(
    model: GPT,
    prompt: Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    stop_id: int | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Continue ``prompt`` ``(batch, prompt_len)`` with a decoder-only model.

    ``temperature=0`` means greedy. Generation stops after ``max_new_tokens`` or when every
    row has produced ``stop_id``. When the sequence outgrows the model's context, the oldest
    tokens are dropped (and the cache rebuilt from the remaining window).

    Returns ``(batch, prompt_len + generated)``.
    """
    if prompt.dim() != 2 or prompt.shape[1] < 1:
        raise ValueError(
            f"prompt must have shape (batch, prompt_len >= 1), got {tuple(prompt.shape)}"
        )
    model.eval()
    context = model.config.context_length
    tokens = prompt
    cache = None
    stopped = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)
    for _ in range(max_new_tokens):
        if use_cache and cache is not None and cache.length < context:
            logits = model(tokens[:, -1:], cache)[:, -1]  # (batch, vocab)
        else:
            window = tokens[:, -context:]  # crop to the context length
            cache = model.new_cache() if use_cache else None
            logits = model(window, cache)[:, -1]  # (batch, vocab)
        if temperature == 0:
            next_token = logits.argmax(dim=-1)
        else:
            probs = sampling_distribution(logits, temperature, top_k, top_p)
            next_token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        if stop_id is not None:
            next_token = next_token.masked_fill(stopped, stop_id)
            stopped |= next_token == stop_id
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        if stop_id is not None and stopped.all():
            break
    return tokens
