"""Labelled texts: every format, every kind of bad input (one line naming the file and line), and the named
datasets from a pre-filled cache or a small local archive (never the network)."""

import hashlib
import io
import json
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stackrnn.data import CLASSIFY_DATASETS, Examples, load_dataset, read_labelled, read_lines
from stackrnn.data import labelled
from stackrnn.data.corpora import Dataset, RemoteFile
from stackrnn.errors import InputError

SST2 = Path(__file__).resolve().parents[2].parent / "shared/data/sst2_sentences"


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def pairs(ex: Examples) -> list[tuple[str, str]]:
    return list(zip(ex.labels, ex.texts))


# ------------------------------------------------------------------------------------------------- formats
def test_sst_lines_skip_blank_lines_and_accept_crlf_and_a_bom(tmp_path):
    path = write(tmp_path / "stsa.binary.dev", "\ufeff1 a fine , funny film\r\n\n0  it does n't work .  \r\n")
    ex = read_labelled(path)
    assert pairs(ex) == [("1", "a fine , funny film"), ("0", "it does n't work .")]
    assert ex.source == str(path) and len(ex) == 2


def test_csv_columns_by_name_and_quoted_fields(tmp_path):
    content = ('id,label,review\r\n'
               '1,pos,"Great, really great"\r\n'
               '2,neg,"Two\nlines, and ""quotes"""\r\n'
               '\r\n'
               '3,neg,plain\r\n')
    ex = read_labelled(write(tmp_path / "reviews.csv", content), text_column="review")
    assert pairs(ex) == [("pos", "Great, really great"), ("neg", 'Two\nlines, and "quotes"'), ("neg", "plain")]


def test_tsv_and_jsonl(tmp_path):
    tsv = write(tmp_path / "train.tsv", "sentence\tlabel\nit 's good\t1\n\"tab\tinside\"\t0\n")
    assert pairs(read_labelled(tsv, text_column="sentence")) == [("1", "it 's good"), ("0", "tab\tinside")]
    rows = [{"text": "an int", "label": 1}, {"text": "a bool", "label": True}, {"text": "a string", "label": "pos"},
            {"text": "a float", "label": 0.0}]
    jsonl = write(tmp_path / "data.jsonl", "\n".join(json.dumps(r) for r in rows[:2]) + "\n\n"
                  + "\n".join(json.dumps(r) for r in rows[2:]) + "\n")
    assert pairs(read_labelled(jsonl)) == [("1", "an int"), ("true", "a bool"), ("pos", "a string"), ("0", "a float")]
    keys = write(tmp_path / "keys.json", json.dumps({"sentence": "other keys", "y": 2}) + "\n")  # .json: JSON lines
    assert pairs(read_labelled(keys, text_column="sentence", label_column="y")) == [("2", "other keys")]


def test_format_can_be_given_explicitly(tmp_path):
    path = write(tmp_path / "data.txt", "text,label\nhello,1\n")
    assert pairs(read_labelled(path, format="csv")) == [("1", "hello")]
    with pytest.raises(InputError, match=r"data.txt line 1: expected '<label> <sentence>'.*--format"):
        read_labelled(path)  # auto: a .txt file is read as SST lines


def make_folder(root: Path) -> Path:
    write(root / "pos" / "1_9.txt", "Loved it.\n")
    write(root / "pos" / "0_10.txt", "  Best film <br />ever.  ")
    write(root / "pos" / ".hidden.txt", "not an example")
    write(root / "neg" / "5_1.txt", "Dull.")
    write(root / "unsup" / "7_0.txt", "No label.")
    write(root / "urls_pos.txt", "a file beside the class folders is not an example")
    (root / ".git").mkdir()
    return root


def test_folder_reads_one_file_per_example_in_sorted_order(tmp_path):
    root = make_folder(tmp_path / "train")
    ex = read_labelled(root)
    assert pairs(ex) == [("neg", "Dull."), ("pos", "Best film <br />ever."), ("pos", "Loved it."), ("unsup", "No label.")]
    assert pairs(read_labelled(root, classes=["neg", "pos"])) == pairs(ex)[:3]  # unsup only left out when asked
    with pytest.raises(InputError, match=r"no class folder 'neutral' \(its subfolders: neg, pos, unsup\)"):
        read_labelled(root, classes=["neg", "neutral"])


# --------------------------------------------------------------------------------------------- bad input
BAD = [
    # (file name, content, read_labelled keywords, the message must match this)
    ("a.txt", "1 good film\n0\n", {}, r"a.txt line 2: expected '<label> <sentence>', got only '0'"),
    ("a.csv", "text,label\nfine,1\n  ,0\n", {}, r"a.csv line 3: the text is empty"),
    ("a.csv", "text,label\nfine,\n", {}, r"a.csv line 2: the label is empty"),
    ("a.csv", "review,y\nfine,1\n", {}, r"a.csv has no column 'text' \(its header has 'review', 'y'\).*--text-column"),
    ("a.csv", "text,y\nfine,1\n", {}, r"a.csv has no column 'label' .*--label-column"),
    ("a.csv", 'text,label\n"multi\nline",1\nhello, world,0\n', {}, r"a.csv line 4 has 3 fields but the header has 2"),
    ("a.csv", 'text,label\n"quoted" then more,1\n', {}, r"a.csv line 2: .*quoting"),
    ("a.tsv", "text\tlabel\nok\t1\nno tab\n", {}, r"a.tsv line 3 has 1 field but the header has 2"),
    ("a.jsonl", '{"text": "ok", "label": 1}\n\n{"text": "bad", label: 0}\n', {}, r"a.jsonl line 3 is not valid JSON"),
    ("a.jsonl", '["text", 1]\n', {}, r"a.jsonl line 1 holds a JSON list, not an object"),
    ("a.jsonl", '{"sentence": "x", "label": 1}\n', {}, r"a.jsonl line 1 has no key 'text' \(its keys: 'sentence', 'label'\).*--text-column"),
    ("a.jsonl", '{"text": "x", "label": null}\n', {}, r"a.jsonl line 1: the label is null"),
    ("a.jsonl", '{"text": 5, "label": 1}\n', {}, r"a.jsonl line 1: the text 'text' is 5, not a string"),
    ("a.jsonl", '{"text": "", "label": 1}\n', {}, r"a.jsonl line 1: the text is empty"),
    ("a.txt", "\n\n  \n", {}, r"a.txt holds no examples"),
    ("a.csv", "text,label\n", {}, r"a.csv holds no examples"),
    ("a.txt", "1 fine\n", {"format": "xml"}, r"unknown data format 'xml'"),
    ("a.txt", "1 fine\n", {"encoding": "klingon"}, r"unknown text encoding 'klingon'"),
    ("a.txt", "1 fine\n", {"format": "folder"}, r"a.txt is a file, but format 'folder' reads a folder"),
]


@pytest.mark.parametrize("name, content, kwargs, message", BAD, ids=[m[:30] for *_, m in BAD])
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, name, content, kwargs, message):
    path = write(tmp_path / name, content)
    with pytest.raises(InputError, match=message) as err:
        read_labelled(path, **kwargs)
    assert "\n" not in str(err.value)
    assert str(path) in str(err.value) or "unknown" in str(err.value)  # a bad argument is not the file's fault


def test_missing_path_and_folder_given_as_file(tmp_path):
    with pytest.raises(InputError, match=r"nope.csv does not exist"):
        read_labelled(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r"is a folder, not a csv file.*--format folder"):
        read_labelled(tmp_path, format="csv")


def test_bad_bytes_name_their_line_and_suggest_an_encoding(tmp_path):
    content = "1 first line\n0 caf\u00e9 ok\n1 another\n".encode("utf-8") + "0 na\u00efve\n".encode("latin-1")
    path = write(tmp_path / "latin.txt", content)
    with pytest.raises(InputError, match=r"latin.txt line 4 is not utf-8 text \(byte 0xef.*--encoding latin-1") as err:
        read_labelled(path)
    assert "\n" not in str(err.value)
    latin = write(tmp_path / "all-latin.csv", "text,label\nna\u00efve,1\n".encode("latin-1"))
    assert read_labelled(latin, encoding="latin-1").texts == ["na\u00efve"]
    utf16 = write(tmp_path / "utf16.txt", "1 a\n0 b\n".encode("utf-16-le") + b"\x00\xd8")  # a lone surrogate, line 3
    with pytest.raises(InputError, match=r"utf16.txt line 3 is not utf-16-le text"):
        read_labelled(utf16, encoding="utf-16-le")


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda root: write(root / "x.txt", "no class folders"), r"has no subfolders"),
        (lambda root: (root / "pos").mkdir(), r"class folder .*pos holds no files"),
        (lambda root: write(root / "pos" / "1.txt", " \n"), r"pos/1.txt: the text is empty"),
        (lambda root: write(root / "pos" / "1.txt", b"\xff"), r"pos/1.txt line 1 is not utf-8 text"),
    ],
)
def test_bad_folders(tmp_path, setup, message):
    root = tmp_path / "data"
    root.mkdir()
    setup(root)
    with pytest.raises(InputError, match=message):
        read_labelled(root)


def test_read_lines(tmp_path):
    assert read_lines(write(tmp_path / "t.txt", "  first text \n\n second\r\n")) == ["first text", "second"]
    with pytest.raises(InputError, match="holds no text"):
        read_lines(write(tmp_path / "blank.txt", "\n \n"))
    with pytest.raises(InputError, match=r"b.txt line 2 is not utf-8"):
        read_lines(write(tmp_path / "b.txt", b"ok\n\xe9\n"))
    with pytest.raises(InputError, match="does not exist"):
        read_lines(tmp_path / "none.txt")


# ------------------------------------------------------------------------------------------ named datasets
def test_unknown_dataset_lists_the_known_ones():
    assert set(CLASSIFY_DATASETS) == {"sst2", "imdb"}
    with pytest.raises(InputError, match=r"unknown dataset 'mnist': use one of sst2, imdb"):
        load_dataset("mnist")


def test_sst2_from_a_cache_holding_the_published_files(tmp_path):
    if not SST2.is_dir():
        pytest.skip(f"{SST2} is absent (the shared data folder beside the repository)")
    cache = tmp_path / "mycache"
    shutil.copytree(SST2, cache / "sst2")
    splits = load_dataset("sst2", cache)  # the checksums match: no download (the network is off)
    assert {k: len(v) for k, v in splits.items()} == {"train": 6920, "valid": 872, "test": 1821}
    assert set(splits["train"].labels) == {"0", "1"}
    assert splits["train"].texts[0].startswith("a stirring , funny and finally transporting re-imagining")


def test_sst2_download_failure_says_what_to_pass_instead(tmp_path):
    with pytest.raises(InputError, match=r"could not download sst2 .*stsa.binary.train, stsa.binary.dev") as err:
        load_dataset("sst2", tmp_path)
    assert "\n" not in str(err.value)


def tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


ACLIMDB = {
    "aclImdb/README": b"readme",
    "aclImdb/train/pos/0_9.txt": b"Great movie.",
    "aclImdb/train/neg/0_2.txt": b"Awful.<br /><br />Really.",
    "aclImdb/train/neg/1_1.txt": b"Bad.",
    "aclImdb/train/unsup/0_0.txt": b"Unlabelled.",
    "aclImdb/test/pos/0_10.txt": b"Loved it.",
    "aclImdb/test/neg/0_3.txt": b"Meh.",
}


@pytest.fixture
def local_imdb(tmp_path, monkeypatch):
    """Point the imdb dataset at a tiny aclImdb archive served from a file:// URL; returns a function that
    registers an archive (and optionally a wrong digest) and gives back the cache folder."""

    def register(members=ACLIMDB, digest=None):
        archive = write(tmp_path / "served" / "aclImdb_v1.tar.gz", tar_gz(members))
        digest = digest or hashlib.sha256(archive.read_bytes()).hexdigest()
        remote = RemoteFile(archive.as_uri(), "aclImdb_v1.tar.gz", "sha256", digest)
        monkeypatch.setitem(labelled._DATASETS, "imdb", Dataset("imdb", "tiny imdb", (remote,), level="text"))
        return tmp_path / "cache"

    return register


def test_imdb_is_downloaded_verified_and_extracted_once(local_imdb, monkeypatch):
    cache = local_imdb()
    splits = load_dataset("imdb", cache)
    assert splits["valid"] is None
    assert pairs(splits["train"]) == [("neg", "Awful.<br /><br />Really."), ("neg", "Bad."), ("pos", "Great movie.")]
    assert pairs(splits["test"]) == [("neg", "Meh."), ("pos", "Loved it.")]
    assert sorted(p.name for p in (cache / "imdb").iterdir()) == ["aclImdb", "aclImdb_v1.tar.gz"]  # no temp left
    # Once extracted, the folder is used as it is: neither the archive nor the network is needed again.
    (cache / "imdb" / "aclImdb_v1.tar.gz").unlink()
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded again"))
    assert pairs(load_dataset("imdb", cache)["test"]) == pairs(splits["test"])


def test_imdb_with_a_wrong_checksum_leaves_nothing_behind(local_imdb):
    cache = local_imdb(digest="0" * 64)
    with pytest.raises(InputError, match=r"checksum mismatch for file:.*aclImdb_v1.tar.gz: expected sha256 0000") as err:
        load_dataset("imdb", cache)
    assert "\n" not in str(err.value)
    assert list((cache / "imdb").iterdir()) == []  # no half file, no folder


@pytest.mark.parametrize("bad", ["../escaped.txt", "/tmp/absolute.txt", "aclImdb/../../escaped.txt"])
def test_archive_members_outside_the_folder_are_refused(local_imdb, tmp_path, bad):
    cache = local_imdb({**ACLIMDB, bad: b"evil"})
    with pytest.raises(InputError, match=r"refusing to extract"):
        load_dataset("imdb", cache)
    assert not (cache / "imdb" / "aclImdb").exists() and not (cache / "escaped.txt").exists()
    assert sorted(p.name for p in (cache / "imdb").iterdir()) == ["aclImdb_v1.tar.gz"]  # the temp folder is gone


def test_archive_without_the_expected_folder(local_imdb):
    cache = local_imdb({"other/train/pos/1.txt": b"x"})
    with pytest.raises(InputError, match=r"holds no folder aclImdb/"):
        load_dataset("imdb", cache)
