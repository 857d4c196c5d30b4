import gzip
import hashlib
import http.server
import os
import shutil
import socket
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import load_or_skip

from transformer_course.utils.dataset import (
    MULTI30K_SPLITS,
    TINYTALKS_ATTRIBUTION,
    DatasetError,
    RemoteFile,
    corpus_statistics,
    difficulty_level,
    fetch,
    load_multi30k,
    load_tinytalks,
    multi30k_file,
    parse_qa_pairs,
)


@pytest.mark.parametrize("split, size", [("train", 29000), ("val", 1014), ("test", 1000)])
def test_multi30k_split_sizes(split, size):
    pairs = load_or_skip(load_multi30k, split)
    assert len(pairs) == size == MULTI30K_SPLITS.get(split, 1000)
    german, english = pairs[0]
    assert german and english and german != english
    assert all(de and en for de, en in pairs)


def test_multi30k_is_raw_cased_text():
    pairs = load_or_skip(load_multi30k, "test")
    assert any(c.isupper() for de, en in pairs for c in en)
    assert any("ä" in de or "ü" in de or "ö" in de or "ß" in de for de, _ in pairs)


def test_unknown_split_and_language_are_errors():
    with pytest.raises(ValueError, match="test_2017_flickr"):
        load_multi30k("testing")
    with pytest.raises(ValueError, match="German-English"):
        multi30k_file("train", "fr")


@pytest.mark.parametrize("split, size", [("train", 210), ("val", 45), ("test", 46), ("all", 301)])
def test_tinytalks_split_sizes(split, size):
    assert len(load_or_skip(load_tinytalks, split)) == size


def test_tinytalks_level_counts_and_selection():
    pairs = load_or_skip(load_tinytalks, "all")
    counts = Counter(p.level for p in pairs)
    assert dict(sorted(counts.items())) == {1: 47, 2: 84, 3: 45, 4: 85, 5: 40}
    train = load_tinytalks("train")
    for n in range(1, 6):
        selected = load_tinytalks("train", levels=n)
        assert {p.level for p in selected} == set(range(1, n + 1))
        assert len(selected) == sum(1 for p in train if p.level <= n)
    with pytest.raises(ValueError, match="between 1 and 5"):
        load_tinytalks("train", levels=6)


@pytest.mark.parametrize(
    "question, level",
    [
        ("Hello!", 1), ("What is your name?", 1), ("My name is Alice.", 1), ("I am Bob.", 1),
        ("Can you help me?", 1), ("Thank you!", 1),
        ("What color is the sky?", 2), ("How many legs does a dog have?", 2),
        ("What is 6 plus 6?", 3), ("Which is bigger, 5 or 3?", 3),
        ("If it is raining, what should you bring?", 4), ("Where do you sleep?", 4),
        ("Is a rock hard or soft?", 4), ("What do you use a key for?", 4),
        ("I have a dog.", 5), ("I am fine.", 5), ("Yes, I did!", 5), ("Do you like cheese?", 5),
    ],
)
def test_difficulty_rules(question, level):
    assert difficulty_level(question) == level


def test_qa_parsing_and_malformed_files():
    pairs = parse_qa_pairs("Q: Hi!\nA: Hello!\n\n\nQ: What is 1 plus 1?\nA: 2.\n")
    assert [(p.question, p.answer, p.level) for p in pairs] == [
        ("Hi!", "Hello!", 1), ("What is 1 plus 1?", "2.", 3)
    ]
    assert pairs[0].as_text() == "Q: Hi!\nA: Hello!"
    with pytest.raises(DatasetError, match="block 2"):
        parse_qa_pairs("Q: Hi!\nA: Hello!\n\nQ: no answer here\n")


def test_attribution_names_the_licence():
    assert "CC BY 4.0" in TINYTALKS_ATTRIBUTION and "TinyTalks" in TINYTALKS_ATTRIBUTION


def test_corpus_statistics():
    stats = corpus_statistics(["a b c", "a b", "d"])
    assert stats["sentences"] == 3 and stats["tokens"] == 6 and stats["vocabulary"] == 4
    assert stats["max_length"] == 3 and stats["median_length"] == 2
    with pytest.raises(ValueError):
        corpus_statistics([])


# --- checksums, corrupt files, downloads ------------------------------------------------------


def _offline_copy(tmp_path: Path, split="val") -> Path:
    """A private TRANSFORMER_COURSE_DATA folder holding real Multi30k files."""
    source = os.environ.get("TRANSFORMER_COURSE_DATA")
    if not source or not (Path(source) / "multi30k" / f"{split}.de.gz").exists():
        pytest.skip("needs TRANSFORMER_COURSE_DATA with the Multi30k files")
    target = tmp_path / "data" / "multi30k"
    target.mkdir(parents=True)
    for language in ("de", "en"):
        shutil.copy(Path(source) / "multi30k" / f"{split}.{language}.gz", target)
    return tmp_path / "data"


def test_corrupted_local_file_is_rejected_and_kept(tmp_path, monkeypatch):
    data = _offline_copy(tmp_path)
    monkeypatch.setenv("TRANSFORMER_COURSE_DATA", str(data))
    assert len(load_multi30k("val")) == 1014
    path = data / "multi30k" / "val.en.gz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"val\.en\.gz.*SHA256.*does not match"):
        load_multi30k("val")
    assert path.exists()  # the user's own folder is never modified


def test_missing_file_is_reported_with_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("TRANSFORMER_COURSE_DATA", str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match=r"multi30k/val\.de\.gz is not available locally"):
        load_multi30k("val", download=False)


class _Server:
    """A tiny HTTP server on loopback standing in for the network."""

    def __init__(self, root: Path):
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
            *a, directory=str(root), **k
        )
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    with gzip.open(root / "lines.gz", "wt", encoding="utf-8") as f:
        f.write("eins\nzwei\ndrei\n")
    s = _Server(root)
    yield s, root
    s.close()


def _remote(url, root, **overrides):
    digest = hashlib.sha256((root / "lines.gz").read_bytes()).hexdigest()
    values = dict(dataset="demo", name="lines.gz", url=url + "lines.gz",
                  checksum=f"sha256:{digest}", lines=3)
    values.update(overrides)
    return RemoteFile(**values)


def test_download_verifies_and_caches(server, tmp_path, monkeypatch):
    s, root = server
    monkeypatch.delenv("TRANSFORMER_COURSE_DATA", raising=False)
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(tmp_path / "cache"))
    path = fetch(_remote(s.url, root))
    assert path == tmp_path / "cache" / "demo" / "lines.gz"
    assert gzip.open(path, "rt").read() == "eins\nzwei\ndrei\n"
    s.close()  # the second call must not need the network
    assert fetch(_remote(s.url, root)) == path
    assert not list(path.parent.glob("*.part"))


def test_download_with_wrong_checksum_leaves_nothing(server, tmp_path, monkeypatch):
    s, root = server
    monkeypatch.delenv("TRANSFORMER_COURSE_DATA", raising=False)
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="does not match.*deleted"):
        fetch(_remote(s.url, root, checksum="sha256:" + "0" * 64))
    assert not any((tmp_path / "cache" / "demo").iterdir())


def test_corrupt_cached_file_is_removed_and_downloaded_again(server, tmp_path, monkeypatch, capsys):
    s, root = server
    monkeypatch.delenv("TRANSFORMER_COURSE_DATA", raising=False)
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "demo" / "lines.gz"
    cached.parent.mkdir(parents=True)
    cached.write_bytes((root / "lines.gz").read_bytes()[:10])  # a partial download
    assert fetch(_remote(s.url, root)) == cached
    assert "Removed the corrupt cached file" in capsys.readouterr().out
    assert cached.read_bytes() == (root / "lines.gz").read_bytes()


def test_file_without_checksum_is_checked_by_line_count(server, tmp_path, monkeypatch):
    s, root = server
    monkeypatch.delenv("TRANSFORMER_COURSE_DATA", raising=False)
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="3 lines, expected 4"):
        fetch(_remote(s.url, root, checksum=None, lines=4))


def test_no_network_says_how_to_supply_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TRANSFORMER_COURSE_DATA", raising=False)
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(tmp_path / "cache"))
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote = RemoteFile("demo", "x.gz", f"http://127.0.0.1:{port}/x.gz", None)
    with pytest.raises(DatasetError) as error:
        fetch(remote)
    message = str(error.value)
    assert "could not download demo/x.gz" in message
    assert "TRANSFORMER_COURSE_DATA" in message and str(tmp_path / "cache") in message


# --- a cache that cannot be written -----------------------------------------------------------


def test_a_cache_under_a_file_is_a_clear_error(server, tmp_path, monkeypatch):
    s, root = server
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.delenv("TRANSFORMER_COURSE_DATA", raising=False)
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(blocker / "cache"))
    with pytest.raises(DatasetError) as error:
        fetch(_remote(s.url, root))
    message = str(error.value)
    assert message.startswith(f"cannot use the download cache {blocker / 'cache' / 'demo'} "
                              "for demo/lines.gz")
    assert "TRANSFORMER_COURSE_CACHE" in message and "could not download" not in message


@pytest.mark.parametrize("broken", ["mkstemp", "replace"])
def test_a_read_only_cache_is_a_clear_error_and_leaves_nothing(server, tmp_path, monkeypatch,
                                                               broken):
    # Tests run as root, where chmod does not stop writes: the refusal is simulated.
    import tempfile

    from transformer_course.utils import dataset as datasets

    s, root = server
    monkeypatch.delenv("TRANSFORMER_COURSE_DATA", raising=False)
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(tmp_path / "cache"))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "cache" / "demo"))

    if broken == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    else:
        monkeypatch.setattr(datasets.os, "replace", refuse)
    with pytest.raises(DatasetError, match=r"cannot use the download cache .*cache/demo for "
                                           r"demo/lines\.gz \(PermissionError: Permission "
                                           r"denied.*set TRANSFORMER_COURSE_CACHE"):
        fetch(_remote(s.url, root))
    monkeypatch.undo()
    assert not list((tmp_path / "cache" / "demo").iterdir())  # no partial download left


def test_a_folder_or_an_undeletable_file_in_the_cache_is_a_clear_error(server, tmp_path,
                                                                        monkeypatch):
    s, root = server
    monkeypatch.delenv("TRANSFORMER_COURSE_DATA", raising=False)
    monkeypatch.setenv("TRANSFORMER_COURSE_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "demo" / "lines.gz"
    cached.mkdir(parents=True)  # a folder where the file should be
    with pytest.raises(DatasetError, match=r"cannot use the download cache .*IsADirectoryError"):
        fetch(_remote(s.url, root))
    cached.rmdir()
    cached.write_bytes(b"a partial download")

    def refuse(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", refuse)
    with pytest.raises(DatasetError, match=r"cannot use the download cache .*Permission denied"):
        fetch(_remote(s.url, root))
