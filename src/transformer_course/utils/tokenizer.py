"""Character and byte-pair-encoding (BPE) tokenizers (introduced in chapter 5, "Subword
tokenization").

A tokenizer turns text into a list of integer ids and back. Two are built here:

* :class:`CharTokenizer`: one id per character. Tiny vocabulary, long sequences.
* :class:`BPETokenizer`: starts from characters and learns *merges*, pairs of adjacent symbols
  that occur together often, so frequent words become one token and rare words a few pieces.

Both reserve the same four special tokens at the start of the vocabulary::

    <pad> = 0   fills batches up to a common length
    <unk> = 1   stands for a character the tokenizer cannot represent
    <s>   = 2   beginning of sequence (add_bos=True)
    </s>  = 3   end of sequence (add_eos=True)

Special tokens are never produced from text: encoding the string ``"<s>"`` gives the ids of its
characters ``<``, ``s``, ``>``. They enter a sequence only through ``add_bos``/``add_eos`` or
by the model generating them.

Design choices of :class:`BPETokenizer`, each explained where it is implemented:

* Pre-tokenization (:data:`WORD_PATTERN`) splits text into words that keep their leading space
  (GPT-2 style), so joining the words gives back the text exactly, whatever its whitespace.
* Byte fallback: a character never seen in training is encoded as the tokens of its UTF-8
  bytes, ``<0x00>`` to ``<0xFF>``, which are always in the vocabulary. Every text therefore
  survives ``decode(encode(text))``, emoji and Chinese included, and ``<unk>`` is never used.
* Deterministic training: the most frequent pair is merged; equal counts are broken by the
  pair's strings in code-point order, never by dict or hash order.
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

__all__ = [
    "merge_symbols",
    "PAD",
    "UNK",
    "BOS",
    "EOS",
    "SPECIAL_TOKENS",
    "PAD_ID",
    "UNK_ID",
    "BOS_ID",
    "EOS_ID",
    "WORD_PATTERN",
    "CharTokenizer",
    "BPETokenizer",
    "pre_tokenize",
]

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
# Their ids in every tokenizer of the course, and the defaults of every function that takes one.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))

# How BPE splits text into words before learning merges; merges never cross a word boundary.
# Alternatives, tried in order at each position:
#   " ?[^\W\d_]+"      letters, with the space before them  (" Mann", "Zwei", " fährt")
#   " ?\d+"            digits, with the space before them   (" 2016")
#   " ?(?:[^\w\s]|_)+" punctuation and symbols              (".", " „", "?!")
#   "\s+(?!\S)"        a run of whitespace, except its last space when a word follows, so that
#                      space stays with the word: "a   b" -> "a", "  ", " b"
#   "\s+"              whatever whitespace is left (a tab or newline before a word)
# Every character is a letter, digit, underscore, other symbol or whitespace, so the words
# cover the text without gaps: "".join(words) == text, which makes decoding exact.
WORD_PATTERN = r" ?[^\W\d_]+| ?\d+| ?(?:[^\w\s]|_)+|\s+(?!\S)|\s+"

_FORMAT_VERSION = 1


def pre_tokenize(text: str, pattern: str = WORD_PATTERN) -> list[str]:
    """Split ``text`` into the words BPE works on; ``"".join(pre_tokenize(t)) == t``."""
    return re.findall(pattern, text)


def _byte_token(byte: int) -> str:
    return f"<0x{byte:02X}>"  # SentencePiece's spelling of byte-fallback tokens


def _check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise ValueError(f"expected a str to encode, got {type(text).__name__}")
    return text


def _check_texts(texts: Any, what: str) -> None:
    # A str is an iterable of characters: training on it would silently treat each character as
    # a sentence, so catch the likely mistake of passing one text instead of a list of texts.
    if isinstance(texts, str):
        raise ValueError(f"{what} must be an iterable of texts (e.g. a list of str), got one str")


def _check_characters(characters: Iterable[str], what: str) -> list[str]:
    characters = list(characters)
    not_single = [c for c in characters if not (isinstance(c, str) and len(c) == 1)]
    if not_single:
        raise ValueError(f"{what} must be single-character strings, got {not_single[:5]}")
    repeated = sorted(c for c, n in Counter(characters).items() if n > 1)
    if repeated:
        raise ValueError(f"{what} must be unique, got repeated {repeated[:10]}")
    return characters


def _ids_to_list(ids: Any, vocab_size: int) -> list[int]:
    """Accept a list of ints or a 1-D tensor/array; reject ids outside the vocabulary."""
    if hasattr(ids, "tolist"):  # torch.Tensor, numpy array
        ids = ids.tolist()
    try:
        ids = [int(i) for i in ids]
    except (TypeError, ValueError) as error:
        raise ValueError(f"expected a sequence of integer token ids, got {ids!r:.80}") from error
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(
            f"token ids {bad[:5]} are outside the vocabulary: expected 0 <= id < {vocab_size}"
        )
    return ids


def _dump_json(data: dict[str, Any], path: str | os.PathLike) -> None:
    """Write JSON a person can read: one vocabulary entry or merge per line, text unescaped."""
    parts = []
    for key, value in data.items():
        name = json.dumps(key)
        if isinstance(value, dict) and value:
            items = ",\n    ".join(
                f"{json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False)}"
                for k, v in value.items()
            )
            parts.append(f"  {name}: {{\n    {items}\n  }}")
        elif isinstance(value, list) and value:
            items = ",\n    ".join(json.dumps(v, ensure_ascii=False) for v in value)
            parts.append(f"  {name}: [\n    {items}\n  ]")
        else:
            parts.append(f"  {name}: {json.dumps(value, ensure_ascii=False)}")
    Path(path).write_text("{\n" + ",\n".join(parts) + "\n}\n", encoding="utf-8")


def _load_json(path: str | os.PathLike, expected_format: str, writer: str) -> dict[str, Any]:
    """Read a file written by ``writer`` and check its format tag; ValueError if it is not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is not a readable JSON file ({error}); expected a file written by {writer}"
        ) from error
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(
            f"{path} has format {found!r}, expected {expected_format!r} (a file written by "
            f"{writer})"
        )
    if data.get("version") != _FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {data.get('version')!r}; this code reads version "
            f"{_FORMAT_VERSION}"
        )
    return data


def _check_saved_vocab(path: str | os.PathLike, saved: Any, expected: dict[str, int]) -> None:
    if saved != expected:
        raise ValueError(
            f"{path}: the stored vocabulary does not match the one rebuilt from its settings "
            f"({len(saved) if isinstance(saved, dict) else type(saved).__name__} stored entries, "
            f"{len(expected)} rebuilt); the file was edited or is corrupt"
        )


class CharTokenizer:
    """One token per character: the simplest tokenizer, and the baseline BPE improves on.

    The vocabulary is the four special tokens followed by the characters seen in :meth:`fit`,
    sorted by code point so that the same texts always give the same ids.

    Unknown characters (not seen in ``fit``) are encoded as ``<unk>``, so the round trip is
    lossy for them; ``decode`` shows each as the text ``"<unk>"``. Pass ``strict=True`` to
    :meth:`encode` to get a ``ValueError`` naming them instead.
    """

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, characters: Iterable[str]):
        characters = _check_characters(characters, "characters")
        self.characters = characters
        self._id_to_token = list(SPECIAL_TOKENS) + characters
        self._char_to_id = {c: i for i, c in enumerate(characters, start=len(SPECIAL_TOKENS))}

    @classmethod
    def fit(cls, texts: Iterable[str]) -> CharTokenizer:
        """Build the vocabulary from every character that occurs in ``texts``."""
        _check_texts(texts, "texts")
        seen: set[str] = set()
        for text in texts:
            seen.update(_check_text(text))
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    def encode(
        self, text: str, add_bos: bool = False, add_eos: bool = False, strict: bool = False
    ) -> list[int]:
        """Ids of the characters of ``text``; unseen characters become ``unk_id``.

        With ``strict=True`` an unseen character raises ``ValueError`` instead.
        """
        _check_text(text)
        ids = [self._char_to_id.get(c, self.unk_id) for c in text]
        if strict and self.unk_id in ids:
            unseen = sorted({c for c in text if c not in self._char_to_id})
            raise ValueError(
                f"characters {unseen} were not seen by fit(); the vocabulary has "
                f"{len(self.characters)} characters"
            )
        return ([self.bos_id] if add_bos else []) + ids + ([self.eos_id] if add_eos else [])

    def encode_batch(
        self, texts: Iterable[str], add_bos: bool = False, add_eos: bool = False
    ) -> list[list[int]]:
        """:meth:`encode` for each text."""
        _check_texts(texts, "texts")
        return [self.encode(text, add_bos=add_bos, add_eos=add_eos) for text in texts]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text of ``ids``. ``skip_special`` drops ``<pad>``, ``<s>`` and ``</s>``; ``<unk>``
        is always written as ``"<unk>"`` so that lost characters stay visible."""
        ids = _ids_to_list(ids, self.vocab_size)
        hidden = (self.pad_id, self.bos_id, self.eos_id) if skip_special else ()
        return "".join(self._id_to_token[i] for i in ids if i not in hidden)

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as readable JSON (token -> id)."""
        vocab = {token: i for i, token in enumerate(self._id_to_token)}
        data = {"format": "transformer_course.CharTokenizer", "version": _FORMAT_VERSION}
        _dump_json({**data, "special_tokens": list(SPECIAL_TOKENS), "vocab": vocab}, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        """Read a file written by :meth:`save`; ``ValueError`` if it is not one."""
        data = _load_json(path, "transformer_course.CharTokenizer", "CharTokenizer.save()")
        vocab = data.get("vocab")
        if not isinstance(vocab, dict) or data.get("special_tokens") != list(SPECIAL_TOKENS):
            raise ValueError(
                f"{path}: expected 'special_tokens' {list(SPECIAL_TOKENS)} and a 'vocab' object"
            )
        by_id = sorted(vocab, key=lambda token: vocab[token])
        try:
            tokenizer = cls(by_id[len(SPECIAL_TOKENS) :])
        except ValueError as error:
            raise ValueError(f"{path}: invalid vocabulary: {error}") from error
        expected = {token: i for i, token in enumerate(tokenizer._id_to_token)}
        _check_saved_vocab(path, vocab, expected)
        return tokenizer

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class BPETokenizer:
    """Byte-pair encoding learned from word frequencies, with byte fallback.

    Vocabulary layout (ids in this order):

    1. the special tokens ``<pad>``, ``<unk>``, ``<s>``, ``</s>`` (ids 0-3);
    2. the 256 byte tokens ``<0x00>`` ... ``<0xFF>`` (ids 4-259), used only for characters
       never seen in training;
    3. the characters seen in training, sorted by code point (the *alphabet*);
    4. one token per merge, in the order the merges were learned.

    A merge whose result already exists (``"a" + "bc"`` after ``"ab" + "c"``) reuses that
    token's id, as Hugging Face ``tokenizers`` does, so ids and strings correspond one to one.

    Build one with :meth:`train`, or :meth:`load` a saved one. The constructor rebuilds the
    vocabulary from ``alphabet`` and ``merges``, so those two (with ``pattern``) define a
    tokenizer completely.

    Args:
        alphabet: the base characters.
        merges: ordered pairs of token strings; merge ``i`` creates the token ``left + right``.
        pattern: the pre-tokenization regular expression, :data:`WORD_PATTERN` by default.
        cache_size: how many distinct words :meth:`encode` remembers the tokens of.
    """

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID
    _first_byte_id = len(SPECIAL_TOKENS)

    def __init__(
        self,
        alphabet: Iterable[str],
        merges: Iterable[tuple[str, str]] = (),
        pattern: str = WORD_PATTERN,
        cache_size: int = 100_000,
    ):
        self.alphabet = _check_characters(alphabet, "alphabet")
        self.pattern = pattern
        self._word_regex = re.compile(pattern)

        self._id_to_token = list(SPECIAL_TOKENS) + [_byte_token(b) for b in range(256)]
        self._id_to_token += self.alphabet
        self._token_to_id = {token: i for i, token in enumerate(self._id_to_token)}
        # What each id decodes to: a byte token is one raw byte, any other token its UTF-8 text.
        self._id_to_bytes = [token.encode("utf-8") for token in self._id_to_token]
        for byte in range(256):
            self._id_to_bytes[self._first_byte_id + byte] = bytes([byte])
        # pair of ids -> (rank, id of the merged token); rank = position in the merge list
        self._merge_ranks: dict[tuple[int, int], tuple[int, int]] = {}
        self._merges: list[tuple[str, str]] = []
        for left, right in merges:
            self._add_merge(left, right)

        # Text repeats the same words over and over, so encode remembers each word's tokens
        # (a plain dict, filled until it holds cache_size words).
        self.cache_size = cache_size
        self._cache: dict[str, tuple[int, ...]] = {}

    def _add_merge(self, left: str, right: str) -> int:
        """Append the merge ``(left, right)``; return the id of the merged token."""
        if left not in self._token_to_id or right not in self._token_to_id:
            missing = [t for t in (left, right) if t not in self._token_to_id]
            raise ValueError(
                f"merge {len(self._merges)} ({left!r}, {right!r}) uses {missing}, which is neither "
                "in the alphabet nor made by an earlier merge"
            )
        pair = (self._token_to_id[left], self._token_to_id[right])
        if pair in self._merge_ranks:
            raise ValueError(f"merge ({left!r}, {right!r}) appears twice")
        merged = left + right
        merged_id = self._token_to_id.get(merged)
        if merged_id is None:
            merged_id = len(self._id_to_token)
            self._id_to_token.append(merged)
            self._id_to_bytes.append(merged.encode("utf-8"))
            self._token_to_id[merged] = merged_id
        self._merge_ranks[pair] = (len(self._merges), merged_id)
        self._merges.append((left, right))
        return merged_id

    # --- training -----------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        corpus: Iterable[str],
        vocab_size: int,
        *,
        min_frequency: int = 2,
        pattern: str = WORD_PATTERN,
        verbose: bool = False,
    ) -> BPETokenizer:
        """Learn merges from ``corpus`` until the vocabulary has ``vocab_size`` tokens.

        The classic algorithm (Sennrich et al., 2016) in its efficient form:

        1. Split every text into words and count how often each distinct word occurs.
           Multi30k's 58,000 training sentences hold about 750,000 words but only about 30,000
           distinct ones, and all further work is on the distinct words, weighted by counts.
        2. Count every adjacent pair of symbols, weighted by word count, and remember which
           words contain each pair.
        3. Repeatedly merge the most frequent pair everywhere it occurs. Only the words that
           contain the pair change, so only their pair counts are updated; a heap finds the
           next best pair without rescanning all pairs.

        Ties: among pairs with the same count, the pair whose (left, right) strings come first
        in code-point order is merged, so training is reproducible on any machine.

        Training stops early, with a smaller vocabulary, when no pair occurs at least
        ``min_frequency`` times (a merge seen once only memorises one word).

        Raises ``ValueError`` if ``vocab_size`` cannot even hold the special tokens, the 256
        byte tokens and the alphabet of ``corpus``.
        """
        _check_texts(corpus, "corpus")
        word_counts: Counter[str] = Counter()
        word_regex = re.compile(pattern)
        for text in corpus:
            word_counts.update(word_regex.findall(_check_text(text)))
        alphabet = sorted({c for word in word_counts for c in word})
        base_size = len(SPECIAL_TOKENS) + 256 + len(alphabet)
        if vocab_size < base_size:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: the {len(SPECIAL_TOKENS)} special tokens, "
                f"256 byte tokens and the corpus's {len(alphabet)} distinct characters already "
                f"take {base_size}; expected vocab_size >= {base_size}"
            )
        if min_frequency < 1:
            raise ValueError(f"min_frequency must be at least 1, got {min_frequency}")

        tokenizer = cls(alphabet, pattern=pattern)
        token_of = tokenizer._id_to_token  # grows as merges are added
        # Distinct words in sorted order, as lists of symbol ids, and how often each occurs.
        words = sorted(word_counts)
        counts = [word_counts[w] for w in words]
        symbols = [[tokenizer._token_to_id[c] for c in w] for w in words]

        pair_counts: Counter[tuple[int, int]] = Counter()
        words_with_pair: dict[tuple[int, int], set[int]] = {}
        for index, word in enumerate(symbols):
            for pair in pairwise(word):
                pair_counts[pair] += counts[index]
                words_with_pair.setdefault(pair, set()).add(index)

        # Max-heap by count (stored negated), ties by the pair's strings. Entries go stale when
        # a count changes; rather than searching the heap, a fresh entry is pushed and the stale
        # one is recognised and skipped when it surfaces ("lazy invalidation").
        def heap_entry(pair: tuple[int, int]) -> tuple[int, str, str, tuple[int, int]]:
            return (-pair_counts[pair], token_of[pair[0]], token_of[pair[1]], pair)

        heap = [heap_entry(pair) for pair in pair_counts]
        heapq.heapify(heap)

        progress = None
        if verbose:
            from tqdm.auto import tqdm

            progress = tqdm(total=vocab_size - base_size, desc="BPE merges", unit="merge")
        while len(token_of) < vocab_size and heap:
            negative_count, _, _, pair = heapq.heappop(heap)
            if pair_counts.get(pair, 0) != -negative_count:
                continue  # stale: this pair's count changed after the entry was pushed
            if -negative_count < min_frequency:
                break
            size_before = len(token_of)
            merged_id = tokenizer._add_merge(token_of[pair[0]], token_of[pair[1]])
            changed = _merge_pair_in_words(
                pair, merged_id, symbols, counts, pair_counts, words_with_pair
            )
            for changed_pair in changed:
                if pair_counts.get(changed_pair, 0) > 0:
                    heapq.heappush(heap, heap_entry(changed_pair))
            if progress is not None:
                progress.update(len(token_of) - size_before)
        if progress is not None:
            progress.close()
        return tokenizer

    # --- encoding -----------------------------------------------------------------------------

    def _encode_word(self, word: str) -> tuple[int, ...]:
        """Tokens of one pre-tokenized word: characters, then merges in the order learned."""
        symbols: list[int] = []
        for char in word:
            char_id = self._token_to_id.get(char)
            if char_id is not None:
                symbols.append(char_id)
            else:  # byte fallback: never seen in training, spell it as its UTF-8 bytes
                symbols.extend(self._first_byte_id + b for b in char.encode("utf-8"))
        ranks = self._merge_ranks
        no_merge = (len(ranks), -1)
        while len(symbols) > 1:
            # Apply the earliest-learned merge among adjacent pairs. A merge's inputs exist
            # before it, so this replays training's merges in order. (The rare exception: a
            # merge reusing an existing token's id can enable an earlier-ranked merge, which is
            # then applied too; the result is still a lossless segmentation.)
            best = min(pairwise(symbols), key=lambda pair: ranks.get(pair, no_merge))
            if best not in ranks:
                break
            symbols = merge_symbols(symbols, best, ranks[best][1])
        return tuple(symbols)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Token ids of ``text``, optionally framed by ``<s>`` and ``</s>``."""
        ids = [self.bos_id] if add_bos else []
        cache = self._cache
        for word in self._word_regex.findall(_check_text(text)):
            word_ids = cache.get(word)
            if word_ids is None:
                word_ids = self._encode_word(word)
                if len(cache) < self.cache_size:
                    cache[word] = word_ids
            ids.extend(word_ids)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def encode_batch(
        self, texts: Iterable[str], add_bos: bool = False, add_eos: bool = False
    ) -> list[list[int]]:
        """:meth:`encode` for each text."""
        _check_texts(texts, "texts")
        return [self.encode(text, add_bos=add_bos, add_eos=add_eos) for text in texts]

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` as strings, for display: ``["Zwei", " junge", " Männer"]``.

        Spaces are part of the tokens. Joining the tokens gives ``text`` back, except for
        characters spelled as byte tokens (``"<0xF0>"``).
        """
        return [self._id_to_token[i] for i in self.encode(text)]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        """Text of ``ids``. ``skip_special`` drops ``<pad>``, ``<s>`` and ``</s>``; ``<unk>``
        (never produced by :meth:`encode`, but a model may generate it) is written as
        ``"<unk>"``, as in :class:`CharTokenizer`.

        Byte tokens are joined into bytes before decoding as UTF-8. A byte sequence that is not
        valid UTF-8 (a model can generate one) becomes the replacement character U+FFFD.
        """
        ids = _ids_to_list(ids, self.vocab_size)
        hidden = (self.pad_id, self.bos_id, self.eos_id) if skip_special else ()
        id_to_bytes = self._id_to_bytes
        data = b"".join(id_to_bytes[i] for i in ids if i not in hidden)
        return data.decode("utf-8", errors="replace")

    # --- inspection ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self._id_to_token)

    @property
    def merges(self) -> list[tuple[str, str]]:
        """The learned merges, first learned first: ``[("e", "r"), (" ", "a"), ...]``."""
        return list(self._merges)

    @property
    def vocab(self) -> dict[str, int]:
        """Token string -> id, in id order."""
        return dict(self._token_to_id)

    def id_to_token(self, token_id: int) -> str:
        return self._id_to_token[_ids_to_list([token_id], self.vocab_size)[0]]

    def token_to_id(self, token: str) -> int:
        if token not in self._token_to_id:
            raise ValueError(f"{token!r} is not in the vocabulary of {self.vocab_size} tokens")
        return self._token_to_id[token]

    # --- saving -------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write settings, alphabet, vocabulary and ordered merges as readable JSON.

        The vocabulary is redundant (it follows from alphabet and merges) but lets a reader
        look up ids; :meth:`load` checks that it matches.
        """
        data = {
            "format": "transformer_course.BPETokenizer",
            "version": _FORMAT_VERSION,
            "pattern": self.pattern,
            "byte_fallback": True,
            "special_tokens": list(SPECIAL_TOKENS),
            "alphabet": self.alphabet,
            "merges": [list(pair) for pair in self._merges],
            "vocab": self.vocab,
        }
        _dump_json(data, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a file written by :meth:`save`; ``ValueError`` if it is not one."""
        data = _load_json(path, "transformer_course.BPETokenizer", "BPETokenizer.save()")
        merges = data.get("merges")
        if (
            data.get("special_tokens") != list(SPECIAL_TOKENS)
            or not isinstance(data.get("pattern"), str)
            or not isinstance(data.get("alphabet"), list)
            or not isinstance(merges, list)
            or not all(isinstance(m, list) and len(m) == 2 for m in merges)
        ):
            raise ValueError(
                f"{path}: expected 'special_tokens' {list(SPECIAL_TOKENS)}, a 'pattern' string, "
                "an 'alphabet' list and 'merges' as a list of [left, right] pairs"
            )
        try:
            re.compile(data["pattern"])
            tokenizer = cls(data["alphabet"], [tuple(m) for m in merges], data["pattern"])
        except (ValueError, TypeError, re.error) as error:
            raise ValueError(f"{path}: invalid tokenizer: {error}") from error
        _check_saved_vocab(path, data.get("vocab"), tokenizer.vocab)
        return tokenizer

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self._merges)})"


def merge_symbols(symbols: list, pair: tuple, merged: object) -> list:
    """``symbols`` with every occurrence of ``pair``, scanned left to right, replaced by
    ``merged`` (one BPE merge applied to one word; chapter 5)."""
    left, right = pair
    result: list = []
    i, n = 0, len(symbols)
    while i < n:
        if i + 1 < n and symbols[i] == left and symbols[i + 1] == right:
            result.append(merged)
            i += 2
        else:
            result.append(symbols[i])
            i += 1
    return result


def _merge_pair_in_words(
    pair: tuple[int, int],
    merged_id: int,
    symbols: list[list[int]],
    counts: list[int],
    pair_counts: Counter[tuple[int, int]],
    words_with_pair: dict[tuple[int, int], set[int]],
) -> set[tuple[int, int]]:
    """Merge ``pair`` in every word containing it and update the pair statistics in place.

    Returns the pairs whose counts changed. For each affected word, the pairs of the old
    spelling are subtracted and those of the new one added; words are short, so this is simpler
    than tracking the neighbours of each merge site and just as fast.
    """
    changed: set[tuple[int, int]] = set()
    for index in words_with_pair.pop(pair):
        old = symbols[index]
        new = merge_symbols(old, pair, merged_id)
        symbols[index] = new
        old_pairs = Counter(pairwise(old))
        new_pairs = Counter(pairwise(new))
        count = counts[index]
        for p in old_pairs:
            if p not in new_pairs and p != pair:
                words_with_pair[p].discard(index)
        for p in new_pairs:
            if p not in old_pairs:
                words_with_pair.setdefault(p, set()).add(index)
        for p in old_pairs.keys() | new_pairs.keys():
            delta = new_pairs[p] - old_pairs[p]
            if delta:
                pair_counts[p] += delta * count
                changed.add(p)
    del pair_counts[pair]
    changed.discard(pair)
    return changed
