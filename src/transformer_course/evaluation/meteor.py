"""A simplified METEOR: exact and stem matches, fragmentation penalty (chapter 11)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .corpus import _corpus, _sentence_references, tokenize_text

__all__ = ["stem", "align_words", "count_chunks", "METEORResult", "sentence_meteor",
           "corpus_meteor"]


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
