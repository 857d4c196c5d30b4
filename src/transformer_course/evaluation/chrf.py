"""chrF from scratch, matching sacreBLEU (chapter 11)."""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from .bleu import ngrams
from .corpus import _corpus, _sentence_references

__all__ = ["character_ngrams", "CHRFStatistics", "CHRFResult", "chrf_statistics", "sentence_chrf",
           "corpus_chrf"]


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
