import json
import os
import random
import subprocess
import sys

import pytest
import torch
from conftest import load_or_skip

from transformer_course.utils.dataset import load_multi30k
from transformer_course.utils.tokenizer import (
    BOS,
    EOS,
    PAD,
    UNK,
    BPETokenizer,
    CharTokenizer,
    pre_tokenize,
)

# Sennrich et al.'s example, one word per text so no spaces are involved. Worked by hand:
#   pairs with counts: e-s 9, s-t 9, w-e 8, l-o 7, o-w 7, n-e 6, e-w 6, w-i 3, i-d 3, d-e 3, e-r 2
#   1. (e, s) 9   ties with (s, t) 9 and wins in code-point order
#   2. (es, t) 9  (s, t) vanished with the first merge
#   3. (l, o) 7   ties with (o, w) 7
#   4. (lo, w) 7
#   5. (e, w) 6   ties with (n, e) and (w, est); "e" < "n" < "w"
#   6. (ew, est) 6, 7. (n, ewest) 6
#   8. (d, est) 3, 9. (i, dest) 3, 10. (w, idest) 3   (each a tie broken by code-point order)
#   11. (e, r) 2, 12. (low, er) 2                     then no pair is left
HAND_CORPUS = ["low"] * 5 + ["lower"] * 2 + ["newest"] * 6 + ["widest"] * 3
HAND_MERGES = [
    ("e", "s"),
    ("es", "t"),
    ("l", "o"),
    ("lo", "w"),
    ("e", "w"),
    ("ew", "est"),
    ("n", "ewest"),
    ("d", "est"),
    ("i", "dest"),
    ("w", "idest"),
    ("e", "r"),
    ("low", "er"),
]
BASE = 4 + 256  # special tokens and byte tokens, before the alphabet

TRICKY_TEXTS = [
    "Zwei junge weiße Männer sind im Freien.",
    "  leading spaces, trailing spaces   ",
    "multiple   spaces\tand\ttabs\nand\n\nnewlines",
    "Grüße aus Köln: „Äpfel“ – 3,50 € (ca.) !?",
    "snake_case_name and __dunder__ and 2016-09-01",
    "",
    " ",
]


def read_multi30k_train() -> list[tuple[str, str]]:
    return load_or_skip(load_multi30k, "train")


@pytest.fixture(scope="module")
def multi30k():
    """German and English sentences: 3,000 pairs to train on and 2,000 further pairs."""
    pairs = read_multi30k_train()
    german = [de for de, _ in pairs[:5000]]
    english = [en for _, en in pairs[:5000]]
    return {"train": german[:3000] + english[:3000], "de": german[3000:], "en": english[3000:]}


@pytest.fixture(scope="module")
def bpe_2000(multi30k):
    return BPETokenizer.train(multi30k["train"], vocab_size=2000)


def naive_bpe_merges(texts: list[str], num_merges: int) -> list[tuple[str, str]]:
    """The textbook algorithm, recounting every pair before every merge: slow but obviously
    right, with the documented tie rule (highest count, then smallest (left, right))."""
    words: dict[tuple[str, ...], int] = {}
    for text in texts:
        for word in pre_tokenize(text):
            words[tuple(word)] = words.get(tuple(word), 0) + 1
    merges = []
    for _ in range(num_merges):
        counts: dict[tuple[str, str], int] = {}
        for word, count in words.items():
            for pair in zip(word, word[1:], strict=False):
                counts[pair] = counts.get(pair, 0) + count
        if not counts:
            break
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        merged_words: dict[tuple[str, ...], int] = {}
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged_words[tuple(out)] = merged_words.get(tuple(out), 0) + count
        words = merged_words
    return merges


# --- pre-tokenization ------------------------------------------------------------------------


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_pre_tokenize_covers_the_text_exactly(text):
    assert "".join(pre_tokenize(text)) == text


def test_pre_tokenize_attaches_one_space_to_the_next_word():
    assert pre_tokenize("Ein Mann,  der läuft.") == [
        "Ein",
        " Mann",
        ",",
        " ",
        " der",
        " läuft",
        ".",
    ]


# --- BPE: round trips and special tokens -----------------------------------------------------


def test_round_trip_on_multi30k_both_languages(bpe_2000, multi30k):
    for language in ("de", "en"):
        sentences = multi30k[language]
        decoded = [bpe_2000.decode(ids) for ids in bpe_2000.encode_batch(sentences)]
        mismatches = [(s, d) for s, d in zip(sentences, decoded, strict=True) if s != d]
        assert not mismatches, f"{language}: {len(mismatches)} sentences differ: {mismatches[:3]}"


def test_round_trip_of_whitespace_punctuation_and_umlauts():
    tokenizer = BPETokenizer.train(TRICKY_TEXTS * 3, vocab_size=BASE + 200)
    for text in TRICKY_TEXTS:
        assert tokenizer.decode(tokenizer.encode(text)) == text
        assert "".join(tokenizer.tokenize(text)) == text


def test_unseen_characters_round_trip_through_byte_tokens(bpe_2000):
    text = "Ein Hund 🐕 läuft nach 北京 — schnell! ✓"
    ids = bpe_2000.encode(text)
    assert bpe_2000.decode(ids) == text
    assert bpe_2000.unk_id not in ids
    tokens = bpe_2000.tokenize(text)
    # 🐕 is U+1F415, UTF-8 F0 9F 90 95: four byte tokens in a row.
    assert tokens[tokens.index("<0xF0>") : tokens.index("<0xF0>") + 4] == [
        "<0xF0>",
        "<0x9F>",
        "<0x90>",
        "<0x95>",
    ]
    assert bpe_2000.token_to_id("<0x00>") == 4 and bpe_2000.token_to_id("<0xFF>") == 259


def test_invalid_utf8_from_a_model_decodes_to_replacement_character(bpe_2000):
    lone_continuation_byte = bpe_2000.token_to_id("<0x9F>")
    assert bpe_2000.decode([lone_continuation_byte]) == "\ufffd"


@pytest.mark.parametrize("tokenizer_class", [BPETokenizer, CharTokenizer])
def test_special_tokens_have_ids_0_to_3(tokenizer_class):
    tokenizer = (
        BPETokenizer.train(HAND_CORPUS, vocab_size=BASE + 20)
        if tokenizer_class is BPETokenizer
        else CharTokenizer.fit(HAND_CORPUS)
    )
    assert (PAD, UNK, BOS, EOS) == ("<pad>", "<unk>", "<s>", "</s>")
    ids = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id)
    assert ids == (0, 1, 2, 3)
    assert tokenizer.decode([0, 1, 2, 3], skip_special=False) == "<pad><unk><s></s>"
    # <pad>, <s> and </s> are dropped; <unk> stays visible, it marks lost text.
    assert tokenizer.decode([2, 1, 3, 0]) == "<unk>"


def test_add_bos_eos_and_decode_skips_special_tokens(bpe_2000):
    plain = bpe_2000.encode("Ein Mann.")
    framed = bpe_2000.encode("Ein Mann.", add_bos=True, add_eos=True)
    assert framed == [bpe_2000.bos_id] + plain + [bpe_2000.eos_id]
    assert bpe_2000.encode("Ein Mann.", add_eos=True) == plain + [bpe_2000.eos_id]
    padded = framed + [bpe_2000.pad_id] * 3
    assert bpe_2000.decode(padded) == "Ein Mann."
    assert bpe_2000.decode(padded, skip_special=False) == "<s>Ein Mann.</s><pad><pad><pad>"
    assert bpe_2000.decode(torch.tensor(padded)) == "Ein Mann."  # tensors are accepted
    batch = bpe_2000.encode_batch(["Ein Mann.", "A man."], add_bos=True)
    assert batch[0] == [bpe_2000.bos_id] + plain and batch[1][0] == bpe_2000.bos_id


def test_text_spelling_a_special_token_is_encoded_as_characters(bpe_2000):
    ids = bpe_2000.encode("<s> </s> <pad>")
    assert not set(ids) & {0, 1, 2, 3}
    assert bpe_2000.decode(ids) == "<s> </s> <pad>"


def test_bad_inputs_raise_value_error(bpe_2000):
    with pytest.raises(ValueError, match="expected a str"):
        bpe_2000.encode(["a list"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe_2000.decode([5, bpe_2000.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe_2000.decode([-1])
    with pytest.raises(ValueError, match="iterable of texts"):
        BPETokenizer.train("one string, not a list of texts", vocab_size=1000)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        bpe_2000.token_to_id("no such token")


# --- BPE: training ----------------------------------------------------------------------------


def test_first_merges_match_the_hand_computation():
    tokenizer = BPETokenizer.train(HAND_CORPUS, vocab_size=1000)
    assert tokenizer.merges == HAND_MERGES
    # Training stopped when no pair was left: specials, bytes, 10 letters, 12 merged tokens.
    assert tokenizer.alphabet == list("deilnorstw")
    assert tokenizer.vocab_size == BASE + 10 + 12
    assert tokenizer.vocab_size < 1000


def test_vocab_size_limits_the_number_of_merges():
    tokenizer = BPETokenizer.train(HAND_CORPUS, vocab_size=BASE + 10 + 4)
    assert tokenizer.merges == HAND_MERGES[:4]
    assert tokenizer.vocab_size == BASE + 10 + 4


def test_encode_applies_merges_in_the_order_learned():
    tokenizer = BPETokenizer.train(HAND_CORPUS, vocab_size=1000)
    # l o w e s t -> l o w es t -> l o w est -> lo w est -> low est
    assert tokenizer.tokenize("lowest") == ["low", "est"]
    # n e w e r: (e, w) was learned before (e, r), so it claims the first "e"
    assert tokenizer.tokenize("newer") == ["n", "ew", "er"]
    assert tokenizer.tokenize("wider") == ["w", "i", "d", "er"]
    assert tokenizer.tokenize("widest") == ["widest"]


def test_merges_are_weighted_by_word_frequency():
    rare_words = ["qza", "qzb", "qzc", "qzd", "qze"]  # (q, z) in 5 distinct words, once each
    # (x, y) occurs in one distinct word, 10 times: counted by occurrences it wins, although
    # (q, z) would win if distinct words were counted, and also wins ties in code-point order.
    tokenizer = BPETokenizer.train(["xy"] * 10 + rare_words, vocab_size=1000)
    assert tokenizer.merges[:2] == [("x", "y"), ("q", "z")]
    # With only 3 occurrences of "xy", the 5 rare words together outweigh it.
    tokenizer = BPETokenizer.train(["xy"] * 3 + rare_words, vocab_size=1000)
    assert tokenizer.merges[:2] == [("q", "z"), ("x", "y")]


def test_min_frequency_stops_training():
    corpus = ["xy"] * 3 + ["ab"]
    assert BPETokenizer.train(corpus, vocab_size=1000).merges == [("x", "y")]
    assert BPETokenizer.train(corpus, vocab_size=1000, min_frequency=4).merges == []
    assert BPETokenizer.train(corpus, vocab_size=1000, min_frequency=1).merges == [
        ("x", "y"),
        ("a", "b"),
    ]


def test_fast_training_matches_the_naive_algorithm():
    # Random words from a small syllable set, with repeated letters ("aaaa") so that
    # overlapping pairs and merges reusing an existing token both occur.
    rng = random.Random(0)
    syllables = ["a", "aa", "ab", "ba", "en", "er", "ch", "sch", "ei", "n", "e", "ü", "ß"]
    texts = [
        " ".join("".join(rng.choices(syllables, k=rng.randint(1, 5))) for _ in range(8))
        for _ in range(300)
    ]
    tokenizer = BPETokenizer.train(texts, vocab_size=BASE + 12 + 150)
    assert len(tokenizer.merges) >= 150
    assert tokenizer.merges == naive_bpe_merges(texts, len(tokenizer.merges))


def test_training_is_deterministic_across_runs_orders_and_hash_seeds(multi30k):
    texts = multi30k["train"][:300]
    first = BPETokenizer.train(texts, vocab_size=800).merges
    assert BPETokenizer.train(texts, vocab_size=800).merges == first
    assert BPETokenizer.train(list(reversed(texts)), vocab_size=800).merges == first
    # A fresh interpreter with another string-hash seed: set and dict order of str keys
    # changes, the merges must not.
    script = (
        "import json, sys\n"
        "from transformer_course.utils.tokenizer import BPETokenizer\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps(BPETokenizer.train(texts, vocab_size=800).merges))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert [tuple(pair) for pair in json.loads(result.stdout)] == first


def test_vocab_size_smaller_than_the_base_vocabulary_raises():
    # 4 special tokens + 256 bytes + 10 letters = 270 tokens before any merge.
    with pytest.raises(ValueError, match=r"vocab_size=269 is too small.*>= 270"):
        BPETokenizer.train(HAND_CORPUS, vocab_size=269)
    assert BPETokenizer.train(HAND_CORPUS, vocab_size=270).merges == []


def test_larger_vocabulary_gives_fewer_tokens_per_sentence(multi30k):
    sentences = multi30k["de"][:500] + multi30k["en"][:500]

    def tokens_per_sentence(tokenizer):
        return sum(len(ids) for ids in tokenizer.encode_batch(sentences)) / len(sentences)

    char_level = CharTokenizer.fit(multi30k["train"])
    sizes = [500, 1000, 2000]
    lengths = [tokens_per_sentence(BPETokenizer.train(multi30k["train"], s)) for s in sizes]
    assert tokens_per_sentence(char_level) > lengths[0] > lengths[1] > lengths[2]
    # Multi30k averages ~12-13 words per sentence; 2,000 tokens make common words one token.
    assert lengths[2] < 1.6 * 13


def test_cache_does_not_change_the_result(bpe_2000, multi30k):
    uncached = BPETokenizer(bpe_2000.alphabet, bpe_2000.merges, cache_size=0)
    sentences = multi30k["de"][:200]
    assert uncached.encode_batch(sentences) == bpe_2000.encode_batch(sentences)


# --- BPE: saving and loading -----------------------------------------------------------------


def test_save_load_round_trip_gives_the_same_ids(bpe_2000, multi30k, tmp_path):
    path = tmp_path / "bpe.json"
    bpe_2000.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.merges == bpe_2000.merges and loaded.vocab == bpe_2000.vocab
    sentences = multi30k["de"][:200] + multi30k["en"][:200] + ["🐕 北京"]
    assert loaded.encode_batch(sentences) == bpe_2000.encode_batch(sentences)


def test_saved_json_is_readable(tmp_path):
    tokenizer = BPETokenizer.train(HAND_CORPUS + ["Müller"] * 2, vocab_size=1000)
    path = tmp_path / "bpe.json"
    tokenizer.save(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert [tuple(pair) for pair in data["merges"]] == tokenizer.merges
    assert data["vocab"]["<s>"] == 2 and data["vocab"]["lower"] == tokenizer.token_to_id("lower")
    assert data["special_tokens"] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert '\n    ["e", "s"],\n' in text  # one merge per line
    assert '"ü"' in text  # non-ASCII characters are written as themselves, not \u escapes


def test_loading_a_corrupt_or_foreign_file_raises_value_error(tmp_path):
    tokenizer = BPETokenizer.train(HAND_CORPUS, vocab_size=1000)
    good = tmp_path / "bpe.json"
    tokenizer.save(good)
    data = json.loads(good.read_text(encoding="utf-8"))

    truncated = tmp_path / "truncated.json"
    truncated.write_text(good.read_text(encoding="utf-8")[:100], encoding="utf-8")
    with pytest.raises(ValueError, match="not a readable JSON file"):
        BPETokenizer.load(truncated)

    char_file = tmp_path / "char.json"
    CharTokenizer.fit(HAND_CORPUS).save(char_file)
    with pytest.raises(ValueError, match="expected 'transformer_course.BPETokenizer'"):
        BPETokenizer.load(char_file)
    with pytest.raises(ValueError, match="expected 'transformer_course.CharTokenizer'"):
        CharTokenizer.load(good)

    unknown_token = tmp_path / "unknown_token.json"
    unknown_token.write_text(
        json.dumps({**data, "merges": [["e", "s"], ["xyz", "t"]]}), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="'xyz'.*neither in the alphabet nor made by"):
        BPETokenizer.load(unknown_token)

    edited_vocab = tmp_path / "edited_vocab.json"
    edited_vocab.write_text(
        json.dumps({**data, "vocab": {**data["vocab"], "es": 5}}), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="does not match"):
        BPETokenizer.load(edited_vocab)

    no_merges = tmp_path / "no_merges.json"
    no_merges.write_text(json.dumps({**data, "merges": "e s"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"list of \[left, right\] pairs"):
        BPETokenizer.load(no_merges)


# --- CharTokenizer ---------------------------------------------------------------------------


def test_char_tokenizer_fit_encode_decode():
    tokenizer = CharTokenizer.fit(["hallo", "Welt!"])
    assert tokenizer.characters == ["!", "W", "a", "e", "h", "l", "o", "t"]  # sorted
    assert tokenizer.vocab_size == 4 + 8
    ids = tokenizer.encode("hallo Welt!", add_bos=True, add_eos=True)
    assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
    assert ids[1:3] == [4 + 4, 4 + 2]  # "h", "a"
    assert tokenizer.decode(tokenizer.encode("Welt!")) == "Welt!"
    assert tokenizer.decode(ids + [tokenizer.pad_id]) == "hallo<unk>Welt!"  # " " was not seen


def test_char_tokenizer_unknown_characters():
    tokenizer = CharTokenizer.fit(["abc"])
    assert tokenizer.encode("abxc🙂") == [4, 5, tokenizer.unk_id, 6, tokenizer.unk_id]
    with pytest.raises(ValueError, match=r"\['x', '🙂'\] were not seen"):
        tokenizer.encode("abxc🙂", strict=True)
    assert tokenizer.encode("cab", strict=True) == [6, 4, 5]


def test_char_tokenizer_save_load(tmp_path):
    tokenizer = CharTokenizer.fit(["Grüße\tund ß", "x"])
    path = tmp_path / "chars.json"
    tokenizer.save(path)
    loaded = CharTokenizer.load(path)
    assert loaded.characters == tokenizer.characters
    assert loaded.encode("Grüße und x") == tokenizer.encode("Grüße und x")
    assert json.loads(path.read_text(encoding="utf-8"))["vocab"]["ß"] == tokenizer.encode("ß")[0]
    path.write_text("[1, 2, 3]", encoding="utf-8")
    with pytest.raises(ValueError, match="format 'list'"):
        CharTokenizer.load(path)
