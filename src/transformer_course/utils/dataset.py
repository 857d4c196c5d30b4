"""The course's data sets: Multi30k (chapter 12) and TinyTalks (the GPT capstone).

Files are downloaded from their canonical homes, verified against pinned checksums and cached
in a per-user folder, so a notebook in Colab needs no set-up. Resolution order for a file:

1. ``$TRANSFORMER_COURSE_DATA/<dataset>/<file>``: a folder you filled yourself, for machines
   without internet access (never modified: a bad file there is reported, not deleted);
2. the cache, ``$TRANSFORMER_COURSE_CACHE`` or ``~/.cache/transformer_course``;
3. a download into the cache, written to a temporary file and renamed only once verified.

A file whose checksum does not match is removed from the cache and reported; a failed
download says where to put the file by hand.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import statistics
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DatasetError",
    "RemoteFile",
    "fetch",
    "cache_dir",
    "MULTI30K_SPLITS",
    "load_multi30k",
    "corpus_statistics",
    "QAPair",
    "TINYTALKS_ATTRIBUTION",
    "TINYTALKS_LEVELS",
    "load_tinytalks",
    "parse_qa_pairs",
    "difficulty_level",
]

DATA_ENV = "TRANSFORMER_COURSE_DATA"
CACHE_ENV = "TRANSFORMER_COURSE_CACHE"


class DatasetError(RuntimeError):
    """A data file is missing, unreachable or corrupt; the message says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file and the checksum that identifies it.

    ``checksum`` is ``"sha256:<hex>"`` or ``"md5:<hex>"`` (a published MD5 where no SHA-256 is
    known), or None when no checksum has been published; such a file is checked by its line
    count only, and the loader warns.
    """

    dataset: str  # folder name, e.g. "multi30k"
    name: str  # path inside that folder, e.g. "train.de.gz"
    url: str
    checksum: str | None
    lines: int | None = None


def cache_dir() -> Path:
    """Where downloads go: ``$TRANSFORMER_COURSE_CACHE`` or ``~/.cache/transformer_course``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "transformer_course"


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _problem(path: Path, remote: RemoteFile) -> str | None:
    """Why ``path`` is not the file ``remote`` describes, or None when it is."""
    if remote.checksum is not None:
        algorithm, expected = remote.checksum.split(":")
        actual = _digest(path, algorithm)
        if actual != expected:
            return f"{algorithm.upper()} {actual} does not match the expected {expected}"
    if remote.lines is not None:
        try:
            count = len(_read_lines(path))
        except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as error:
            return f"it cannot be read ({type(error).__name__}: {error})"
        if count != remote.lines:
            return f"it has {count} lines, expected {remote.lines}"
    return None


def _cache_error(folder: Path, remote: RemoteFile, error: OSError) -> DatasetError:
    """The message for a cache that cannot be used: a read-only folder, a full disk, a file
    where a folder should be (or a folder where a file should be)."""
    return DatasetError(
        f"cannot use the download cache {folder} for {remote.dataset}/{remote.name} "
        f"({type(error).__name__}: {error.strerror or error}"
        + (f": {error.filename}" if error.filename else "") + "). "
        f"Make that folder writable, or set {CACHE_ENV} to a writable folder, or set "
        f"{DATA_ENV} to a folder that holds {remote.dataset}/{remote.name}."
    )


def _download(remote: RemoteFile, target: Path, timeout: float = 60.0) -> None:
    try:  # a cache folder that cannot be made is reported before any download
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cache_error(target.parent, remote, error) from error
    # The course's files are small (2 MB at most): read the whole download first, so that a
    # network failure and a cache that cannot be written get their own messages.
    try:
        headers = {"User-Agent": "transformer-course"}
        request = urllib.request.Request(remote.url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content = response.read()
    except (urllib.error.URLError, OSError) as error:
        raise DatasetError(
            f"could not download {remote.dataset}/{remote.name} from {remote.url} ({error}).\n"
            f"Without internet access, download it elsewhere and either put it at {target}, or "
            f"set {DATA_ENV} to a folder that holds {remote.dataset}/{remote.name}."
        ) from error
    # Write to a temporary file in the same folder, rename once verified: an interrupted
    # download never leaves a file under the final name.
    tmp = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".part",
                                        dir=target.parent)
        tmp = Path(tmp_name)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        problem = _problem(tmp, remote)
        if problem:
            raise DatasetError(
                f"downloaded {remote.url} but {problem}; the download was deleted. The file may "
                "have changed upstream or the transfer was corrupted: try again, or report it."
            )
        os.replace(tmp, target)
    except OSError as error:
        raise _cache_error(target.parent, remote, error) from error
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def fetch(remote: RemoteFile, download: bool = True) -> Path:
    """Return a verified local copy of ``remote``, downloading it into the cache if needed."""
    if os.environ.get(DATA_ENV):
        local = Path(os.environ[DATA_ENV]).expanduser() / remote.dataset / remote.name
        try:
            found = local.exists()
            problem = _problem(local, remote) if found else None
        except OSError as error:  # unreadable, or a folder of that name
            raise DatasetError(
                f"cannot read {local} (from {DATA_ENV}): {type(error).__name__}: "
                f"{error.strerror or error}. Make it a readable file, or unset {DATA_ENV}."
            ) from error
        if found:
            if problem:
                raise DatasetError(
                    f"{local} (from {DATA_ENV}) is corrupt or a different file: {problem}. "
                    f"Replace it with a fresh copy of {remote.url}."
                )
            return local
    cached = cache_dir() / remote.dataset / remote.name
    try:
        found = cached.exists()
        problem = _problem(cached, remote) if found else None
        if found and problem is not None:
            cached.unlink()  # corrupt or partial: remove it and fetch a fresh copy
    except OSError as error:
        raise _cache_error(cached.parent, remote, error) from error
    if found:
        if problem is None:
            return cached
        if not download:
            raise DatasetError(f"removed the corrupt cached file {cached}: {problem}")
        print(f"Removed the corrupt cached file {cached} ({problem}); downloading it again.")
    if not download:
        raise DatasetError(
            f"{remote.dataset}/{remote.name} is not available locally; looked in "
            f"{DATA_ENV} ({os.environ.get(DATA_ENV) or 'not set'}) and {cached}"
        )
    _download(remote, cached)
    return cached


def _read_lines(path: Path) -> list[str]:
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"  # gzip's magic number, whatever the file name
    opener = gzip.open if compressed else open
    with opener(path, "rt", encoding="utf-8", newline="\n") as f:
        return f.read().splitlines()


# --- Multi30k -------------------------------------------------------------------------------

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
# SHA-256 of the files at multi30k/dataset commit a3d2e0d2; for the newer test sets, the MD5
# published alongside torchtext's Multi30k loader (it matches the files above for the splits
# we could check). test_2018_flickr.de has no published checksum: it is checked by line count.
_MULTI30K_CHECKSUMS = {
    "train.de.gz": "sha256:726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "train.en.gz": "sha256:d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "val.de.gz": "sha256:f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "val.en.gz": "sha256:14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "test_2016_flickr.de.gz": (
        "sha256:9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8"
    ),
    "test_2016_flickr.en.gz": (
        "sha256:611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9"
    ),
    "test_2017_flickr.de.gz": "md5:6a8d5c87f6ae19e3d35681aa6fd16571",
    "test_2017_flickr.en.gz": "md5:005396bac545d880abe6f00bbb7dbbb4",
    "test_2017_mscoco.de.gz": "md5:e8cd6ec2bc8a11fc846fa48a46e3d0bb",
    "test_2017_mscoco.en.gz": "md5:a7b684e0edbef1d4a23660c8e8e743fd",
    "test_2018_flickr.en.gz": "md5:a152878809942757a55ce087073486b8",
    "test_2018_flickr.de.gz": None,
}

MULTI30K_SPLITS = {
    "train": 29000,
    "val": 1014,
    "test_2016_flickr": 1000,
    "test_2017_flickr": 1000,
    "test_2017_mscoco": 461,
    "test_2018_flickr": 1071,
}


def multi30k_file(split: str, language: str) -> RemoteFile:
    if split not in MULTI30K_SPLITS:
        raise ValueError(f"unknown Multi30k split {split!r}; choose from {list(MULTI30K_SPLITS)}")
    if language not in ("de", "en"):
        raise ValueError(f"this course uses the German-English pairs; got language {language!r}")
    name = f"{split}.{language}.gz"
    return RemoteFile("multi30k", name, MULTI30K_URL + name, _MULTI30K_CHECKSUMS[name],
                      lines=MULTI30K_SPLITS[split])


def load_multi30k(split: str = "train", download: bool = True) -> list[tuple[str, str]]:
    """The (German, English) sentence pairs of a Multi30k task-1 split, as raw text.

    ``split``: ``train`` (29,000 pairs), ``val`` (1,014), ``test_2016_flickr`` (1,000; the
    usual test set, also available as ``test``), ``test_2017_flickr``, ``test_2017_mscoco``
    or ``test_2018_flickr``.
    """
    split = "test_2016_flickr" if split == "test" else split
    german = _read_lines(fetch(multi30k_file(split, "de"), download))
    english = _read_lines(fetch(multi30k_file(split, "en"), download))
    if len(german) != len(english):
        raise DatasetError(
            f"Multi30k {split}: {len(german)} German lines but {len(english)} English lines"
        )
    return [(de.strip(), en.strip()) for de, en in zip(german, english, strict=True)]


def corpus_statistics(sentences: list[str]) -> dict:
    """Sentence count, whitespace-token lengths and vocabulary of a list of sentences."""
    if not sentences:
        raise ValueError("corpus_statistics needs at least one sentence")
    lengths = [len(s.split()) for s in sentences]
    words = Counter(w for s in sentences for w in s.split())
    return {
        "sentences": len(sentences),
        "tokens": sum(lengths),
        "mean_length": statistics.fmean(lengths),
        "median_length": statistics.median(lengths),
        "max_length": max(lengths),
        "min_length": min(lengths),
        "vocabulary": len(words),
        "singletons": sum(1 for c in words.values() if c == 1),
        "lengths": lengths,
        "most_common": words.most_common(10),
    }


# --- TinyTalks -------------------------------------------------------------------------------

TINYTALKS_URL = (
    "https://raw.githubusercontent.com/harvard-edge/cs249r_book/dev/tinytorch/datasets/tinytalks/"
)
TINYTALKS_ATTRIBUTION = (
    'TinyTalks: A Conversational Q&A Dataset for Educational Transformers, TinyTorch '
    "Contributors, 2025 (https://github.com/harvard-edge/cs249r_book, "
    "tinytorch/datasets/tinytalks), licensed under CC BY 4.0."
)
_TINYTALKS_FILES = {  # split: (file, SHA-256)
    "all": ("tinytalks_v1.txt", "62e5b5e2095c4cd4b4a70ae9644b943f157c513f4099e2d029489ab945348a21"),
    "train": (
        "splits/train.txt", "734520b4597276ba75949402962ecb94c5e463ed8af1460eac86fbba2a1922be"
    ),
    "val": ("splits/val.txt", "938da1b38d15c1f253bd3a6deb4f546df73d6a5e456d1f6220db280118819c1d"),
    "test": ("splits/test.txt", "4a44d204594c7f0a31202758de75af7fc8a1d17565423004ce8dd9d28bea99cb"),
}
TINYTALKS_SIZES = {"all": 301, "train": 210, "val": 45, "test": 46}
TINYTALKS_LEVELS = {
    1: "greetings and identity",
    2: "simple facts",
    3: "basic math",
    4: "common-sense reasoning",
    5: "multi-turn context",
}


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    level: int

    def as_text(self) -> str:
        """The training format: ``Q: ...\\nA: ...``."""
        return f"Q: {self.question}\nA: {self.answer}"


_GREETING = re.compile(
    r"^(hello|hi|hey|greetings|good (morning|afternoon|evening)|thanks?\b|thank you|bye|goodbye"
    r"|see you|okay|i see)\b"
)
_ABOUT_ASSISTANT = re.compile(
    r"\b(your name|who are you|what are you|are you (a |an )?(robot|human|happy|there)"
    r"|how are you|how do you work|where are you from|when were you|why were you"
    r"|yourself|what can you do|can you (help|hear|chat|speak)|can we talk|do you understand"
    r"|do you know other languages|what language do you|do you want to talk|do you like helping"
    r"|say hello|tinybot|^you are)\b"
)
_INTRODUCTION = re.compile(r"^([Mm]y name is|[Cc]all me|I am [A-Z][a-z]+\.$)")  # a name: capital
_PERSONAL = re.compile(r"^(i|my|it is|his|her|yes|we)\b")
_ASSISTANT_PREFERENCE = re.compile(r"\b(do you (like|play|have)|your favou?rite)\b")
_REASONING = re.compile(
    r"^(if |what happens|what do you use|where do you|when do you|how do you feel|what makes"
    r"|what do you wear|what do you (write|read|listen|watch)|what comes|what season"
    r"|can you (eat|drink|sit|swim)|can an? |do (trees|fish|birds|mammals) have)"
    r"|what do \w+ need|\bor \w+\?$|^is (an? )?\w+ an? \w+\?$"
)


def difficulty_level(question: str) -> int:
    """Assign a TinyTalks question to a difficulty level (the file carries no labels).

    The rules, checked in this order (first match wins):

    3. basic math: the question contains a digit ("What is 6 plus 6?").
    1. greetings and identity: it opens with a greeting, thanks or farewell, asks about the
       assistant itself ("What is your name?", "Can you help me?"), or introduces the user
       ("My name is Alice.", "I am Bob.").
    5. multi-turn context: the user tells something about themselves or answers a previous
       turn ("I have a dog.", "Yes, I did!", "It is sunny today."), or asks the assistant's
       own preferences ("Do you like cheese?"): replies depend on the conversation.
    4. common-sense reasoning: conditionals and consequences ("If it is raining...", "What
       happens if..."), uses, places and times of everyday actions ("What do you use a key
       for?", "Where do you sleep?"), choices ("Is a rock hard or soft?"), categories ("Is a
       dog an animal?") and plausibility ("Can a fish fly?").
    2. simple facts: everything else ("What color is the sky?", "How many legs does a dog
       have?").
    """
    q = question.strip()
    lower = q.lower()
    if re.search(r"\d", q):
        return 3
    if _GREETING.search(lower) or _ABOUT_ASSISTANT.search(lower) or _INTRODUCTION.search(q):
        return 1
    if (_PERSONAL.search(lower) and not q.endswith("?")) or _ASSISTANT_PREFERENCE.search(lower):
        return 5
    if _REASONING.search(lower):
        return 4
    return 2


def parse_qa_pairs(text: str) -> list[QAPair]:
    """Parse ``Q: ...\\nA: ...`` blocks separated by blank lines; reject anything else."""
    pairs = []
    for number, block in enumerate(re.split(r"\n\s*\n", text.strip()), start=1):
        lines = [line.strip() for line in block.strip().splitlines()]
        if len(lines) != 2 or not lines[0].startswith("Q: ") or not lines[1].startswith("A: "):
            raise DatasetError(
                f"block {number} is not a 'Q: ...' line followed by an 'A: ...' line: {block!r}"
            )
        question, answer = lines[0][3:].strip(), lines[1][3:].strip()
        pairs.append(QAPair(question, answer, difficulty_level(question)))
    return pairs


def load_tinytalks(
    split: str = "train", levels: int | None = None, download: bool = True
) -> list[QAPair]:
    """TinyTalks question-answer pairs of ``split`` (``train``, ``val``, ``test`` or ``all``).

    ``levels=N`` keeps the pairs of difficulty levels 1..N (see :func:`difficulty_level`).
    Cite the data set with :data:`TINYTALKS_ATTRIBUTION` wherever you use it.
    """
    if split not in _TINYTALKS_FILES:
        raise ValueError(f"unknown TinyTalks split {split!r}; choose from {list(_TINYTALKS_FILES)}")
    if levels is not None and not 1 <= levels <= 5:
        raise ValueError(f"levels must be between 1 and 5, got {levels}")
    name, sha256 = _TINYTALKS_FILES[split]
    remote = RemoteFile("tinytalks", name, TINYTALKS_URL + name, f"sha256:{sha256}")
    pairs = parse_qa_pairs(fetch(remote, download).read_text(encoding="utf-8"))
    if len(pairs) != TINYTALKS_SIZES[split]:
        expected = TINYTALKS_SIZES[split]
        raise DatasetError(f"TinyTalks {split}: {len(pairs)} pairs, expected {expected}")
    return [p for p in pairs if levels is None or p.level <= levels]
