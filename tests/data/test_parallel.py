"""Parallel text: d2l's normalisation, reading source<TAB>target files (skips counted in one warning, every
unusable file a one-line InputError), the split by source hash, the fra-eng dataset from a small local zip (never
the network), and the real Tatoeba file when ../shared is present."""

import hashlib
import io
import random
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

import pytest

from stackrnn.data import parallel
from stackrnn.data.corpora import Dataset, RemoteFile
from stackrnn.data.parallel import (
    BOS,
    EOS,
    PAD,
    TRANSLATE_DATASETS,
    UNK,
    ParallelText,
    dataset_path,
    normalize_d2l,
    prepare_sentence,
    read_parallel,
    split_indices,
    words,
)
from stackrnn.errors import InputError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared beside the repo

FRA = SHARED / "fra_eng" / "fra.txt"
needs_fra = pytest.mark.skipif(not FRA.is_file(), reason="../shared/data/fra_eng/fra.txt is absent")


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read_quietly(path, **kwargs) -> ParallelText:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_parallel(path, **kwargs)


def read_warning(path, **kwargs) -> tuple[ParallelText, str]:
    """The data and the one warning reading it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_parallel(path, **kwargs)
    assert len(caught) == 1, [str(w.message) for w in caught]
    return data, str(caught[0].message)


# ---------------------------------------------------------------------------------------------- sentences
def test_reserved_tokens():
    assert (PAD, UNK, BOS, EOS) == ("<pad>", "<unk>", "<bos>", "<eos>")


@pytest.mark.parametrize("raw, expected", [
    ("Go.", "go ."),
    ("Cours\u202f!", "cours !"),              # the real file's third line: a narrow no-break space before "!"
    ("Ça alors\u202f!", "ça alors !"),
    ("Qui ?", "qui ?"),                        # already spaced: no second space
    ("J'ai faim.", "j'ai faim ."),             # the apostrophe stays inside the word
    ("Attends\xa0!", "attends !"),             # U+00A0
    ("Go...", "go . . ."),                     # each mark after a non-space, as d2l's character loop
    ("Yes, I do.", "yes , i do ."),
    (". Start", ". start"),                    # nothing to separate at the start
])
def test_normalize_d2l(raw, expected):
    assert normalize_d2l(raw) == expected


@pytest.mark.parametrize("raw", ["Go.", " Hi ,  there!! ", "Cours\u202f!", "Wait\xa0...?", ".!?", "a\t.b",
                                 "ΟΔΟΣ.", "Ünïcödé,ok"])
def test_prepare_sentence_is_normalize_d2l_with_whitespace_collapsed(raw):
    assert prepare_sentence(raw, normalize=True, lower=True) == " ".join(normalize_d2l(raw).split())


def test_prepare_sentence_options():
    raw = "  Run!\u202fNow,  Tom. "
    assert prepare_sentence(raw, normalize=True, lower=True) == "run ! now , tom ."
    assert prepare_sentence(raw, normalize=True, lower=False) == "Run ! Now , Tom ."
    assert prepare_sentence(raw, normalize=False, lower=True) == "run! now, tom."  # any Unicode space collapses
    assert prepare_sentence(raw, normalize=False, lower=False) == "Run! Now, Tom."
    assert words(prepare_sentence(raw, normalize=True, lower=True)) == ["run", "!", "now", ",", "tom", "."]


# ------------------------------------------------------------------------------------------------ reading
def test_read_pairs_with_line_numbers_bom_crlf_and_blank_lines(tmp_path):
    path = write(tmp_path / "pairs.txt", "\ufeffGo.\tVa !\r\n\r\nRun!\tCours\u202f!\r\n   \nWho?\tQui ?")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing skipped: no warning
        data = read_parallel(path)
    assert data.source == ["go .", "run !", "who ?"]
    assert data.target == ["va !", "cours !", "qui ?"]
    assert data.lines == [1, 3, 5]
    assert len(data) == 3 and data.path == str(path)
    assert data.skipped == {"no tab": 0, "empty side": 0, "too long": 0}


def test_reverse_extra_columns_and_raw_text(tmp_path):
    attribution = "CC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #1158250 (Wittydev)"
    path = write(tmp_path / "fra.txt", f"Go.\tVa !\t{attribution}\nHi.\tSalut !\t{attribution}\textra\n")
    assert read_parallel(path).target == ["va !", "salut !"]
    back = read_parallel(path, reverse=True)
    assert (back.source, back.target) == (["va !", "salut !"], ["go .", "hi ."])
    raw = read_parallel(path, normalize=False, lower=False)
    assert (raw.source, raw.target) == (["Go.", "Hi."], ["Va !", "Salut !"])


def test_whole_file_preparation_matches_prepare_sentence(tmp_path):
    lines = ["Go.\tVa !", "ΟΔΟΣ\tRoad.", "Run!\u202f \tCours\xa0!", "  A ,b\t c..d  ", "İstanbul?\tİzmir!"]
    path = write(tmp_path / "p.txt", "\n".join(lines))
    for normalize in (True, False):
        for lower in (True, False):
            data = read_parallel(path, normalize=normalize, lower=lower)
            expected = [[prepare_sentence(side, normalize=normalize, lower=lower) for side in line.split("\t")]
                        for line in lines]
            assert [list(p) for p in zip(data.source, data.target)] == expected


def test_each_skip_reason_is_counted_in_one_warning(tmp_path):
    text = "\n".join([
        "Go.\tVa !",
        "no tab here",                      # line 2
        "Hi.\t  \u202f ",                    # line 3: the target is only spaces
        "One two three four five.\tUn.",   # line 4: 6 words with the "."
        "also no tab",                      # line 5
        "\tNothing on the left",            # line 6
        "Stop!\tArrête-toi !",
    ])
    data, message = read_warning(write(tmp_path / "fra.txt", text), max_length=5)
    assert data.source == ["go .", "stop !"] and data.lines == [1, 7]
    assert data.skipped == {"no tab": 2, "empty side": 2, "too long": 1}
    assert message == (f"{tmp_path / 'fra.txt'}: skipped 5 of 7 lines: 2 without a tab (first: line 2), "
                       "2 with an empty side (first: line 3), 1 longer than max_length=5 words (first: line 4)")
    assert "\n" not in message


def test_max_length_counts_words_after_preparation(tmp_path):
    path = write(tmp_path / "p.txt", "Go now.\tVa !\nGo now!!\tVa !\n")  # 3 words, then 4 ("go now ! !")
    assert read_quietly(path, max_length=3).source == ["go now ."]
    assert read_parallel(path, max_length=4).source == ["go now .", "go now ! !"]
    assert len(read_quietly(path, normalize=False, max_length=2)) == 2  # "Go now." is 2 words unnormalised


@pytest.mark.parametrize("text, kwargs, message", [
    ("", {}, r"holds no text: pass a file of source<TAB>target lines"),
    ("\n  \n\r\n", {}, r"holds no text"),
    ("Go. Va !\nHi. Salut !\n", {}, r"no line has a tab: parallel text needs source<TAB>target lines"),
    ("Go.\t \n\tVa !\n", {}, r"every pair has an empty side: write a sentence on both sides of the tab"),
    ("Go now.\tVa !\nHi.\tSalut tout le monde !\n", {"max_length": 2},
     r"every pair is longer than max_length=2 words: raise --max-length"),
    ("Go now.\tVa !\nno tab\n", {"max_length": 2},
     r"every line was skipped \(1 no tab, 1 too long\): raise --max-length"),
])
def test_nothing_left_says_why(tmp_path, text, kwargs, message):
    with pytest.raises(InputError, match=message) as err:
        read_parallel(write(tmp_path / "p.txt", text), **kwargs)
    assert "\n" not in str(err.value)


def test_unreadable_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"missing.txt does not exist: pass a text file of source<TAB>target"):
        read_parallel(tmp_path / "missing.txt")
    with pytest.raises(InputError, match=r"is a folder: pass a text file"):
        read_parallel(tmp_path)
    path = write(tmp_path / "p.txt", "Go.\tVa !\n")
    with pytest.raises(InputError, match=r"unknown text encoding 'utf-9'"):
        read_parallel(path, encoding="utf-9")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InputError, match=r"max_length must be a positive number of words.*--max-length"):
            read_parallel(path, max_length=bad)


def test_bad_encoding_names_the_line(tmp_path):
    path = write(tmp_path / "latin.txt", "Go.\tVa !\nHi.\tSalut !\n".encode() + "Déjà.\tDéjà.\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin.txt line 3 is not utf-8 text .*--encoding latin-1") as err:
        read_parallel(path)
    assert "\n" not in str(err.value)
    assert read_parallel(path, encoding="latin-1").source[2] == "déjà ."


# -------------------------------------------------------------------------------------------------- split
def pairs_file(tmp_path, name: str, lines: list[str]) -> ParallelText:
    return read_parallel(write(tmp_path / name, "\n".join(lines)))


SENTENCES = [f"Sentence number {i}.\tPhrase numéro {i} !" for i in range(2000)]


def test_split_is_deterministic_and_independent_of_order(tmp_path):
    data = pairs_file(tmp_path, "a.txt", SENTENCES)
    split = split_indices(data, 0.1, 0.1)
    assert split == split_indices(pairs_file(tmp_path, "b.txt", SENTENCES), 0.1, 0.1)
    assert sorted(i for idx in split.values() for i in idx) == list(range(len(data)))  # a partition
    assert all(idx == sorted(idx) for idx in split.values())
    # pinned: another hash would reshuffle every user's split
    assert {k: len(v) for k, v in split.items()} == {"train": 1598, "valid": 209, "test": 193}

    where = {data.source[i]: name for name, idx in split.items() for i in idx}
    shuffled = SENTENCES[:]
    random.Random(0).shuffle(shuffled)
    other = pairs_file(tmp_path, "shuffled.txt", shuffled[:1500])  # reordered, and part of it only
    for name, idx in split_indices(other, 0.1, 0.1).items():
        assert all(where[other.source[i]] == name for i in idx)


def test_pairs_sharing_a_source_share_a_split(tmp_path):
    lines = [f"Run {i}!\t{fr} {i} !" for i in range(300) for fr in ("Cours", "Courez", "Fuyez")]
    data = pairs_file(tmp_path, "p.txt", lines)
    split = split_indices(data, 0.2, 0.2)
    for name, idx in split.items():
        sources = {data.source[i] for i in idx}
        assert len(idx) == 3 * len(sources)  # all three translations of each source are here
        assert all(len(sources & {data.source[i] for i in split[other]}) == 0 for other in split if other != name)


def test_zero_fractions_put_everything_in_train(tmp_path):
    data = pairs_file(tmp_path, "p.txt", SENTENCES[:10])
    assert split_indices(data, 0.0, 0.0) == {"train": list(range(10)), "valid": [], "test": []}


@pytest.mark.parametrize("valid, test, message", [
    (-0.1, 0.1, r"data.valid_fraction must be in \[0, 1\), got -0.1"),
    (0.1, 1.0, r"data.test_fraction must be in \[0, 1\), got 1.0"),
    (float("nan"), 0.1, r"data.valid_fraction must be in \[0, 1\), got nan"),
    (0.5, 0.5, r"data.valid_fraction \+ data.test_fraction must be below 1 \(got 0.5 \+ 0.5\)"),
])
def test_bad_fractions(tmp_path, valid, test, message):
    data = pairs_file(tmp_path, "p.txt", SENTENCES[:10])
    with pytest.raises(InputError, match=message):
        split_indices(data, valid, test)


def test_tiny_data_that_cannot_fill_a_split(tmp_path):
    one = pairs_file(tmp_path, "one.txt", ["Go.\tVa !", "Go.\tAllez !"])  # one source: one split holds it all
    with pytest.raises(InputError, match=r"2 pairs are too few for a valid split at data.valid_fraction=0.01: "
                                         r"give more data, raise data.valid_fraction, or set it to 0"):
        split_indices(one, 0.01, 0.0)
    with pytest.raises(InputError, match=r"2 pairs leave none for training .*: give more data, or lower"):
        split_indices(one, 0.0, 0.99999)  # u < test_fraction unless the hash lands in the top 0.001 %
    assert split_indices(one, 0.0, 0.0)["train"] == [0, 1]


# ---------------------------------------------------------------------------------------- named datasets
def test_fra_eng_is_d2ls_archive():
    assert list(TRANSLATE_DATASETS) == ["fra-eng"]
    ds, member = parallel._DATASETS["fra-eng"]
    (remote,) = ds.files
    assert remote.url == "http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip"
    assert (remote.algorithm, remote.digest) == ("sha1", "94646ad1522d915e7b0f9296181140edcf86a4f5")
    assert member == "fra-eng/fra.txt"


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


FRA_ZIP = {"fra-eng/": b"", "fra-eng/fra.txt": "Go.\tVa !\nRun!\tCours\u202f!\n".encode(),
           "fra-eng/_about.txt": b"about"}


@pytest.fixture
def local_fra_eng(tmp_path, monkeypatch):
    """Point fra-eng at a tiny zip served from a file:// URL; returns a function that registers an archive (and
    optionally a wrong digest) and gives back the cache folder."""

    def register(members=FRA_ZIP, digest=None):
        archive = write(tmp_path / "served" / "fra-eng.zip", zip_bytes(members))
        digest = digest or hashlib.sha1(archive.read_bytes()).hexdigest()
        remote = RemoteFile(archive.as_uri(), "fra-eng.zip", "sha1", digest)
        monkeypatch.setitem(parallel._DATASETS, "fra-eng", (Dataset("fra-eng", "tiny", (remote,)), "fra-eng/fra.txt"))
        return tmp_path / "cache"

    return register


def test_fra_eng_is_downloaded_verified_and_extracted_once(local_fra_eng, monkeypatch):
    cache = local_fra_eng()
    path = dataset_path("fra-eng", cache)
    assert path == cache / "fra-eng" / "fra-eng" / "fra.txt"
    assert read_parallel(path).target == ["va !", "cours !"]
    assert sorted(p.name for p in (cache / "fra-eng").iterdir()) == ["fra-eng", "fra-eng.zip"]  # no temp left
    # Once extracted, the file is used as it is: neither the archive nor the network is needed again.
    (cache / "fra-eng" / "fra-eng.zip").unlink()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded again"))
    assert dataset_path("fra-eng", cache) == path


def test_fra_eng_from_an_archive_already_in_the_cache(local_fra_eng, monkeypatch, tmp_path):
    cache = local_fra_eng()
    write(cache / "fra-eng" / "fra-eng.zip", (tmp_path / "served" / "fra-eng.zip").read_bytes())
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded although cached"))
    assert dataset_path("fra-eng").read_text(encoding="utf-8").startswith("Go.\tVa !")  # $STACKRNN_CACHE


def test_fra_eng_with_a_wrong_checksum_leaves_nothing_behind(local_fra_eng):
    cache = local_fra_eng(digest="0" * 40)
    with pytest.raises(InputError, match=r"checksum mismatch for file:.*fra-eng.zip: expected sha1 0000"):
        dataset_path("fra-eng", cache)
    assert list((cache / "fra-eng").iterdir()) == []


@pytest.mark.parametrize("bad", ["../escaped.txt", "/tmp/absolute.txt", "fra-eng/../../escaped.txt"])
def test_zip_members_outside_the_folder_are_refused(local_fra_eng, bad):
    cache = local_fra_eng({**FRA_ZIP, bad: b"evil"})
    with pytest.raises(InputError, match=r"refusing to extract it"):
        dataset_path("fra-eng", cache)
    assert not (cache / "escaped.txt").exists() and not (cache / "fra-eng" / "escaped.txt").exists()
    assert sorted(p.name for p in (cache / "fra-eng").iterdir()) == ["fra-eng.zip"]  # the temp folder is gone


def test_zip_without_the_text_file_or_not_a_zip(local_fra_eng, tmp_path, monkeypatch):
    cache = local_fra_eng({"other/fra.txt": b"Go.\tVa !\n"})
    with pytest.raises(InputError, match=r"holds no fra-eng/fra.txt: delete it so it is downloaded again"):
        dataset_path("fra-eng", cache)
    assert sorted(p.name for p in (cache / "fra-eng").iterdir()) == ["fra-eng.zip"]

    archive = write(tmp_path / "served" / "broken.zip", b"not a zip at all")
    remote = RemoteFile(archive.as_uri(), "broken.zip", "sha1", hashlib.sha1(archive.read_bytes()).hexdigest())
    monkeypatch.setitem(parallel._DATASETS, "fra-eng", (Dataset("fra-eng", "tiny", (remote,)), "fra-eng/fra.txt"))
    with pytest.raises(InputError, match=r"cannot extract .*broken.zip \(File is not a zip file\): delete it"):
        dataset_path("fra-eng", cache)


def test_unknown_dataset_and_failed_download(tmp_path):
    with pytest.raises(InputError, match=r"unknown translation dataset 'deu-eng': use one of fra-eng, or pass"):
        dataset_path("deu-eng")
    with pytest.raises(InputError, match=r"could not download fra-eng .*\(fra.txt, extracted from fra-eng.zip\)"):
        dataset_path("fra-eng", tmp_path)


# ----------------------------------------------------------------------------------------- the real file
@pytest.fixture(scope="module")
def fra() -> ParallelText:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the published file has no line to skip
        return read_parallel(FRA)


@needs_fra
def test_real_file_reads_every_line(fra):
    assert len(fra) == 167_130 and fra.lines[-1] == 167_130
    assert list(zip(fra.source[:5], fra.target[:5])) == [
        ("go .", "va !"), ("hi .", "salut !"), ("run !", "cours !"), ("run !", "courez !"), ("who ?", "qui ?")]
    assert not any("\u202f" in s or "\xa0" in s for s in fra.target[:2000])


@needs_fra
def test_real_file_with_max_length(fra):
    data, message = read_warning(FRA, max_length=10)
    assert len(data) == 140_658 and data.skipped["too long"] == 26_472
    assert message.endswith("skipped 26,472 of 167,130 lines: 26,472 longer than max_length=10 words "
                            "(first: line 2637)")
    assert all(len(words(s)) <= 10 and len(words(t)) <= 10 for s, t in zip(data.source, data.target))
    assert 26_472 == sum(max(len(words(s)), len(words(t))) > 10 for s, t in zip(fra.source, fra.target))


@needs_fra
def test_real_file_split_honours_the_fractions_and_groups_sources(fra):
    split = split_indices(fra, 0.05, 0.05)
    assert {k: len(v) for k, v in split.items()} == {"train": 150_486, "valid": 8_257, "test": 8_387}
    for name in ("valid", "test"):
        assert abs(len(split[name]) / len(fra) - 0.05) < 0.005
    test_sources = {fra.source[i] for i in split["test"]}
    assert not any(fra.source[i] in test_sources for i in split["train"] + split["valid"])
