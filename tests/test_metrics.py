"""The from-scratch BLEU, chrF and METEOR of chapter 11, checked against sacreBLEU and by hand."""

import math
import random
import string

import pytest
from conftest import load_or_skip
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

from transformer_course.evaluation.analysis import evaluate_translations
from transformer_course.evaluation.bleu import (
    BLEUStatistics,
    bleu_from_statistics,
    brevity_penalty,
    closest_reference_length,
    corpus_bleu,
    modified_precision,
    ngrams,
    sentence_bleu,
)
from transformer_course.evaluation.chrf import corpus_chrf, sentence_chrf
from transformer_course.evaluation.corpus import tokenize_13a, tokenize_text
from transformer_course.evaluation.meteor import (
    align_words,
    corpus_meteor,
    count_chunks,
    sentence_meteor,
    stem,
)
from transformer_course.utils.dataset import load_multi30k

TOLERANCE = 0.01  # on the 0-100 scale


# --- Real data: Multi30k English references and perturbed hypotheses ----------------------------


def load_english_references() -> list[str]:
    """The 1,000 English sentences of Multi30k test_2016_flickr."""
    return [english for _, english in load_or_skip(load_multi30k, "test_2016_flickr")]


# Inserted now and then so that the real sentences also exercise the tokenizer's corner cases.
TRICKY_WORDS = ["3,000", "2.5", "T-shirt", "don't", "&amp;", '"quoted"', "(yes)", "1990-2000",
                "e.g.", "--", "U.S.", "$5", "50%", "it's,"]


def perturb(sentence: str, rng: random.Random, vocabulary: list[str], strength: int = 3) -> str:
    """A plausible bad translation: words dropped, swapped, replaced, duplicated, truncated..."""
    if rng.random() < 0.02:
        return ""  # an empty output happens, and must not crash anything
    if rng.random() < 0.03:
        return rng.choice(vocabulary) + " " + rng.choice(vocabulary)  # nearly no overlap
    words = sentence.split()
    for _ in range(rng.randint(0, strength)):
        if len(words) < 2:
            break
        kind = rng.choice(["drop", "swap", "replace", "duplicate", "truncate", "lowercase",
                           "tricky", "adjacent_swap"])
        i, j = rng.randrange(len(words)), rng.randrange(len(words))
        if kind == "drop":
            del words[i]
        elif kind == "swap":
            words[i], words[j] = words[j], words[i]
        elif kind == "adjacent_swap" and i + 1 < len(words):
            words[i], words[i + 1] = words[i + 1], words[i]
        elif kind == "replace":
            words[i] = rng.choice(vocabulary)
        elif kind == "duplicate":
            words[i:i] = words[i : i + rng.randint(1, 3)]
        elif kind == "truncate":
            words = words[: max(1, len(words) - rng.randint(1, 4))]
        elif kind == "lowercase":
            words = [word.lower() for word in words]
        elif kind == "tricky":
            words.insert(i, rng.choice(TRICKY_WORDS))
    return " ".join(words)


@pytest.fixture(scope="module")
def references() -> list[str]:
    return load_english_references()


@pytest.fixture(scope="module")
def hypotheses(references) -> list[str]:
    rng = random.Random(1234)
    vocabulary = sorted({word for sentence in references for word in sentence.split()})
    return [perturb(sentence, rng, vocabulary) for sentence in references]


@pytest.fixture(scope="module")
def second_references(references) -> list[str]:
    """A second reference stream: lightly perturbed copies of the first."""
    rng = random.Random(99)
    vocabulary = sorted({word for sentence in references for word in sentence.split()})
    return [perturb(sentence, rng, vocabulary, strength=2) or sentence for sentence in references]


# --- The 13a tokenizer --------------------------------------------------------------------------


def test_13a_tokenizer_matches_sacrebleu_on_multi30k(references, hypotheses):
    sacre = Tokenizer13a()
    for line in references + hypotheses:
        assert tokenize_13a(line) == sacre(line), line


@pytest.mark.parametrize("line", [
    'He said "hello" to me.',
    "A T-shirt costs $3,000.50, roughly.",
    "In 1990-2000 prices rose 5-10%.",
    "Tom &amp; Jerry &lt;3 &quot;cheese&quot; &gt; all &amp;lt; &amp;quot;",
    "Don't stop... the end.",
    ".Starts with a period, ends with one.",
    "3.5 vs. 3 . 5 and 1,000 vs 1 , 000 and ,5 and 5,",
    "(parentheses) [brackets] {braces} <angles> a/b a\\b a|b a~b a^b a_b a`b a@b",
    "word-\nbreak and<skipped> a line\nbreak",
    "  leading and trailing spaces  ",
    "tabs\tand\u00a0non-breaking spaces",
    "Ünïcödé — “curly quotes” … and €5",
    "",
    "!!!???",
    "e.g. U.S. a.m. 4.",
])
def test_13a_tokenizer_matches_sacrebleu_on_tricky_strings(line):
    assert tokenize_13a(line) == Tokenizer13a()(line)


def test_13a_tokenizer_matches_sacrebleu_on_random_strings():
    rng = random.Random(0)
    alphabet = string.punctuation + string.digits + "aZ \n\t" + "é“\u00a0"
    sacre = Tokenizer13a()
    for _ in range(3000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert tokenize_13a(line) == sacre(line), repr(line)


def test_13a_tokenizer_examples():
    assert tokenize_13a('He said: "3,000.50 dollars," (roughly).') == (
        'He said : " 3,000.50 dollars , " ( roughly ) .'
    )
    assert tokenize_13a("Don't buy a T-shirt.") == "Don't buy a T-shirt ."


# --- BLEU against sacreBLEU on real data --------------------------------------------------------


def assert_same_bleu(ours, theirs):
    assert abs(ours.score - theirs.score) < TOLERANCE, (str(ours), str(theirs))
    assert ours.hyp_len == theirs.sys_len and ours.ref_len == theirs.ref_len
    assert list(ours.matches) == list(theirs.counts)
    assert ours.brevity_penalty == pytest.approx(theirs.bp)
    assert list(ours.precisions) == pytest.approx(list(theirs.precisions))


@pytest.mark.parametrize("lowercase, tokenize", [(False, "13a"), (True, "13a"), (False, "none")])
def test_corpus_bleu_matches_sacrebleu_on_multi30k(references, hypotheses, lowercase, tokenize):
    theirs = BLEU(lowercase=lowercase, tokenize=tokenize).corpus_score(hypotheses, [references])
    ours = corpus_bleu(hypotheses, [references], lowercase=lowercase, tokenize=tokenize)
    assert 20 < ours.score < 90  # a meaningful comparison: neither trivial 0 nor 100
    assert_same_bleu(ours, theirs)
    # The single-reference shortcut list[str] means the same thing.
    assert corpus_bleu(hypotheses, references, lowercase=lowercase, tokenize=tokenize) == ours


def test_corpus_bleu_with_a_brevity_penalty_matches_sacrebleu(references):
    truncated = [" ".join(line.split()[: max(1, len(line.split()) * 2 // 3)]) for line in
                 references]
    theirs = BLEU().corpus_score(truncated, [references])
    ours = corpus_bleu(truncated, references)
    assert ours.brevity_penalty < 0.7
    assert_same_bleu(ours, theirs)


@pytest.mark.parametrize("smoothing", ["exp", "floor", "add-k", "none"])
@pytest.mark.parametrize("effective_order", [False, True])
def test_corpus_bleu_smoothing_matches_sacrebleu(references, smoothing, effective_order):
    # Three scrambled sentences: some higher orders have no match, so smoothing matters.
    rng = random.Random(7)
    scrambled = []
    for line in references[:3]:
        words = line.split()
        rng.shuffle(words)
        scrambled.append(" ".join(words))
    theirs = BLEU(smooth_method=smoothing, effective_order=effective_order).corpus_score(
        scrambled, [references[:3]]
    )
    ours = corpus_bleu(scrambled, references[:3], smoothing=smoothing,
                       effective_order=effective_order)
    assert 0 in ours.matches[1:]  # the case that smoothing is for
    assert abs(ours.score - theirs.score) < TOLERANCE


@pytest.mark.parametrize("smoothing", ["exp", "floor", "add-k", "none"])
def test_sentence_bleu_matches_sacrebleu_on_multi30k(references, hypotheses, smoothing):
    sacre = BLEU(smooth_method=smoothing, effective_order=True)
    differences = []
    for hypothesis, reference in list(zip(hypotheses, references, strict=True))[:250]:
        ours = sentence_bleu(hypothesis, reference, smoothing=smoothing)
        differences.append(abs(ours.score - sacre.sentence_score(hypothesis, [reference]).score))
    assert max(differences) < TOLERANCE


def test_multi_reference_bleu_matches_sacrebleu(references, second_references, hypotheses):
    streams = [references, second_references]
    theirs = BLEU().corpus_score(hypotheses, streams)
    ours = corpus_bleu(hypotheses, streams)
    assert_same_bleu(ours, theirs)
    assert ours.score > corpus_bleu(hypotheses, references).score  # a second reference helps
    sacre = BLEU(effective_order=True)
    for i in range(0, 1000, 5):
        sentence_refs = [references[i], second_references[i]]
        theirs = sacre.sentence_score(hypotheses[i], sentence_refs)
        assert_same_bleu(sentence_bleu(hypotheses[i], sentence_refs), theirs)


def test_bleu_preprocessing_matches_sacrebleu_on_whitespace():
    # sacreBLEU strips trailing whitespace before tokenizing, so a final "-\n" is kept as "-".
    assert tokenize_text("A dog runs-\n") == ["A", "dog", "runs-"]
    hypotheses = ["A big brown dog runs-\n", "Two men  talk \t", " A woman sings.\n"]
    references = ["A big brown dog runs-", "Two men talk", "A woman sings."]
    for tokenize in ("13a", "none"):
        theirs = BLEU(tokenize=tokenize).corpus_score(hypotheses, [references])
        assert_same_bleu(corpus_bleu(hypotheses, references, tokenize=tokenize), theirs)


# --- chrF against sacreBLEU on real data --------------------------------------------------------


@pytest.mark.parametrize("word_order, lowercase, two_references", [
    (0, False, False), (2, False, False), (0, True, False), (0, False, True), (2, False, True),
])
def test_corpus_chrf_matches_sacrebleu_on_multi30k(
    references, second_references, hypotheses, word_order, lowercase, two_references
):
    streams = [references, second_references] if two_references else [references]
    theirs = CHRF(word_order=word_order, lowercase=lowercase).corpus_score(hypotheses, streams)
    ours = corpus_chrf(hypotheses, streams, word_order=word_order, lowercase=lowercase)
    assert 20 < ours.score < 95
    assert abs(ours.score - theirs.score) < TOLERANCE
    assert ours.name == theirs.name


@pytest.mark.parametrize("word_order", [0, 2])
def test_sentence_chrf_matches_sacrebleu_on_multi30k(
    references, second_references, hypotheses, word_order
):
    sacre = CHRF(word_order=word_order)
    differences = []
    for i in range(0, 1000, 4):
        for refs in ([references[i]], [references[i], second_references[i]]):
            ours = sentence_chrf(hypotheses[i], refs, word_order=word_order)
            differences.append(abs(ours.score - sacre.sentence_score(hypotheses[i], refs).score))
    assert max(differences) < TOLERANCE


def test_chrf_corner_cases_match_sacrebleu():
    cases = [("", "a reference"), ("a hypothesis", "x"), ("abc", "abc"), ("abc", "xyz"),
             ("a b", "ab"), ("(hi) there!", "hi there")]
    for word_order in (0, 2):
        sacre = CHRF(word_order=word_order)
        for hypothesis, reference in cases:
            ours = sentence_chrf(hypothesis, reference, word_order=word_order).score
            theirs = sacre.sentence_score(hypothesis, [reference]).score
            assert abs(ours - theirs) < TOLERANCE, (hypothesis, reference)
        # At corpus level, the hypothesis n-grams of an order its reference lacks ("x" has no
        # bigrams) are left out of the precision, as in sacreBLEU.
        hypotheses, references = zip(*cases, strict=True)
        ours = corpus_chrf(hypotheses, references, word_order=word_order).score
        theirs = sacre.corpus_score(list(hypotheses), [list(references)]).score
        assert abs(ours - theirs) < TOLERANCE


# --- BLEU's pieces, by hand ---------------------------------------------------------------------


def test_ngrams_counts_repeated_ngrams():
    assert ngrams("the cat the cat".split(), 2) == {("the", "cat"): 2, ("cat", "the"): 1}
    assert ngrams(["a"], 2) == {}


def test_modified_precision_clips_the_classic_example():
    # Papineni et al. (2002): without clipping the unigram precision would be 7/7.
    hypothesis = "the the the the the the the".split()
    assert modified_precision(hypothesis, ["the cat is on the mat".split()], 1) == (2, 7)
    two_references = ["the cat is on the mat".split(), "there is a cat on the mat".split()]
    assert modified_precision(hypothesis, two_references, 1) == (2, 7)
    assert modified_precision(hypothesis, two_references, 2) == (0, 6)


def test_modified_precision_clips_by_the_max_over_references_not_the_sum():
    references = ["the cat".split(), "the dog".split()]
    assert modified_precision("the the the".split(), references, 1) == (1, 3)
    assert modified_precision("the cat the cat".split(), ["the cat sat".split()], 2) == (1, 3)


@pytest.mark.parametrize("hyp_len, ref_len, expected", [
    (5, 10, math.exp(1 - 10 / 5)),  # c < r
    (9, 10, math.exp(1 - 10 / 9)),
    (10, 10, 1.0),  # c == r
    (12, 10, 1.0),  # c > r
    (0, 10, 0.0),  # c == 0
    (0, 0, 1.0),
])
def test_brevity_penalty(hyp_len, ref_len, expected):
    assert brevity_penalty(hyp_len, ref_len) == pytest.approx(expected)


def test_closest_reference_length_prefers_the_shorter_on_a_tie():
    assert closest_reference_length(5, [4, 6]) == 4
    assert closest_reference_length(5, [9, 6, 2]) == 6
    result = corpus_bleu(["a b c d e"], [["a b c d"], ["a b c d e f"]])
    assert result.ref_len == 4


def test_corpus_bleu_applies_the_brevity_penalty():
    reference = "a man in an orange hat is looking at something in the street"
    hypothesis = "a man in an orange hat is looking"  # every n-gram matches, but it is short
    result = corpus_bleu([hypothesis], [reference])
    assert result.precisions == (100.0, 100.0, 100.0, 100.0)
    assert result.score == pytest.approx(100 * math.exp(1 - 13 / 8))


def test_corpus_bleu_clips_repeated_words():
    result = corpus_bleu(["the the the the the the the"], ["the cat is on the mat"])
    assert result.matches[0] == 2 and result.precisions[0] == pytest.approx(100 * 2 / 7)


def test_perfect_match_is_100_and_no_overlap_is_0():
    sentences = ["Two dogs play in the snow.", "A woman rides a red bicycle down the hill."]
    assert corpus_bleu(sentences, sentences).score == pytest.approx(100.0)
    assert sentence_bleu(sentences[0], sentences[0]).score == pytest.approx(100.0)
    assert corpus_chrf(sentences, sentences).score == pytest.approx(100.0)
    assert corpus_bleu(["xyz uvw"], ["Two dogs play."]).score == 0.0
    assert sentence_bleu("", "Two dogs play.").score == 0.0
    assert corpus_chrf(["qqq"], ["Two dogs play."]).score == 0.0


def test_smoothing_methods_by_hand():
    # "a cat sat the mat" against "the cat sat on the mat": matches 4/5, 2/4, 0/3, 0/2.
    hypothesis, reference = "a cat sat the mat", "the cat sat on the mat"
    bp = math.exp(1 - 6 / 5)
    expected = {
        "exp": [4 / 5, 2 / 4, 1 / (2 * 3), 1 / (4 * 2)],  # 1 / (2^k * total), k-th zero order
        "floor": [4 / 5, 2 / 4, 0.1 / 3, 0.1 / 2],
        "add-k": [4 / 5, 3 / 5, 1 / 4, 1 / 3],  # + 1 to matches and totals for n >= 2
    }
    for smoothing, precisions in expected.items():
        score = 100 * bp * math.prod(precisions) ** (1 / 4)
        assert sentence_bleu(hypothesis, reference, smoothing=smoothing).score == pytest.approx(
            score
        )
    assert sentence_bleu(hypothesis, reference, smoothing="none").score == 0.0


def test_effective_order_for_short_sentences():
    # A 2-word hypothesis has no 3-grams: sentence BLEU (effective order) averages over
    # orders 1-2 only; corpus BLEU, like sacreBLEU's, gives 0.
    assert sentence_bleu("a cat", "a cat").score == pytest.approx(100.0)
    assert corpus_bleu(["a cat"], ["a cat"]).score == 0.0


def test_corpus_bleu_is_not_the_mean_of_sentence_bleus():
    hypotheses = ["the quick brown fox jumps over the lazy dog near the river bank today",
                  "a dog sat on a rug"]
    references = ["the quick brown fox jumps over the lazy dog near the river bank today",
                  "a cat sat on the mat"]
    sentences = [sentence_bleu(h, r) for h, r in zip(hypotheses, references, strict=True)]
    corpus = corpus_bleu(hypotheses, references)
    mean_of_sentences = sum(s.score for s in sentences) / 2
    assert abs(corpus.score - mean_of_sentences) > 10
    # Corpus BLEU: sum the counts, then take ratios.
    for n in range(4):
        matches = sentences[0].matches[n] + sentences[1].matches[n]
        totals = sentences[0].totals[n] + sentences[1].totals[n]
        assert corpus.precisions[n] == pytest.approx(100 * matches / totals)
    summed = BLEUStatistics(corpus.matches, corpus.totals, corpus.hyp_len, corpus.ref_len)
    assert bleu_from_statistics(summed).score == pytest.approx(corpus.score)
    theirs = BLEU().corpus_score(hypotheses, [references]).score
    assert corpus.score == pytest.approx(theirs, abs=TOLERANCE)


def test_bleu_result_prints_like_sacrebleu():
    hypotheses, references = ["a man in an orange hat"], ["a man in an orange hat looking"]
    ours = str(corpus_bleu(hypotheses, references))
    assert ours == str(BLEU().corpus_score(hypotheses, [references]))


# --- METEOR (simplified) ------------------------------------------------------------------------


@pytest.mark.parametrize("word, expected", [
    ("running", "run"), ("runs", "run"), ("run", "run"), ("walked", "walk"),
    ("walking", "walk"), ("cats", "cat"), ("ponies", "poni"), ("cities", "citi"),
    ("city", "citi"), ("hoping", "hope"), ("hoped", "hope"), ("caresses", "caress"),
    ("agreed", "agree"), ("feed", "feed"), ("falling", "fall"), ("Dogs", "dog"), ("is", "is"),
])
def test_stem(word, expected):
    assert stem(word) == expected


def test_meteor_exact_matches_by_hand():
    result = sentence_meteor("the cat sat", "the cat sat on the mat")
    assert (result.matches, result.chunks) == (3, 1)
    assert (result.precision, result.recall) == (1.0, 0.5)
    fmean = 1.0 * 0.5 / (0.9 * 1.0 + 0.1 * 0.5)  # recall-weighted: 10PR / (R + 9P)
    assert result.fmean == pytest.approx(fmean)
    assert result.penalty == pytest.approx(0.5 * (1 / 3) ** 3)
    assert result.score == pytest.approx(fmean * (1 - 0.5 / 27))


def test_meteor_matches_stems():
    alignment = align_words("the dog runs fast".split(), "the dog running fast".split())
    assert alignment == [(0, 0), (1, 1), (2, 2), (3, 3)]
    result = sentence_meteor("The dog runs fast.", "The dog running fast.")
    assert result.matches == 5 and result.chunks == 1  # the period is a word too
    exact_only = sentence_meteor("The dog jumps fast.", "The dog running fast.")
    assert result.score > exact_only.score


def test_meteor_fragmentation_penalty_lowers_a_scrambled_hypothesis():
    reference = "a man in a blue shirt is playing the guitar on stage"
    in_order = sentence_meteor(reference, reference)
    scrambled = sentence_meteor("playing the guitar on stage a man in a blue shirt is", reference)
    assert scrambled.matches == in_order.matches == 12
    assert scrambled.fmean == pytest.approx(in_order.fmean)
    assert scrambled.chunks == 2 and in_order.chunks == 1
    assert scrambled.score < in_order.score
    shuffled = sentence_meteor("stage on guitar the playing is shirt blue a in man a", reference)
    assert shuffled.score < scrambled.score


def test_meteor_perfect_match_is_just_below_one():
    result = sentence_meteor("two dogs play in the snow", "Two dogs play in the snow")
    assert result.matches == 6 and result.chunks == 1
    assert result.score == pytest.approx(1 - 0.5 / 6**3)  # one chunk still costs a little
    assert result.score < 1


def test_meteor_no_overlap_and_best_reference():
    assert sentence_meteor("xyz", "two dogs").score == 0.0
    assert sentence_meteor("", "two dogs").score == 0.0
    best = sentence_meteor("two dogs play", ["a cat sleeps", "two dogs play"])
    assert best.score == sentence_meteor("two dogs play", "two dogs play").score


def test_count_chunks_and_alignment_of_repeated_words():
    assert count_chunks([(0, 0), (1, 1), (2, 2)]) == 1
    assert count_chunks([(0, 1), (1, 2), (2, 0)]) == 2
    assert count_chunks([]) == 0
    words = "the cat and the dog and the bird".split()
    assert align_words(words, words) == [(i, i) for i in range(len(words))]


def test_corpus_meteor_is_the_mean_of_sentence_scores():
    hypotheses, references = ["the cat sat", "a dog runs"], ["the cat sat down", "the dog ran"]
    mean = sum(sentence_meteor(h, r).score for h, r in zip(hypotheses, references, strict=True))
    assert corpus_meteor(hypotheses, references) == pytest.approx(mean / 2)


# --- The report ---------------------------------------------------------------------------------


def test_evaluate_translations_reports_sacrebleu_with_its_signature(references, hypotheses):
    evaluation = evaluate_translations(hypotheses[:300], references[:300])
    assert "tok:13a" in evaluation.sacrebleu_bleu_signature
    assert "case:mixed" in evaluation.sacrebleu_bleu_signature
    assert "nrefs:1" in evaluation.sacrebleu_bleu_signature
    assert "nc:6" in evaluation.sacrebleu_chrf_signature
    assert abs(evaluation.bleu.score - evaluation.sacrebleu_bleu) < TOLERANCE
    assert abs(evaluation.chrf.score - evaluation.sacrebleu_chrf) < TOLERANCE
    assert 0 < evaluation.meteor < 1
    report = evaluation.format_report()
    assert evaluation.sacrebleu_bleu_signature in report and "METEOR" in report
    assert f"{evaluation.sacrebleu_bleu:.2f}" in str(evaluation)
    assert evaluation.as_dict()["sacrebleu_bleu"] == evaluation.sacrebleu_bleu


def test_evaluate_translations_lowercase_and_two_references():
    hypotheses = ["A dog runs.", "Two men talk."]
    streams = [["A dog runs.", "Two men chat."], ["a dog is running.", "Two men talk."]]
    evaluation = evaluate_translations(hypotheses, streams, lowercase=True)
    assert "case:lc" in evaluation.sacrebleu_bleu_signature
    assert "nrefs:2" in evaluation.sacrebleu_bleu_signature
    assert evaluation.num_references == 2
    assert abs(evaluation.bleu.score - evaluation.sacrebleu_bleu) < TOLERANCE


# --- Bad input ----------------------------------------------------------------------------------

CORPUS_FUNCTIONS = [corpus_bleu, corpus_chrf, corpus_meteor, evaluate_translations]


@pytest.mark.parametrize("function", CORPUS_FUNCTIONS)
def test_length_mismatch_is_rejected(function):
    with pytest.raises(ValueError, match="2 sentences but there are 3 hypotheses"):
        function(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="reference stream 1 has 1 sentences"):
        function(["a", "b"], [["a", "b"], ["a"]])


@pytest.mark.parametrize("function", CORPUS_FUNCTIONS)
def test_empty_or_malformed_input_is_rejected(function):
    with pytest.raises(ValueError, match="hypotheses is empty"):
        function([], [])
    with pytest.raises(ValueError, match="references is empty"):
        function(["a"], [])
    with pytest.raises(ValueError, match="got a single string"):
        function("a cat", ["a cat"])
    with pytest.raises(ValueError, match="not a mixture"):
        function(["a", "b"], ["a", ["b"]])
    with pytest.raises(ValueError, match=r"hypotheses\[1\] must be a string"):
        function(["a", None], ["a", "b"])


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="references is empty"):
        sentence_bleu("a cat", [])
    with pytest.raises(ValueError, match="smoothing must be one of"):
        corpus_bleu(["a"], ["a"], smoothing="laplace")
    with pytest.raises(ValueError, match="tokenize must be '13a' or 'none'"):
        corpus_bleu(["a"], ["a"], tokenize="intl")
    with pytest.raises(ValueError, match="positive n-gram order"):
        ngrams(["a"], 0)
    with pytest.raises(ValueError, match="list of token lists"):
        modified_precision(["a"], ["a", "b"], 1)
    with pytest.raises(ValueError, match="non-negative"):
        brevity_penalty(-1, 3)
