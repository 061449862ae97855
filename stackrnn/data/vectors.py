"""Pretrained word vectors (GloVe, word2vec text format) as an embedding matrix for a vocabulary.

Dimension key: V vocabulary, E vector size.

Two text formats, told apart by the first line:

    GloVe               word2vec (text)
    the 0.418 0.24 ...  400000 100          <- "count dim" header
    , 0.013 0.236 ...   the 0.418 0.24 ...

The file is read line by line and only the vectors of the vocabulary's words are kept: glove.840B.300d is
5.6 GB, far more than the few megabytes a vocabulary's rows take.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..errors import InputError
from .labelled import check_encoding

RESERVED = ("<pad>", "<unk>")


def load_vectors(
    path: str | Path,
    itos: Sequence[str],
    *,
    encoding: str = "utf-8",
    reserved: Sequence[str] = RESERVED,
    seed: int = 0,
) -> tuple[Tensor, int, int]:
    """The embedding matrix of vocabulary `itos` from a GloVe or word2vec text file (optionally gzipped).

    A word takes the vector of the same word in the file, else of its first case-insensitive match ("The" takes
    "the" from the lower-cased GloVe; word2vec files list the most frequent casing first). Reserved tokens are
    not looked up: the first one is padding and gets zeros; the others, and words the file lacks, get random
    rows, N(0, s^2) with s the standard deviation of the vectors found, so they are neither louder nor quieter
    than the pretrained ones (Kim 2014 matches the variance the same way); a fixed scale would be too loud for
    one file and too quiet for another, as vector files differ in scale. The draw uses `seed` and covers every
    row, so a word's random direction does not depend on which other words were found.

    Returns (matrix (V, E) float32, found, dim): `found` counts the words of `itos` given a vector; see
    `coverage_line(found, vocabulary_words(itos))`.

    Raises InputError, one line naming the file (and the line where there is one), for a missing or
    unreadable file, a line whose number of values differs from the first line's (or the header's), a value
    that is not a finite number, a file without vectors, text not in `encoding`, and a vocabulary of which no
    word is in the file. Values are parsed only on the vocabulary's lines (and the first vector): parsing all
    of a 2-million-line file would take minutes.
    """
    path = Path(path).expanduser()
    _check_path(path, encoding)
    skip = set(reserved)
    exact: dict[str, list[int]] = {}  # word -> its rows in itos
    folded: dict[str, list[int]] = {}  # lower-cased word -> rows
    for i, word in enumerate(itos):
        if word not in skip:
            exact.setdefault(word, []).append(i)
            folded.setdefault(word.lower(), []).append(i)
    match = [0] * len(itos)  # per row: 0 not found yet, 1 found case-insensitively, 2 found exactly
    matrix: Tensor | None = None
    dim, origin = 0, ""  # vector size, and where it came from, for errors
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                line = _decode(raw, encoding, path, number)
                # the word, then the values; split on spaces only: some words hold other whitespace (U+00A0), and
                # fastText's .vec ends every line with a space
                fields = line.rstrip(" \t\r\n").split(" ")
                if "" in fields:
                    fields = [x for x in fields if x]
                if not fields:
                    continue
                if not dim:
                    # (isdecimal, not isdigit: int() refuses "²", a digit; it also refuses more than 4,300 digits)
                    if len(fields) == 2 and fields[0].isdecimal() and fields[1].isdecimal():
                        digits = fields[1].lstrip("0") or "0"
                        if digits == "0" or len(digits) > 9:  # no vector has a billion values
                            shown = digits if len(digits) <= 20 else digits[:20] + "..."
                            raise InputError(f"{path} line {number}: the word2vec header 'count dim' has dim {shown}: "
                                             "expected a vector size from 1 to 999999999")
                        dim, origin = int(digits), f"as the header on line {number} says"  # word2vec: count dim
                        continue
                    dim, origin = len(fields) - 1, f"like line {number}"
                    if dim < 1:
                        raise InputError(f"{path} line {number}: expected a word and its vector's values, "
                                         f"got only {line.strip()!r}")
                word = _word(fields, dim, path, number, origin)
                if matrix is None:
                    _parse(fields[-dim:], path, number)  # the first vector: is this a vectors file at all?
                    matrix = torch.zeros(len(itos), dim)
                rows = [i for i in exact.get(word, ()) if match[i] < 2]
                for i in rows:
                    match[i] = 2
                loose = [i for i in folded.get(word.lower(), ()) if match[i] == 0]
                for i in loose:
                    match[i] = 1
                if rows or loose:
                    matrix[rows + loose] = _parse(fields[-dim:], path, number)
    except (OSError, EOFError, zlib.error) as e:  # unreadable, or a damaged .gz
        raise InputError(f"cannot read {path} ({e}): pass a readable GloVe or word2vec text file") from None

    if matrix is None:
        raise InputError(f"{path} has no vectors: expected lines 'word v1 ... vE' (GloVe), "
                         "optionally after a 'count dim' header (word2vec text format)")
    found_rows = [i for i, m in enumerate(match) if m]
    if not found_rows and exact:
        raise InputError(f"{path} has a vector for none of the {len(exact):,} words of the vocabulary: "
                         "is it the right file, and does the tokenizer split words the same way?")
    found = matrix[found_rows]
    scale = float(found.std()) if found.numel() > 1 else 0.1  # one number has no spread: a small default
    random = torch.randn(len(itos), dim, generator=torch.Generator().manual_seed(seed)) * scale
    missing = torch.tensor([m == 0 for m in match], dtype=torch.bool)
    matrix[missing] = random[missing]
    if reserved and reserved[0] in itos:
        matrix[list(itos).index(reserved[0])] = 0.0  # padding contributes nothing, as nn.Embedding's padding_idx row
    return matrix, len(found_rows), dim


def vocabulary_words(itos: Sequence[str], reserved: Sequence[str] = RESERVED) -> int:
    """How many words of `itos` are looked up in a vectors file: all but the reserved tokens."""
    reserved = set(reserved)
    return sum(w not in reserved for w in itos)


def coverage_line(found: int, total: int) -> str:
    """'pretrained vectors cover 8,123 of 9,000 words (90.3%)'."""
    share = f" ({100 * found / total:.1f}%)" if total else ""
    return f"pretrained vectors cover {found:,} of {total:,} words{share}"


def _check_path(path: Path, encoding: str) -> None:
    if path.suffix in (".bin", ".zip"):
        how = ("save it as text (gensim: save_word2vec_format(path, binary=False))" if path.suffix == ".bin"
               else "unzip it and pass one of its .txt files")
        raise InputError(f"{path}: expected a GloVe or word2vec text file, got a {path.suffix} file: {how}")
    if not path.exists():
        raise InputError(f"pretrained vectors file {path} does not exist: pass a GloVe or word2vec text file")
    if path.is_dir():
        raise InputError(f"pretrained vectors file {path} is a directory: pass a GloVe or word2vec text file")
    check_encoding(encoding, f" for {path}")


def _decode(raw: bytes, encoding: str, path: Path, number: int) -> str:
    """One line of bytes as text. Decoding line by line (not through a text stream, which decodes ahead in
    blocks) lets the error name the line that is not in the encoding."""
    try:
        line = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise InputError(f"{path} line {number} is not {encoding} text ({e.reason} at byte {e.start} of the line): "
                         f"pass the file's encoding with --vectors-encoding (e.g. --vectors-encoding latin-1)") from None
    except UnicodeError as e:  # a codec that refuses the bytes without saying where ("undefined", "idna")
        raise InputError(f"{path} line {number} is not {encoding} text ({' '.join(str(e).split())}): pass the "
                         "file's encoding with --vectors-encoding (e.g. --vectors-encoding latin-1)") from None
    return line.lstrip("\ufeff") if number == 1 else line  # a byte-order mark is not part of the first word


def _word(fields: list[str], dim: int, path: Path, number: int, origin: str) -> str:
    """The word of a line split into fields, checking that `dim` values follow it."""
    if len(fields) == dim + 1:
        return fields[0]
    # glove.840B.300d has a few words with spaces ('. . .'): extra fields are part of the word unless numbers
    extra = fields[1:len(fields) - dim]
    if len(fields) < dim + 1 or any(_is_number(x) for x in extra):
        raise InputError(f"{path} line {number}: expected a word and {dim} values {origin}, got "
                         f"{len(fields) - 1} values: every vector must have the same size")
    return " ".join(fields[:len(fields) - dim])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse(values: list[str], path: Path, number: int) -> Tensor:
    """A line's values as a float tensor (E,)."""
    try:
        vector = torch.tensor([float(v) for v in values])
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise InputError(f"{path} line {number}: {bad!r} is not a number: expected a word and {len(values)} numbers") from None
    if not torch.isfinite(vector).all():
        raise InputError(f"{path} line {number}: expected finite numbers, got {vector[~torch.isfinite(vector)][0].item()}")
    return vector
