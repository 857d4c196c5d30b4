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
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "tokenize_13a",
    "tokenize_text",
    "ngrams",
    "modified_precision",
    "closest_reference_length",
    "brevity_penalty",
    "BLEUStatistics",
    "BLEUResult",
    "bleu_statistics",
    "bleu_from_statistics",
    "sentence_bleu",
    "corpus_bleu",
    "character_ngrams",
    "CHRFStatistics",
    "CHRFResult",
    "chrf_statistics",
    "sentence_chrf",
    "corpus_chrf",
    "stem",
    "align_words",
    "count_chunks",
    "METEORResult",
    "sentence_meteor",
    "corpus_meteor",
    "TranslationEvaluation",
    "evaluate_translations",
]

SMOOTHING_METHODS = ("exp", "floor", "add-k", "none")
# sacreBLEU's default smoothing values (Chen and Cherry, 2014): floor 0.1, add-k 1.
_DEFAULT_SMOOTH_VALUES = {"floor": 0.1, "add-k": 1.0}


# --- Input checks -------------------------------------------------------------------------------


def _check_hypotheses(hypotheses: Sequence[str]) -> list[str]:
    if isinstance(hypotheses, str):
        raise ValueError(
            "hypotheses must be a list of strings (one per sentence), got a single string; "
            "wrap one sentence as [sentence] or use the sentence_* functions"
        )
    hypotheses = list(hypotheses)
    if not hypotheses:
        raise ValueError("hypotheses is empty; expected at least one sentence to score")
    for i, line in enumerate(hypotheses):
        if not isinstance(line, str):
            raise ValueError(f"hypotheses[{i}] must be a string, got {type(line).__name__}")
    return hypotheses


def _reference_streams(references: Sequence[str] | Sequence[Sequence[str]], n_hyps: int):
    """Validate ``references`` (see the module docstring) and return it as a list of streams."""
    if isinstance(references, str):
        raise ValueError(
            "references must be a list of strings or a list of reference streams, "
            "got a single string"
        )
    references = list(references)
    if not references:
        raise ValueError("references is empty; expected at least one reference per hypothesis")
    if all(isinstance(r, str) for r in references):
        streams = [references]  # the single-reference shortcut: list[str]
    elif all(isinstance(r, Sequence) and not isinstance(r, str) for r in references):
        streams = [list(stream) for stream in references]
    else:
        raise ValueError(
            "references must be either a list of strings (one reference per hypothesis) or a "
            "list of reference streams (lists of strings), not a mixture"
        )
    for k, stream in enumerate(streams):
        if len(stream) != n_hyps:
            raise ValueError(
                f"reference stream {k} has {len(stream)} sentences but there are {n_hyps} "
                "hypotheses; each stream must hold one reference per hypothesis (sacreBLEU's "
                "layout). To convert a list of references per sentence, transpose it: "
                "[list(s) for s in zip(*per_sentence)]"
            )
        for i, line in enumerate(stream):
            if not isinstance(line, str):
                raise ValueError(
                    f"reference stream {k}, sentence {i} must be a string, "
                    f"got {type(line).__name__}"
                )
    return streams


def _corpus(hypotheses, references) -> tuple[list[str], list[tuple[str, ...]]]:
    """The hypotheses and, for each of them, the tuple of its references."""
    hypotheses = _check_hypotheses(hypotheses)
    streams = _reference_streams(references, len(hypotheses))
    return hypotheses, list(zip(*streams, strict=True))


def _sentence_references(references: str | Sequence[str]) -> list[str]:
    """The references of one sentence: a string, or a non-empty list of strings."""
    if isinstance(references, str):
        return [references]
    references = list(references)
    if not references:
        raise ValueError("references is empty; expected at least one reference string")
    for i, line in enumerate(references):
        if not isinstance(line, str):
            raise ValueError(
                f"references[{i}] must be a string, got {type(line).__name__} (the sentence_* "
                "functions take the references of one sentence: a string or a list of strings)"
            )
    return references


# --- Tokenization -------------------------------------------------------------------------------

# The 13a tokenizer of mteval-v13a.pl, the WMT standard and sacreBLEU's default. It splits off
# every ASCII punctuation mark except four that depend on their neighbours: the apostrophe
# ("don't" stays whole), the hyphen ("T-shirt" stays whole), and the period and comma, which
# stay inside numbers ("3.5", "1,000") but are split off everywhere else.
_ALWAYS_SPLIT = "".join(c for c in string.punctuation if c not in "'-.,")
_13A_RULES = [
    (re.compile(f"([{re.escape(_ALWAYS_SPLIT)}])"), r" \1 "),
    (re.compile(r"([^0-9])([.,])"), r"\1 \2 "),  # period or comma not after a digit
    (re.compile(r"([.,])([^0-9])"), r" \1 \2"),  # period or comma not before a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # a hyphen after a digit: "2-1" -> "2 - 1"
]
_HTML_ENTITIES = [("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">")]


def tokenize_13a(text: str) -> str:
    """Tokenize like sacreBLEU's default ``13a`` tokenizer; returns tokens joined by spaces.

    Steps: drop ``<skipped>`` markers, join words hyphenated across a line break, unescape the
    four HTML entities mteval knows (``&amp;`` -> ``&`` ...), pad with a space on each side (so
    that a period at the very start or end has a non-digit neighbour), apply the four
    :data:`_13A_RULES` in order, and collapse runs of whitespace.

    >>> tokenize_13a('He said: "3,000.50 dollars," (roughly).')
    'He said : " 3,000.50 dollars , " ( roughly ) .'
    """
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, character in _HTML_ENTITIES:  # in this order: "&amp;lt;" ends as "<"
        text = text.replace(entity, character)
    text = f" {text} "
    for pattern, replacement in _13A_RULES:
        text = pattern.sub(replacement, text)
    return " ".join(text.split())


def tokenize_text(text: str, tokenize: str = "13a", lowercase: bool = False) -> list[str]:
    """The word tokens BLEU counts, exactly as sacreBLEU prepares a line.

    Lowercase (when asked), strip trailing whitespace, tokenize (``"13a"``, or ``"none"`` for
    text that is already tokenized), then split on whitespace.
    """
    if tokenize not in ("13a", "none"):
        raise ValueError(f"tokenize must be '13a' or 'none', got {tokenize!r}")
    if lowercase:
        text = text.lower()
    text = text.rstrip()
    if tokenize == "13a":
        text = tokenize_13a(text)
    return text.split()


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


# --- chrF ---------------------------------------------------------------------------------------


def character_ngrams(text: str, n: int, include_whitespace: bool = False) -> Counter[str]:
    """Count the character n-grams of a string; by default whitespace is removed first.

    >>> character_ngrams("a cat", 2)
    Counter({'ac': 1, 'ca': 1, 'at': 1})
    """
    if n < 1:
        raise ValueError(f"n must be a positive n-gram order, got {n}")
    if not include_whitespace:
        text = "".join(text.split())
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def _chrf_words(text: str) -> list[str]:
    """chrF++'s words: whitespace-split, then one punctuation mark is split off the end of a
    word, or else off its start (so "(hi)" gives "(hi" and ")"), as Popović's chrF++.py does."""
    words = []
    for word in text.split():
        if len(word) > 1 and word[-1] in string.punctuation:
            words += [word[:-1], word[-1]]
        elif len(word) > 1 and word[0] in string.punctuation:
            words += [word[0], word[1:]]
        else:
            words.append(word)
    return words


def _chrf_ngram_counts(text: str, char_order: int, word_order: int, whitespace: bool) -> list:
    """One Counter per order: character orders 1..char_order, then word orders 1..word_order."""
    counts: list[Counter] = [character_ngrams(text, n, whitespace) for n in
                             range(1, char_order + 1)]
    words = _chrf_words(text) if word_order > 0 else []
    counts += [ngrams(words, n) for n in range(1, word_order + 1)]
    return counts


@dataclass(frozen=True)
class CHRFStatistics:
    """chrF's counts, one entry per order (character orders first, then word orders).

    ``hyp_counts``: hypothesis n-grams, ``ref_counts``: reference n-grams, ``matches``: n-grams
    in common (clipped, as in BLEU). Like BLEU, chrF sums these over the corpus.
    """

    hyp_counts: tuple[int, ...]
    ref_counts: tuple[int, ...]
    matches: tuple[int, ...]

    def __add__(self, other: CHRFStatistics) -> CHRFStatistics:
        return CHRFStatistics(
            tuple(a + b for a, b in zip(self.hyp_counts, other.hyp_counts, strict=True)),
            tuple(a + b for a, b in zip(self.ref_counts, other.ref_counts, strict=True)),
            tuple(a + b for a, b in zip(self.matches, other.matches, strict=True)),
        )


@dataclass(frozen=True)
class CHRFResult:
    """A chrF score (0-100) with its average precision and recall (0-100) and its settings."""

    score: float
    precision: float
    recall: float
    char_order: int = 6
    word_order: int = 0
    beta: float = 2

    @property
    def name(self) -> str:
        """sacreBLEU's name: chrF2 by default, chrF2++ with word order 2."""
        beta = int(self.beta) if float(self.beta).is_integer() else self.beta
        return f"chrF{beta}" + "+" * self.word_order

    def __str__(self) -> str:
        return f"{self.name} = {self.score:.2f}"


def _compare_counts(hypothesis_counts: list, reference_counts: list) -> CHRFStatistics:
    hyp, ref, matches = [], [], []
    for hyp_grams, ref_grams in zip(hypothesis_counts, reference_counts, strict=True):
        # sacreBLEU's choice: hypothesis n-grams of an order count only if the reference has
        # n-grams of that order (a 1-character reference does not penalise a long hypothesis's
        # bigram precision).
        hyp.append(sum(hyp_grams.values()) if ref_grams else 0)
        ref.append(sum(ref_grams.values()))
        matches.append(sum(min(count, ref_grams[gram]) for gram, count in hyp_grams.items()))
    return CHRFStatistics(tuple(hyp), tuple(ref), tuple(matches))


def chrf_statistics(
    hypothesis: str, reference: str, char_order: int = 6, word_order: int = 0,
    whitespace: bool = False,
) -> CHRFStatistics:
    """chrF's counts for one hypothesis against one reference (no lowercasing here)."""
    return _compare_counts(
        _chrf_ngram_counts(hypothesis, char_order, word_order, whitespace),
        _chrf_ngram_counts(reference, char_order, word_order, whitespace),
    )


def _chrf_precision_recall_score(stats: CHRFStatistics, beta: float) -> tuple[float, float, float]:
    """Average precision and recall over the orders, then their F-beta (sacreBLEU >= 2.0).

    ::

        P = mean over orders of matches_n / hyp_n,   R = mean over orders of matches_n / ref_n
        chrF = 100 * (1 + beta^2) * P * R / (beta^2 * P + R)

    The means run over the orders that both sides have (hyp_n > 0 and ref_n > 0), so a
    3-character word is not punished for lacking 6-grams. beta = 2 weighs recall twice as much
    as precision. Nothing to compare, or no match at all, gives 0.
    """
    precisions, recalls = [], []
    for hyp, ref, matches in zip(stats.hyp_counts, stats.ref_counts, stats.matches, strict=True):
        if hyp > 0 and ref > 0:
            precisions.append(matches / hyp)
            recalls.append(matches / ref)
    if not precisions:
        return 0.0, 0.0, 0.0
    precision = sum(precisions) / len(precisions)
    recall = sum(recalls) / len(recalls)
    if precision + recall == 0:
        return 0.0, 0.0, 0.0
    factor = beta**2
    score = (1 + factor) * precision * recall / (factor * precision + recall)
    return 100 * precision, 100 * recall, 100 * score


def _best_chrf_statistics(
    hypothesis: str, references: Sequence[str], char_order: int, word_order: int,
    beta: float, whitespace: bool,
) -> CHRFStatistics:
    """With several references, chrF keeps the statistics of the best-scoring one (the first
    one on a tie), as sacreBLEU does."""
    hypothesis_counts = _chrf_ngram_counts(hypothesis, char_order, word_order, whitespace)
    candidates = [
        _compare_counts(hypothesis_counts,
                        _chrf_ngram_counts(ref, char_order, word_order, whitespace))
        for ref in references
    ]
    return max(candidates, key=lambda stats: _chrf_precision_recall_score(stats, beta)[2])


def _check_chrf_settings(char_order: int, word_order: int, beta: float) -> None:
    if char_order < 1 or word_order < 0:
        raise ValueError(
            f"char_order must be >= 1 and word_order >= 0, got {char_order} and {word_order}"
        )
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")


def sentence_chrf(
    hypothesis: str, references: str | Sequence[str], char_order: int = 6, word_order: int = 0,
    beta: float = 2, lowercase: bool = False, whitespace: bool = False,
) -> CHRFResult:
    """chrF of one sentence, like ``sacrebleu.sentence_chrf`` (defaults: chrF2, no spaces)."""
    _check_chrf_settings(char_order, word_order, beta)
    references = _sentence_references(references)
    if lowercase:
        hypothesis, references = hypothesis.lower(), [ref.lower() for ref in references]
    stats = _best_chrf_statistics(hypothesis, references, char_order, word_order, beta,
                                  whitespace)
    precision, recall, score = _chrf_precision_recall_score(stats, beta)
    return CHRFResult(score, precision, recall, char_order, word_order, beta)


def corpus_chrf(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    char_order: int = 6,
    word_order: int = 0,
    beta: float = 2,
    lowercase: bool = False,
    whitespace: bool = False,
) -> CHRFResult:
    """Corpus chrF, like sacreBLEU's ``CHRF().corpus_score`` (chrF++ with ``word_order=2``).

    chrF (Popović, 2015) is an F-score over character n-grams (1 to 6), computed on the text
    with its whitespace removed: no tokenizer is needed and partial word matches ("runs" and
    "running" share "run") earn credit, which suits morphologically rich languages. chrF++
    (Popović, 2017) adds word unigrams and bigrams. As for BLEU, the counts are summed over the
    corpus before the score is computed.
    """
    _check_chrf_settings(char_order, word_order, beta)
    hypotheses, references_per_sentence = _corpus(hypotheses, references)
    order = char_order + word_order
    total = CHRFStatistics((0,) * order, (0,) * order, (0,) * order)
    for hypothesis, sentence_references in zip(hypotheses, references_per_sentence, strict=True):
        if lowercase:
            hypothesis = hypothesis.lower()
            sentence_references = [ref.lower() for ref in sentence_references]
        total = total + _best_chrf_statistics(hypothesis, sentence_references, char_order,
                                              word_order, beta, whitespace)
    precision, recall, score = _chrf_precision_recall_score(total, beta)
    return CHRFResult(score, precision, recall, char_order, word_order, beta)


# --- METEOR (simplified) ------------------------------------------------------------------------
#
# METEOR (Banerjee and Lavie, 2005; Lavie and Agarwal, 2007) aligns hypothesis words with
# reference words and scores the alignment with a recall-weighted F-mean and a penalty for
# fragmented word order. The official tool matches words in four stages: exact, stem, synonym
# (WordNet) and paraphrase, with language-tuned weights and parameters. This version keeps the
# first two stages only (exact, then a Porter-style stem), counts every match fully, and uses
# the classic parameters alpha=0.9, beta=3, gamma=0.5: it teaches how METEOR works, but its
# numbers are NOT comparable with official METEOR (or NLTK's, which uses WordNet synonyms).


def _is_consonant(word: str, i: int) -> bool:
    """Porter's consonant: not a, e, i, o, u, and not a "y" that follows a consonant."""
    if word[i] in "aeiou":
        return False
    if word[i] == "y":
        return i == 0 or not _is_consonant(word, i - 1)
    return True


def _measure(stem_: str) -> int:
    """Porter's m: the number of vowel-consonant sequences, [C](VC)^m[V]."""
    pattern = "".join("c" if _is_consonant(stem_, i) else "v" for i in range(len(stem_)))
    return pattern.count("vc")


def _has_vowel(stem_: str) -> bool:
    return any(not _is_consonant(stem_, i) for i in range(len(stem_)))


def _ends_cvc(stem_: str) -> bool:
    """Consonant-vowel-consonant ending, the last not w, x or y ("hop", not "snow")."""
    n = len(stem_)
    return (
        n >= 3
        and _is_consonant(stem_, n - 3)
        and not _is_consonant(stem_, n - 2)
        and _is_consonant(stem_, n - 1)
        and stem_[-1] not in "wxy"
    )


def _tidy_after_removing_ed_or_ing(word: str) -> str:
    """Porter's step 1b clean-up: "hopp" -> "hop", "hop" -> "hope", "conflat" -> "conflate"."""
    if word.endswith(("at", "bl", "iz")):
        return word + "e"
    if len(word) >= 2 and word[-1] == word[-2] and _is_consonant(word, len(word) - 1):
        return word if word[-1] in "lsz" else word[:-1]
    if _measure(word) == 1 and _ends_cvc(word):
        return word + "e"
    return word


def stem(word: str) -> str:
    """A small stemmer: step 1 of Porter's algorithm (Porter, 1980), on lowercase words.

    Step 1 removes inflections, the endings that matter most for matching translations:
    plurals ("ponies" -> "poni", "cats" -> "cat"), "-ed" and "-ing" ("running" -> "run",
    "hoping" -> "hope") and a final "y" after a stem with a vowel ("city" -> "citi", so that
    it meets "cities" -> "citi"). Porter's later steps (derivational suffixes such as "-ation",
    "-ness") are left out. A stem need not be a word; it only has to be shared.

    >>> stem("running"), stem("runs"), stem("walked")
    ('run', 'run', 'walk')
    """
    word = word.lower()
    if len(word) <= 2 or not word.isalpha():
        return word
    # Step 1a: plurals.
    if word.endswith("sses") or word.endswith("ies"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    # Step 1b: past tense and progressive.
    if word.endswith("eed"):
        if _measure(word[:-3]) > 0:
            word = word[:-1]  # "agreed" -> "agree", but "feed" stays
    else:
        for suffix in ("ed", "ing"):
            if word.endswith(suffix) and _has_vowel(word[: -len(suffix)]):
                word = _tidy_after_removing_ed_or_ing(word[: -len(suffix)])
                break
    # Step 1c: a final y after a stem with a vowel becomes i.
    if word.endswith("y") and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    return word


def _matching_run(
    hyp_keys: list[str], ref_keys: list[str], i: int, j: int,
    ref_for_hyp: dict[int, int], aligned_refs: set[int],
) -> int:
    """How many words match from hypothesis position i and reference position j on, among the
    words not aligned yet."""
    k = 0
    while (i + k < len(hyp_keys) and j + k < len(ref_keys) and hyp_keys[i + k] == ref_keys[j + k]
           and i + k not in ref_for_hyp and j + k not in aligned_refs):
        k += 1
    return k


def align_words(
    hypothesis_tokens: Sequence[str], reference_tokens: Sequence[str]
) -> list[tuple[int, int]]:
    """A one-to-one alignment of hypothesis words with reference words, as (hyp, ref) indices.

    Two stages, as in METEOR: first identical words, then words with the same :func:`stem`
    among those still unaligned. Within a stage the hypothesis is read left to right, and a word
    with several candidate reference positions (a repeated "a" or "the") takes, by preference:

    1. a position that extends a chunk: right after the reference word aligned with the
       previous hypothesis word, or right before the one aligned with the next;
    2. the position where the longest run of the following words matches too: in "... a man
       in a blue shirt" the first "a" goes where "a man in a blue shirt" continues in the
       reference, not to another "a";
    3. the position whose relative place in the reference is nearest to the word's relative
       place in the hypothesis (the earlier one on a tie).

    The official METEOR searches (with a beam) for the alignment with the fewest chunks among
    those with the most matches; this greedy version usually finds the same one, and may
    count an extra chunk when repeated words make the choice ambiguous.
    """
    ref_for_hyp: dict[int, int] = {}
    aligned_refs: set[int] = set()
    hyp_len, ref_len = len(hypothesis_tokens), len(reference_tokens)
    for match_key in (str, stem):  # stage 1: the word itself; stage 2: its stem
        hyp_keys = [match_key(word) for word in hypothesis_tokens]
        ref_keys = [match_key(word) for word in reference_tokens]

        for i, key in enumerate(hyp_keys):
            if i in ref_for_hyp:
                continue
            candidates = [j for j, ref_key in enumerate(ref_keys)
                          if ref_key == key and j not in aligned_refs]
            if not candidates:
                continue
            previous, following = ref_for_hyp.get(i - 1), ref_for_hyp.get(i + 1)
            extends_chunk = {previous + 1 if previous is not None else None,
                             following - 1 if following is not None else None}
            j = min(candidates, key=lambda j: (
                j not in extends_chunk,  # False sorts first
                -_matching_run(hyp_keys, ref_keys, i, j, ref_for_hyp, aligned_refs),
                abs(j / ref_len - i / hyp_len),
                j,
            ))
            ref_for_hyp[i] = j
            aligned_refs.add(j)
    return sorted(ref_for_hyp.items())


def count_chunks(alignment: Sequence[tuple[int, int]]) -> int:
    """The number of chunks: maximal runs of matches adjacent in both hypothesis and reference.

    ``alignment`` is a list of (hyp, ref) index pairs sorted by hyp index. "the cat sat" against
    "the cat sat" is 1 chunk; against "sat the cat" it is 2 ("the cat", "sat").
    """
    chunks = 0
    previous = None
    for hyp_index, ref_index in alignment:
        if previous is None or (hyp_index, ref_index) != (previous[0] + 1, previous[1] + 1):
            chunks += 1
        previous = (hyp_index, ref_index)
    return chunks


@dataclass(frozen=True)
class METEORResult:
    """A (simplified) METEOR score, 0-1, with the quantities it was computed from."""

    score: float
    precision: float
    recall: float
    fmean: float
    penalty: float
    matches: int
    chunks: int
    hyp_len: int
    ref_len: int


def _meteor_from_alignment(
    matches: int, chunks: int, hyp_len: int, ref_len: int,
    alpha: float, beta: float, gamma: float,
) -> METEORResult:
    if matches == 0:
        return METEORResult(0.0, 0.0, 0.0, 0.0, 0.0, 0, 0, hyp_len, ref_len)
    precision, recall = matches / hyp_len, matches / ref_len
    fmean = precision * recall / (alpha * precision + (1 - alpha) * recall)
    penalty = gamma * (chunks / matches) ** beta
    return METEORResult(fmean * (1 - penalty), precision, recall, fmean, penalty, matches,
                        chunks, hyp_len, ref_len)


def sentence_meteor(
    hypothesis: str,
    references: str | Sequence[str],
    alpha: float = 0.9,
    beta: float = 3.0,
    gamma: float = 0.5,
) -> METEORResult:
    """Simplified METEOR of one sentence (exact and stem matches only; see the section notes).

    Both sides are lowercased and 13a-tokenized, then aligned by :func:`align_words`. With
    ``m`` matches, a hypothesis of ``c`` words and a reference of ``r`` words::

        P = m / c,   R = m / r
        Fmean   = P * R / (alpha * P + (1 - alpha) * R)      (alpha = 0.9: recall-weighted,
                                                               the same as 10PR / (R + 9P))
        Penalty = gamma * (chunks / m) ** beta                (gamma = 0.5, beta = 3)
        METEOR  = Fmean * (1 - Penalty)

    The fewer, longer the chunks, the smaller the penalty; a scrambled hypothesis with the
    right words is penalised up to 50%. Even a perfect match is one chunk, so it scores
    ``1 - 0.5 / m**3``: 0.9977 for 6 words, not 1. With several references, the best score
    is kept. No match gives 0.
    """
    if not 0 <= alpha <= 1 or beta <= 0 or not 0 <= gamma <= 1:
        raise ValueError(
            f"expected 0 <= alpha <= 1, beta > 0 and 0 <= gamma <= 1, got alpha={alpha}, "
            f"beta={beta}, gamma={gamma}"
        )
    references = _sentence_references(references)
    hypothesis_tokens = tokenize_text(hypothesis, "13a", lowercase=True)
    results = []
    for reference in references:
        reference_tokens = tokenize_text(reference, "13a", lowercase=True)
        alignment = align_words(hypothesis_tokens, reference_tokens)
        results.append(_meteor_from_alignment(
            len(alignment), count_chunks(alignment), len(hypothesis_tokens),
            len(reference_tokens), alpha, beta, gamma,
        ))
    return max(results, key=lambda result: result.score)


def corpus_meteor(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    alpha: float = 0.9,
    beta: float = 3.0,
    gamma: float = 0.5,
) -> float:
    """The mean of the sentence METEOR scores, 0-1 (the convention of NLTK-based reports).

    The official tool's system score instead sums matches, lengths and chunks over the corpus
    before applying the formula; with sentences of similar length the two are close.
    """
    hypotheses, references_per_sentence = _corpus(hypotheses, references)
    scores = [
        sentence_meteor(hypothesis, list(sentence_references), alpha, beta, gamma).score
        for hypothesis, sentence_references in zip(hypotheses, references_per_sentence, strict=True)
    ]
    return sum(scores) / len(scores)


# --- Reporting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TranslationEvaluation:
    """sacreBLEU's BLEU and chrF with their signatures, next to this module's own metrics.

    Report ``sacrebleu_bleu`` together with ``sacrebleu_bleu_signature``: the signature says how
    the number was computed (number of references, case, tokenizer, smoothing, version), which
    is what makes BLEU scores comparable between papers.
    """

    sacrebleu_bleu: float
    sacrebleu_bleu_signature: str
    sacrebleu_chrf: float
    sacrebleu_chrf_signature: str
    bleu: BLEUResult
    chrf: CHRFResult
    meteor: float
    num_sentences: int
    num_references: int

    def as_dict(self) -> dict:
        """The scores and signatures as a flat dictionary (for logging or JSON)."""
        return {
            "sacrebleu_bleu": self.sacrebleu_bleu,
            "sacrebleu_bleu_signature": self.sacrebleu_bleu_signature,
            "sacrebleu_chrf": self.sacrebleu_chrf,
            "sacrebleu_chrf_signature": self.sacrebleu_chrf_signature,
            "bleu": self.bleu.score,
            "bleu_precisions": list(self.bleu.precisions),
            "bleu_brevity_penalty": self.bleu.brevity_penalty,
            "chrf": self.chrf.score,
            "meteor": self.meteor,
            "num_sentences": self.num_sentences,
            "num_references": self.num_references,
        }

    def format_report(self) -> str:
        """A small table: one metric per row, with its signature or its details."""
        precisions = "/".join(f"{p:.1f}" for p in self.bleu.precisions)
        rows = [
            ("sacreBLEU", self.sacrebleu_bleu, self.sacrebleu_bleu_signature),
            ("BLEU (from scratch)", self.bleu.score,
             f"{precisions} BP={self.bleu.brevity_penalty:.3f} ratio={self.bleu.ratio:.3f}"),
            (f"sacreBLEU {self.chrf.name}", self.sacrebleu_chrf, self.sacrebleu_chrf_signature),
            (f"{self.chrf.name} (from scratch)", self.chrf.score,
             f"P={self.chrf.precision:.1f} R={self.chrf.recall:.1f}"),
            ("METEOR x100 (simplified)", 100 * self.meteor,
             "exact + stem matches only: not comparable with official METEOR"),
        ]
        width = max(len(name) for name, _, _ in rows)
        lines = [f"{'metric':<{width}}  {'score':>6}  signature / details"]
        lines += [f"{name:<{width}}  {score:6.2f}  {notes}" for name, score, notes in rows]
        lines.append(f"{self.num_sentences} sentences, {self.num_references} reference(s) each")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_report()


def evaluate_translations(
    hypotheses: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    lowercase: bool = False,
    tokenize: str = "13a",
) -> TranslationEvaluation:
    """Score detokenized translations with sacreBLEU (BLEU, chrF) and this module's metrics.

    The defaults are the standard report: cased BLEU on detokenized text with the 13a tokenizer,
    whose signature reads ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:...``. Feed
    plain detokenized sentences, not subword pieces or space-separated tokens: sacreBLEU
    tokenizes itself (and logs a warning when many hypotheses end in " .", a sign of
    tokenized output). ``references`` follows the module's layout.
    """
    # sacreBLEU is imported here only: the from-scratch metrics above do not use it.
    from sacrebleu.metrics import BLEU, CHRF

    hypotheses = _check_hypotheses(hypotheses)
    streams = _reference_streams(references, len(hypotheses))

    sacre_bleu = BLEU(lowercase=lowercase, tokenize=tokenize)
    sacre_bleu_score = sacre_bleu.corpus_score(hypotheses, streams)
    sacre_chrf = CHRF(lowercase=lowercase)
    sacre_chrf_score = sacre_chrf.corpus_score(hypotheses, streams)

    return TranslationEvaluation(
        sacrebleu_bleu=sacre_bleu_score.score,
        sacrebleu_bleu_signature=str(sacre_bleu.get_signature()),
        sacrebleu_chrf=sacre_chrf_score.score,
        sacrebleu_chrf_signature=str(sacre_chrf.get_signature()),
        bleu=corpus_bleu(hypotheses, streams, lowercase=lowercase, tokenize=tokenize),
        chrf=corpus_chrf(hypotheses, streams, lowercase=lowercase),
        meteor=corpus_meteor(hypotheses, streams),
        num_sentences=len(hypotheses),
        num_references=len(streams),
    )
