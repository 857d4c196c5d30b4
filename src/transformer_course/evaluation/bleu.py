"""Translation metrics from scratch: BLEU, chrF and a simplified METEOR (introduced in chapter 11).

This module is the reference that chapter 11 ("Evaluation metrics") builds step by step. The
from-scratch BLEU and chrF reproduce sacreBLEU's numbers (same tokenizer, same smoothing, same
corner cases), which the tests check on Multi30k; :func:`evaluate_translations` puts them next
to the official sacreBLEU scores and their signatures, the form in which a translation result
should be reported ("cased, detokenized sacreBLEU" plus the signature string).

Input layout, shared by every corpus-level function (it is sacreBLEU's):

* ``hypotheses``: one detokenized string per sentence, ``["A dog runs.", "Two men talk."]``.
* ``references``: a list of reference *streams*; a stream is one complete set of references,
  aligned with the hypotheses. With two references per sentence::

      references = [["A dog runs.", "Two men talk."],          # first reference of each
                    ["A dog is running.", "Two men chat."]]    # second reference of each

  A plain ``list[str]`` is accepted as the single-reference case. If you hold a list of
  references *per sentence*, transpose it: ``[list(s) for s in zip(*per_sentence)]``.

Scores are on sacreBLEU's 0-100 scale for BLEU and chrF, and on METEOR's usual 0-1 scale.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .corpus import _corpus, _sentence_references, tokenize_text

__all__ = ["ngrams", "modified_precision", "closest_reference_length", "brevity_penalty",
           "BLEUStatistics", "BLEUResult", "bleu_statistics", "bleu_from_statistics",
           "sentence_bleu", "corpus_bleu"]

SMOOTHING_METHODS = ("exp", "floor", "add-k", "none")
# sacreBLEU's default smoothing values (Chen and Cherry, 2014): floor 0.1, add-k 1.
_DEFAULT_SMOOTH_VALUES = {"floor": 0.1, "add-k": 1.0}


# --- BLEU: the pieces ---------------------------------------------------------------------------


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    """Count the n-grams (tuples of ``n`` consecutive tokens) of a token sequence.

    >>> ngrams("the cat the cat".split(), 2)
    Counter({('the', 'cat'): 2, ('cat', 'the'): 1})
    """
    if n < 1:
        raise ValueError(f"n must be a positive n-gram order, got {n}")
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def modified_precision(
    hypothesis_tokens: Sequence[str], reference_tokens_list: Sequence[Sequence[str]], n: int
) -> tuple[int, int]:
    """BLEU's clipped n-gram matches: returns ``(clipped_matches, total)``.

    Each hypothesis n-gram counts as a match at most as many times as it appears in any single
    reference::

        clipped_matches = sum over n-grams g of min(count_hyp(g), max_r count_ref_r(g))
        total           = number of n-grams in the hypothesis

    Without clipping, "the the the the the the the" would get a perfect unigram precision
    against "the cat is on the mat"; with it, only 2 of its 7 "the" count: ``(2, 7)``.
    """
    if isinstance(reference_tokens_list, str) or (
        len(reference_tokens_list) > 0 and isinstance(reference_tokens_list[0], str)
    ):
        raise ValueError(
            "reference_tokens_list must be a list of token lists (one per reference), got a "
            "list of strings; wrap a single tokenized reference as [tokens]"
        )
    if len(reference_tokens_list) == 0:
        raise ValueError("reference_tokens_list is empty; expected at least one reference")
    hypothesis_counts = ngrams(hypothesis_tokens, n)
    max_reference_counts: Counter[tuple[str, ...]] = Counter()
    for reference_tokens in reference_tokens_list:
        for gram, count in ngrams(reference_tokens, n).items():
            max_reference_counts[gram] = max(max_reference_counts[gram], count)
    clipped_matches = sum(
        min(count, max_reference_counts[gram]) for gram, count in hypothesis_counts.items()
    )
    return clipped_matches, sum(hypothesis_counts.values())


def closest_reference_length(hyp_len: int, ref_lens: Sequence[int]) -> int:
    """The reference length closest to the hypothesis length; on a tie, the shorter one.

    This is the "effective reference length" of sacreBLEU (and mteval's default, 'closest'):
    a hypothesis of 5 tokens with references of 4 and 6 tokens is compared with 4.
    """
    if not ref_lens:
        raise ValueError("ref_lens is empty; expected the length of at least one reference")
    return min(ref_lens, key=lambda ref_len: (abs(ref_len - hyp_len), ref_len))


def brevity_penalty(hyp_len: int, ref_len: int) -> float:
    """BLEU's penalty for hypotheses shorter than their references.

    ``BP = 1`` if ``c >= r``, else ``exp(1 - r / c)``, with ``c`` the hypothesis length and
    ``r`` the reference length (at corpus level, both summed over the corpus). Precision alone
    rewards saying little: "the" against "the cat is on the mat" has unigram precision 1. With
    ``c == 0`` the formula divides by zero; its limit, and sacreBLEU's value, is 0.
    """
    if hyp_len < 0 or ref_len < 0:
        raise ValueError(f"lengths must be non-negative, got hyp_len={hyp_len}, ref_len={ref_len}")
    if hyp_len >= ref_len:
        return 1.0
    if hyp_len == 0:
        return 0.0
    return math.exp(1.0 - ref_len / hyp_len)


# --- BLEU: sufficient statistics and the score ---------------------------------------------------


@dataclass(frozen=True)
class BLEUStatistics:
    """Everything BLEU needs from a sentence, or from a corpus by summing sentences.

    ``matches[n-1]`` and ``totals[n-1]`` are the clipped matches and hypothesis n-gram counts
    for order ``n``; ``hyp_len`` is the hypothesis length, ``ref_len`` the closest reference
    length. Corpus BLEU adds these up over the sentences (``sum(stats, start=...)`` or ``+``)
    and only then takes ratios: a corpus is scored as one long document.
    """

    matches: tuple[int, ...]
    totals: tuple[int, ...]
    hyp_len: int
    ref_len: int

    def __add__(self, other: BLEUStatistics) -> BLEUStatistics:
        if len(self.matches) != len(other.matches):
            raise ValueError(
                f"cannot add statistics of max_n={len(self.matches)} and {len(other.matches)}"
            )
        return BLEUStatistics(
            tuple(a + b for a, b in zip(self.matches, other.matches, strict=True)),
            tuple(a + b for a, b in zip(self.totals, other.totals, strict=True)),
            self.hyp_len + other.hyp_len,
            self.ref_len + other.ref_len,
        )


@dataclass(frozen=True)
class BLEUResult:
    """A BLEU score with the numbers it was made from, named as in sacreBLEU's ``BLEUScore``.

    ``score`` and ``precisions`` (one per n-gram order, after smoothing) are percentages, 0-100.
    """

    score: float
    precisions: tuple[float, ...]
    brevity_penalty: float
    hyp_len: int
    ref_len: int
    matches: tuple[int, ...]
    totals: tuple[int, ...]

    @property
    def ratio(self) -> float:
        """Hypothesis length over reference length (0 when the references are empty)."""
        return self.hyp_len / self.ref_len if self.ref_len else 0.0

    def __str__(self) -> str:
        precisions = "/".join(f"{p:.1f}" for p in self.precisions)
        return (
            f"BLEU = {self.score:.2f} {precisions} (BP = {self.brevity_penalty:.3f} "
            f"ratio = {self.ratio:.3f} hyp_len = {self.hyp_len} ref_len = {self.ref_len})"
        )


def bleu_statistics(
    hypothesis_tokens: Sequence[str], reference_tokens_list: Sequence[Sequence[str]], max_n: int = 4
) -> BLEUStatistics:
    """Clipped matches and totals for n = 1..max_n, plus the two lengths, for one sentence."""
    if max_n < 1:
        raise ValueError(f"max_n must be a positive n-gram order, got {max_n}")
    matches, totals = [], []
    for n in range(1, max_n + 1):
        clipped_matches, total = modified_precision(hypothesis_tokens, reference_tokens_list, n)
        matches.append(clipped_matches)
        totals.append(total)
    hyp_len = len(hypothesis_tokens)
    ref_len = closest_reference_length(hyp_len, [len(ref) for ref in reference_tokens_list])
    return BLEUStatistics(tuple(matches), tuple(totals), hyp_len, ref_len)


def bleu_from_statistics(
    stats: BLEUStatistics,
    smoothing: str = "exp",
    smooth_value: float | None = None,
    effective_order: bool = False,
) -> BLEUResult:
    """BLEU from its statistics: the brevity penalty times the geometric mean of the precisions.

    ::

        p_n  = matches_n / totals_n                       (n = 1..N, N = max_n, usually 4)
        BLEU = 100 * BP * exp((log p_1 + ... + log p_N) / N)

    A single precision of 0 makes the geometric mean 0, so short sentences, which often have
    no matching 4-gram, need *smoothing* (sacreBLEU's methods, from Chen and Cherry, 2014):

    * ``"exp"`` (sacreBLEU's default, from mteval): the k-th order with no match gets
      ``p_n = 1 / (2^k * totals_n)``. A no-op when every order has a match, as in a corpus.
    * ``"floor"``: an order with no match gets ``p_n = smooth_value / totals_n`` (0.1).
    * ``"add-k"``: add ``smooth_value`` (1) to the matches and totals of orders n >= 2.
    * ``"none"``: no smoothing.

    As in sacreBLEU, no match at all gives 0 whatever the smoothing, and ``effective_order``
    (used for sentence BLEU) averages only over the orders the hypothesis has n-grams for, so a
    3-word sentence is judged on 1- to 3-grams.
    """
    if smoothing not in SMOOTHING_METHODS:
        raise ValueError(f"smoothing must be one of {SMOOTHING_METHODS}, got {smoothing!r}")
    if smooth_value is None:
        smooth_value = _DEFAULT_SMOOTH_VALUES.get(smoothing, 0.0)
    max_n = len(stats.matches)
    bp = brevity_penalty(stats.hyp_len, stats.ref_len)
    if not any(stats.matches):
        return BLEUResult(0.0, (0.0,) * max_n, bp, stats.hyp_len, stats.ref_len,
                          stats.matches, stats.totals)

    precisions = [0.0] * max_n
    orders_used = max_n
    orders_without_match = 0
    for n in range(1, max_n + 1):
        matches, total = stats.matches[n - 1], stats.totals[n - 1]
        if smoothing == "add-k" and n > 1:
            matches, total = matches + smooth_value, total + smooth_value
        if total == 0:  # the hypothesis is shorter than n tokens: no n-grams of this order
            break
        if effective_order:
            orders_used = n
        if matches > 0:
            precisions[n - 1] = 100.0 * matches / total
        elif smoothing == "exp":
            orders_without_match += 1
            precisions[n - 1] = 100.0 / (2**orders_without_match * total)
        elif smoothing == "floor":
            precisions[n - 1] = 100.0 * smooth_value / total

    used = precisions[:orders_used]
    if min(used) == 0.0:
        score = 0.0  # a geometric mean with a zero factor
    else:
        score = bp * math.exp(sum(math.log(p) for p in used) / orders_used)
    return BLEUResult(score, tuple(precisions), bp, stats.hyp_len, stats.ref_len,
                      stats.matches, stats.totals)


def sentence_bleu(
    hypothesis: str,
    references: str | Sequence[str],
    max_n: int = 4,
    smoothing: str = "exp",
    smooth_value: float | None = None,
    lowercase: bool = False,
    tokenize: str = "13a",
    effective_order: bool = True,
) -> BLEUResult:
    """BLEU of one sentence against its reference(s), like ``sacrebleu.sentence_bleu``.

    ``references`` is a string or the list of this sentence's references. The defaults are
    sacreBLEU's for sentence BLEU: ``exp`` smoothing and effective order. Sentence BLEU is noisy
    and not what BLEU was designed for; report :func:`corpus_bleu`.
    """
    references = _sentence_references(references)
    hypothesis_tokens = tokenize_text(hypothesis, tokenize, lowercase)
    reference_tokens = [tokenize_text(ref, tokenize, lowercase) for ref in references]
    stats = bleu_statistics(hypothesis_tokens, reference_tokens, max_n)
    return bleu_from_statistics(stats, smoothing, smooth_value, effective_order)


def corpus_bleu(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    max_n: int = 4,
    smoothing: str = "exp",
    smooth_value: float | None = None,
    lowercase: bool = False,
    tokenize: str = "13a",
    effective_order: bool = False,
) -> BLEUResult:
    """Corpus BLEU, like ``sacrebleu.corpus_bleu`` (and ``BLEU().corpus_score``).

    The statistics of all sentences are *summed* first, then turned into one score: the
    precisions are ratios of corpus totals and the brevity penalty compares the total
    hypothesis length with the total of the closest reference lengths. This is not the mean of
    the sentence BLEUs: long sentences weigh more, and a sentence without a 4-gram match does
    not zero anything. ``references`` follows the module's layout (a list of streams, or a
    list of strings for one reference).
    """
    hypotheses, references_per_sentence = _corpus(hypotheses, references)
    total = BLEUStatistics((0,) * max_n, (0,) * max_n, 0, 0)
    for hypothesis, sentence_references in zip(hypotheses, references_per_sentence, strict=True):
        hypothesis_tokens = tokenize_text(hypothesis, tokenize, lowercase)
        reference_tokens = [tokenize_text(ref, tokenize, lowercase) for ref in sentence_references]
        total = total + bleu_statistics(hypothesis_tokens, reference_tokens, max_n)
    return bleu_from_statistics(total, smoothing, smooth_value, effective_order)
