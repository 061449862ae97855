"""Parallel text for translation: `source<TAB>target` lines, as in the Tatoeba (manythings.org Anki) exports.

    data = read_parallel("fra.txt")                                 # English -> French, d2l's normalisation
    data = read_parallel("fra.txt", reverse=True, max_length=20)    # French -> English, up to 20 words a side
    split = split_indices(data, valid_fraction=0.05, test_fraction=0.05)   # {"train", "valid", "test"}: indices
    path = dataset_path("fra-eng")                                  # d2l's fra.txt, downloaded once

Every sentence goes through `prepare_sentence` before it is cut into `words`: the training pairs here, and the
user's input at translate time, so a model is never asked to translate words spaced differently from the ones it
learnt. With normalize=True that is d2l's preprocessing (`normalize_d2l`): "Go." becomes "go .", so the
punctuation is a word of its own instead of doubling the vocabulary ("go" and "go.").

A scraped file of 167k pairs always holds a few odd lines, and stopping for each would help nobody: a line
without a tab, a pair with an empty side, and a pair longer than max_length words are skipped, counted, and
reported in one warning naming the first line of each kind. Blank lines are ignored. Only a file that cannot be
read, or that leaves no pair at all, raises InputError (one line: what is wrong, and how to fix it).

The split is by a hash of the source sentence, not by position: see `split_indices`.
"""

from __future__ import annotations

import hashlib
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import InputError
from .corpora import Dataset, RemoteFile, dataset_folder, fetch, unpack_atomically
from .labelled import _read_text, check_encoding  # one file reader: BOM dropped, bad bytes by line
from .tokenizers import EOS, PAD, UNK  # re-exported: with BOS, the reserved tokens of a translation vocabulary

#: the token a decoder is fed first, before the target's first word
BOS = "<bos>"
__all__ = ["PAD", "UNK", "BOS", "EOS", "SKIP_REASONS", "normalize_d2l", "prepare_sentence", "words", "ParallelText",
           "read_parallel", "split_indices", "TRANSLATE_DATASETS", "dataset_path"]

#: why a line was skipped, the keys of ParallelText.skipped
SKIP_REASONS = ("no tab", "empty side", "too long")
_SPLITS = ("train", "valid", "test")
# French typesetting puts a narrow no-break space (U+202F) or a no-break space (U+00A0) before ! ? : ;
_NO_BREAK_SPACES = ("\u202f", "\xa0")
_PUNCTUATION = ",.!?"
# , . ! ? right after a non-whitespace character. A lookbehind sees the text before substitution, so "Go..." gives
# "go . . ." as d2l's character loop does.
_GLUED_PUNCTUATION = re.compile(r"(?<=\S)([,.!?])")


# ----------------------------------------------------------------------------------------------- sentences
def normalize_d2l(text: str) -> str:
    """d2l's preprocess_nmt: U+202F and U+00A0 become spaces, the text is lower-cased, and a space is put before
    each of , . ! ? that follows a non-whitespace character.

        "Go." -> "go ."     "Cours\\u202f!" -> "cours !"     "J'ai faim." -> "j'ai faim ."
    """
    return _GLUED_PUNCTUATION.sub(r" \1", _spaces(text.lower()))


def prepare_sentence(text: str, *, normalize: bool, lower: bool) -> str:
    """A sentence as a model sees it, before it is cut into words: in training data and in user input alike.

    normalize: normalize_d2l's spacing (no-break spaces, punctuation split off); its lower-casing only if lower.
    lower: lower-case the text.
    Runs of whitespace (tabs, line ends, any Unicode space) become one space; the ends are stripped.
    """
    return " ".join(_prepare(text, normalize, lower).split())


def _prepare(text: str, normalize: bool, lower: bool) -> str:
    """prepare_sentence before whitespace is collapsed.

    A space goes before every , . ! ?, not only after a non-space as in normalize_d2l: the extra spaces this
    adds (after a space, at the start) are collapsed away, so the result is the same, and str.replace is several
    times faster than the lookbehind regex. No step makes or removes a tab or a line end, or looks across one
    (lower-casing a final sigma looks only at the letters around it), so read_parallel prepares a whole file in
    one call and cuts it into sentences after, which saves a Python call per sentence.
    """
    if normalize:
        for mark in _PUNCTUATION:
            text = text.replace(mark, " " + mark)
        text = _spaces(text)
    return text.lower() if lower else text


def _spaces(text: str) -> str:
    """No-break spaces as spaces (str.replace: str.translate is several times slower on non-ASCII text)."""
    for space in _NO_BREAK_SPACES:
        text = text.replace(space, " ")
    return text


def words(sentence: str) -> list[str]:
    """The words of a prepared sentence: it is split on whitespace ("go ." -> ["go", "."])."""
    return sentence.split()


# ------------------------------------------------------------------------------------------------- reading
@dataclass
class ParallelText:
    """Sentence pairs, in file order; source[i] translates to target[i].

    Attributes:
        source: the prepared source sentences (`prepare_sentence`); none is empty.
        target: the prepared target sentences; none is empty.
        lines: the 1-based line number in the file of each pair, for messages.
        path: the file read.
        skipped: reason (one of SKIP_REASONS) -> how many lines were skipped for it.
    """

    source: list[str]
    target: list[str]
    lines: list[int]
    path: str
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))

    def __len__(self) -> int:
        return len(self.source)


def read_parallel(
    path: str | Path,
    *,
    encoding: str = "utf-8",
    reverse: bool = False,
    normalize: bool = True,
    lower: bool = True,
    max_length: int | None = None,
) -> ParallelText:
    """Read sentence pairs from a file of `source<TAB>target` lines.

    Args:
        path: the file. The first column is the source, the second the target; further columns (newer Anki
            exports add an attribution) are ignored. A UTF-8 byte-order mark and CRLF line ends are fine.
        encoding: the file's text encoding.
        reverse: swap the columns: translate the second language into the first (French -> English).
        normalize, lower: how each sentence is prepared, see `prepare_sentence`.
        max_length: skip pairs with more words than this on either side; None keeps every length.

    Lines without a tab, pairs with an empty side (after preparation) and pairs too long are skipped and counted
    in ParallelText.skipped, with one warning; blank lines (whitespace only, a lone tab included) are ignored.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"{path} {what}: pass a text file of source<TAB>target lines, one pair a line")
    check_encoding(encoding)
    if max_length is not None and (isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1):
        raise InputError(f"max_length must be a positive number of words, got {max_length!r}: pass e.g. "
                         "--max-length 20, or leave it out to keep every pair")
    text = _read_text(path, encoding)

    data = ParallelText([], [], [], str(path))
    first: dict[str, int] = {}  # reason -> the first line skipped for it
    read = 0  # non-blank lines
    # The whole file is prepared at once (see _prepare), then cut at "\n" rather than by splitlines(), which also
    # breaks at form feeds and U+2028: line numbers then agree with editors'. A CRLF line's "\r" is whitespace,
    # collapsed away with the rest.
    for number, line in enumerate(_prepare(text, normalize, lower).split("\n"), 1):
        if not line or line.isspace():
            continue
        read += 1
        pair = _pair(line, max_length)
        if isinstance(pair, str):  # a skip reason
            data.skipped[pair] += 1
            first.setdefault(pair, number)
            continue
        source, target = pair[::-1] if reverse else pair
        data.source.append(source)
        data.target.append(target)
        data.lines.append(number)

    if not data.source:
        raise _nothing_left(path, read, data.skipped, max_length)
    if any(data.skipped.values()):
        warnings.warn(f"{path}: skipped {sum(data.skipped.values()):,} of {read:,} lines: "
                      f"{_skip_summary(data.skipped, first, max_length)}", stacklevel=2)
    return data


def _pair(line: str, max_length: int | None) -> tuple[str, str] | str:
    """The (first, second) sentences of a prepared non-blank line, or the reason to skip it."""
    columns = line.split("\t", 2)
    if len(columns) < 2:
        return "no tab"
    first, second = " ".join(columns[0].split()), " ".join(columns[1].split())
    if not (first and second):
        return "empty side"
    # words, counted without making the lists: a collapsed sentence has one space between words
    if max_length is not None and max(first.count(" "), second.count(" ")) >= max_length:
        return "too long"
    return first, second


def _skip_summary(skipped: dict[str, int], first: dict[str, int], max_length: int | None) -> str:
    """ "2 without a tab (first: line 17), 1 with an empty side (first: line 40)" """
    what = {"no tab": "without a tab", "empty side": "with an empty side",
            "too long": f"longer than max_length={max_length} words"}
    return ", ".join(f"{skipped[r]:,} {what[r]} (first: line {first[r]})" for r in SKIP_REASONS if skipped[r])


def _nothing_left(path: Path, read: int, skipped: dict[str, int], max_length: int | None) -> InputError:
    """The error for a file that leaves no pair, saying why."""
    if read == 0:
        return InputError(f"{path} holds no text: pass a file of source<TAB>target lines, one pair a line")
    if skipped["no tab"] == read:
        return InputError(f"{path}: no line has a tab: parallel text needs source<TAB>target lines (the two "
                          "sentences of a pair separated by a tab)")
    if skipped["empty side"] == read:
        return InputError(f"{path}: every pair has an empty side: write a sentence on both sides of the tab")
    if skipped["too long"] == read:
        return InputError(f"{path}: every pair is longer than max_length={max_length} words: raise --max-length")
    counts = ", ".join(f"{skipped[r]:,} {r}" for r in SKIP_REASONS if skipped[r])
    fix = "raise --max-length or fix the lines" if skipped["too long"] else "fix the lines"
    return InputError(f"{path}: every line was skipped ({counts}): {fix} (source<TAB>target, both sides non-empty)")


# --------------------------------------------------------------------------------------------------- split
def split_indices(data: ParallelText, valid_fraction: float, test_fraction: float) -> dict[str, list[int]]:
    """A deterministic train / valid / test split: {"train", "valid", "test"} -> ascending indices into data.

    Each pair goes by a stable hash (BLAKE2b) of its prepared source sentence, mapped to u in [0, 1):
    u < test_fraction is test, u < test_fraction + valid_fraction is valid, the rest is train.

    Why a hash of the source, rather than a random or a positional cut: Tatoeba gives many source sentences
    several translations ("Run!" -> "Cours !", "Courez !"), so any per-pair split puts some test sources in
    training too, and the test score then measures recall. Hashing the source keeps every pair of one source
    in one split. Being a hash, a pair's split depends on its source sentence alone: not on the file's order,
    on what else the file holds, or on a seed. It does depend on the preparation (normalize, lower) and on
    the direction: with reverse=True the sources are the other language, so the split differs.

    The fractions are honoured in expectation, by number of distinct sources; tiny data can miss them.
    """
    _check_fractions(valid_fraction, test_fraction)
    split: dict[str, list[int]] = {name: [] for name in _SPLITS}
    for i, source in enumerate(data.source):
        u = _unit_interval(source)
        name = "test" if u < test_fraction else "valid" if u < test_fraction + valid_fraction else "train"
        split[name].append(i)

    where = f"{data.path}: {len(data):,} pairs"
    if not split["train"]:
        raise InputError(f"{where} leave none for training at data.valid_fraction={valid_fraction}, "
                         f"data.test_fraction={test_fraction}: give more data, or lower the fractions")
    for name, fraction in (("valid", valid_fraction), ("test", test_fraction)):
        if fraction > 0 and not split[name]:
            raise InputError(f"{where} are too few for a {name} split at data.{name}_fraction={fraction}: "
                             f"give more data, raise data.{name}_fraction, or set it to 0")
    return split


def _unit_interval(sentence: str) -> float:
    """A number in [0, 1) fixed by the sentence: 53 bits of its BLAKE2b hash (Python's hash() of a str is salted
    per process, so it would give another split on every run)."""
    digest = hashlib.blake2b(sentence.encode("utf-8"), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / (1 << 53)  # 53 bits: exact in a float, never rounds to 1.0


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    for name, x in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not (0.0 <= x < 1.0):  # also false for NaN
            raise InputError(f"data.{name} must be in [0, 1), got {x!r}: pass e.g. data.{name}=0.05")
    if valid_fraction + test_fraction >= 1.0:
        raise InputError(f"data.valid_fraction + data.test_fraction must be below 1 (got {valid_fraction} + "
                         f"{test_fraction}): leave some pairs for training")


# ------------------------------------------------------------------------------------------ named datasets
_FRA_ENG = Dataset(
    "fra-eng",
    "English-French sentence pairs from Tatoeba (manythings.org's Anki export, d2l.ai's copy): about 167,000 "
    "lines `English<TAB>French`, CC-BY 2.0. Downloaded and extracted once.",
    # sha1 as d2l registers it (d2l-ai/d2l-en, chapter_recurrent-modern/machine-translation-and-dataset.md)
    (RemoteFile("http://d2l-data.s3-accelerate.amazonaws.com/fra-eng.zip", "fra-eng.zip", "sha1",
                "94646ad1522d915e7b0f9296181140edcf86a4f5"),),
    level="word",
    local="fra.txt, extracted from fra-eng.zip",
)
#: name -> (dataset, the text file's path inside its zip archive)
_DATASETS: dict[str, tuple[Dataset, str]] = {"fra-eng": (_FRA_ENG, "fra-eng/fra.txt")}
#: name -> description of the translation datasets `dataset_path` downloads
TRANSLATE_DATASETS: dict[str, str] = {name: ds.description for name, (ds, _) in _DATASETS.items()}


def dataset_path(name: str, cache: str | Path | None = None) -> Path:
    """The parallel text file of a named dataset: its zip is downloaded into the cache (checksum verified) and
    extracted the first time, then the extracted file is used as it is (CACHE/fra-eng/fra-eng/fra.txt)."""
    if name not in _DATASETS:
        raise InputError(f"unknown translation dataset {name!r}: use one of {', '.join(_DATASETS)}, or pass a "
                         "file of source<TAB>target lines with --data")
    ds, member = _DATASETS[name]
    top = PurePosixPath(member).parts[0]
    folder = dataset_folder(ds.name, cache)
    if not (folder / top).is_dir():  # made only by the rename that ends a complete extraction
        (archive,) = fetch(ds, cache)
        _extract_zip(archive, folder, top, member)
    path = folder / member
    if not path.is_file():
        raise InputError(f"{folder / top} holds no {PurePosixPath(member).name}: delete that folder so the "
                         "archive is extracted again")
    return path


def _extract_zip(archive: Path, folder: Path, top: str, member: str) -> None:
    """Unpack the zip archive into folder/top, which must end up holding `member` (a path starting with top),
    atomically (corpora.unpack_atomically); members whose path would leave the folder (absolute, through "..",
    or a drive) are refused before anything is written."""

    def unpack(tmp: Path) -> None:
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                parts = PurePosixPath(name.replace("\\", "/")).parts
                if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise InputError(f"archive {archive} holds {name!r}, which is not a path inside it: refusing "
                                     "to extract it; delete the archive and try again")
            zf.extractall(tmp)
        if not (tmp / member).is_file():
            raise InputError(f"archive {archive} holds no {member}: delete it so it is downloaded again")

    unpack_atomically(archive, folder, top, unpack, (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError))
