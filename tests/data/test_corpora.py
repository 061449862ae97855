"""Corpora: the embedded default, local files and folders, splits, d2l preprocessing, and the download cache
(never the network: urllib is replaced so any download attempt fails)."""

import hashlib
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stackrnn.data import corpora
from stackrnn.data import DATASETS, Dataset, RemoteFile, embedded_text, fetch, load_corpus, preprocess_d2l
from stackrnn.errors import InputError

TIMEMACHINE = Path(__file__).resolve().parents[2].parent / "shared/data/timemachine/timemachine.txt"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ embedded
def test_embedded_corpus_is_large_and_deterministic():
    text = embedded_text()
    assert len(text) > 100_000
    assert text == embedded_text()
    corpus = load_corpus()
    assert corpus.name == "embedded" and corpus.test is None
    assert corpus.train + corpus.valid == text
    assert 0.08 < len(corpus.valid) / len(text) < 0.12


# --------------------------------------------------------------------------------------- local files
def test_tail_split_is_contiguous_and_near_the_fractions(tmp_path):
    text = "".join(f"line {i} of the corpus\n" for i in range(1000))
    c = load_corpus(data=write(tmp_path / "lines.txt", text), valid_fraction=0.2, test_fraction=0.1)
    assert c.name == "lines"
    assert c.train + c.valid + c.test == text
    n = len(text)
    assert abs(len(c.test) - 0.1 * n) < 30 and abs(len(c.valid) - 0.2 * n) < 30
    # Boundaries moved to line starts, so no line is cut in two.
    assert c.train.endswith("\n") and c.valid.endswith("\n")
    assert c.valid.startswith("line ") and c.test.startswith("line ")


def test_split_without_newlines_cuts_at_exact_fractions(tmp_path):
    text = "abcdefghij" * 100  # 1000 characters, no newline to snap to
    c = load_corpus(data=write(tmp_path / "t.txt", text), valid_fraction=0.25, test_fraction=0.05)
    assert (len(c.train), len(c.valid), len(c.test)) == (700, 250, 50)
    assert c.train + c.valid + c.test == text


def test_zero_valid_fraction_gives_empty_validation(tmp_path):
    c = load_corpus(data=write(tmp_path / "t.txt", "hello there\n"), valid_fraction=0.0)
    assert (c.train, c.valid, c.test) == ("hello there\n", "", None)


def test_ptb_folder_keeps_its_own_split(tmp_path):
    for split in ("train", "valid", "test"):
        write(tmp_path / f"ptb.{split}.txt", f" {split} words here \n")
    c = load_corpus(data=tmp_path, valid_fraction=0.5)  # fractions do not apply to an own split
    assert (c.train, c.valid, c.test) == (" train words here \n", " valid words here \n", " test words here \n")


def test_folder_without_ptb_files_is_rejected(tmp_path):
    write(tmp_path / "ptb.train.txt", "x\n")
    with pytest.raises(InputError, match="ptb.valid.txt"):
        load_corpus(data=tmp_path)


@pytest.mark.parametrize("content", ["", "  \n\t\n"])
def test_empty_or_blank_file_is_rejected(tmp_path, content):
    path = write(tmp_path / "empty.txt", content)
    with pytest.raises(InputError, match="empty.txt is empty"):
        load_corpus(data=path)


def test_text_too_short_for_a_validation_split(tmp_path):
    with pytest.raises(InputError, match="validation"):
        load_corpus(data=write(tmp_path / "t.txt", "abc"), valid_fraction=0.1)


def test_non_utf8_file_is_rejected(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin1.txt is not utf-8 text"):
        load_corpus(data=path)


def test_missing_path_is_rejected(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_corpus(data=tmp_path / "nothing.txt")


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(InputError, match="timemachine") as err:
        load_corpus("wikitext-9000")
    assert all(name in str(err.value) for name in DATASETS)


def test_dataset_and_data_together_are_rejected(tmp_path):
    with pytest.raises(InputError, match="only one"):
        load_corpus("timemachine", data=write(tmp_path / "t.txt", "abc"))


@pytest.mark.parametrize("valid, test", [(-0.1, 0.0), (1.0, 0.0), (0.0, 1.0), (0.6, 0.4)])
def test_bad_fractions_are_rejected(valid, test):
    with pytest.raises(InputError, match="fraction"):
        load_corpus(valid_fraction=valid, test_fraction=test)


# ------------------------------------------------------------------------------------------------ d2l
def test_preprocess_d2l_keeps_letters_spaces_and_line_breaks():
    text = "The Time Machine, by H. G. Wells [1898]\n\n\n  I\n\nIt's 3 o'clock!\n"
    assert preprocess_d2l(text) == "the time machine by h g wells\ni\nit s o clock"


def test_d2l_that_leaves_nothing_is_rejected(tmp_path):
    with pytest.raises(InputError, match="d2l"):
        load_corpus(data=write(tmp_path / "digits.txt", "123 456\n789\n"), d2l=True)


@pytest.mark.skipif(not TIMEMACHINE.is_file(), reason=f"{TIMEMACHINE} is not present")
def test_shared_timemachine_copy():
    assert hashlib.sha1(TIMEMACHINE.read_bytes()).hexdigest() == DATASETS["timemachine"].files[0].digest
    c = load_corpus(data=TIMEMACHINE, d2l=True)
    text = c.train + c.valid
    assert re.fullmatch(r"[a-z \n]+", text)
    assert text.startswith("the time machine by h g wells")


# ---------------------------------------------------------------------------------------- downloads
@pytest.fixture
def fake_dataset(monkeypatch):
    """A one-file dataset registered for this test only; its file is `CONTENT`."""
    content = b"a cached corpus\nwith two lines\n"
    remote = RemoteFile("https://example.invalid/fake.txt", "fake.txt", "sha256", hashlib.sha256(content).hexdigest())
    monkeypatch.setitem(DATASETS, "fake", Dataset("fake", "test data", (remote,)))
    return content


def test_fetch_uses_a_cached_file_with_the_right_checksum(tmp_path, fake_dataset):
    cache = tmp_path / "mycache"
    (cache / "fake").mkdir(parents=True)
    (cache / "fake" / "fake.txt").write_bytes(fake_dataset)
    assert fetch("fake", cache) == [cache / "fake" / "fake.txt"]  # urlopen would raise: no download happened
    c = load_corpus("fake", cache=cache, valid_fraction=0.0)
    assert c.name == "fake" and c.train == fake_dataset.decode()


def test_fetch_default_cache_comes_from_the_environment(tmp_path, fake_dataset):
    folder = tmp_path / "cache" / "fake"  # STACKRNN_CACHE, set by the no_network fixture
    folder.mkdir(parents=True)
    (folder / "fake.txt").write_bytes(fake_dataset)
    assert corpora.cache_dir() == tmp_path / "cache"
    assert fetch("fake") == [folder / "fake.txt"]


def test_damaged_cached_file_is_downloaded_again_and_offline_that_fails(tmp_path, fake_dataset):
    cache = tmp_path / "mycache"
    (cache / "fake").mkdir(parents=True)
    (cache / "fake" / "fake.txt").write_bytes(b"truncated")
    with pytest.raises(InputError, match=r"could not download fake from https://example.invalid/fake.txt") as err:
        fetch("fake", cache)
    assert "--data PATH" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in (cache / "fake").iterdir()) == ["fake.txt"]  # no partial download left behind


class FakeResponse:
    def __init__(self, data):
        self.data = data

    def read(self, n=-1):
        chunk, self.data = self.data, b""
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_download_is_stored_once_checksum_verified(tmp_path, fake_dataset, monkeypatch):
    calls = []

    def serve(url, timeout):
        calls.append(url)
        return FakeResponse(fake_dataset)

    monkeypatch.setattr(urllib.request, "urlopen", serve)
    paths = fetch("fake", tmp_path)
    assert paths[0].read_bytes() == fake_dataset
    fetch("fake", tmp_path)
    assert len(calls) == 1  # the second fetch used the cache


def test_download_with_wrong_checksum_is_rejected(tmp_path, fake_dataset, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: FakeResponse(b"tampered"))
    with pytest.raises(InputError, match="checksum mismatch"):
        fetch("fake", tmp_path)
    assert list((tmp_path / "fake").iterdir()) == []


def test_ptb_download_failure_suggests_a_folder(tmp_path):
    with pytest.raises(InputError, match="ptb.train.txt, ptb.valid.txt, ptb.test.txt"):
        load_corpus("ptb", cache=tmp_path)


def test_a_local_corpus_is_read_in_its_encoding(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(("café au lait\n" * 50).encode("latin-1"))
    assert "café" in load_corpus(data=path, encoding="latin-1").train
    with pytest.raises(InputError, match=r"latin1.txt is not utf-8 text .*--encoding"):
        load_corpus(data=path)
    with pytest.raises(InputError, match="unknown text encoding 'latin-9x'"):
        load_corpus(data=path, encoding="latin-9x")
