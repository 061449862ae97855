"""Pretrained vectors: GloVe and word2vec text formats, case-insensitive matches, random rows for the rest,
coverage, and a one-line error naming the file and line for every kind of bad file."""

import gzip

import pytest
import torch

from stackrnn.data.vectors import coverage_line, load_vectors, vocabulary_words
from stackrnn.errors import InputError

ITOS = ["<pad>", "<unk>", "the", "cat", "dog"]
GLOVE = "the 0.1 0.2 0.3\ncat -1 2.5 3e-1\nsat 9 9 9\n"


def _write(tmp_path, text, name="vectors.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_glove_format(tmp_path):
    matrix, found, dim = load_vectors(_write(tmp_path, GLOVE), ITOS)
    assert (found, dim, matrix.shape, matrix.dtype) == (2, 3, (5, 3), torch.float32)
    torch.testing.assert_close(matrix[2], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(matrix[3], torch.tensor([-1, 2.5, 0.3]))
    assert torch.equal(matrix[0], torch.zeros(3))  # padding
    assert matrix[1].abs().sum() > 0 and matrix[4].abs().sum() > 0  # <unk> and dog: random
    again, _, _ = load_vectors(_write(tmp_path, GLOVE), ITOS)
    assert torch.equal(matrix, again)  # seeded
    other, _, _ = load_vectors(_write(tmp_path, GLOVE), ITOS, seed=1)
    assert not torch.equal(matrix[4], other[4])


def test_word2vec_text_format_with_header_gzipped_and_trailing_spaces(tmp_path):
    path = tmp_path / "vectors.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("3 2\nthe 1 2 \ncat 3 4 \n\ndog 5 6 \n")  # fastText's .vec ends lines with a space
    matrix, found, dim = load_vectors(path, ITOS)
    assert (found, dim) == (3, 2)
    torch.testing.assert_close(matrix[2:], torch.tensor([[1.0, 2], [3, 4], [5, 6]]))


def test_exact_match_first_then_the_first_case_insensitive_one(tmp_path):
    text = "the 1 1\nThe 2 2\nParis 3 3\nPARIS 4 4\nlondon 5 5\n"
    itos = ["<pad>", "<unk>", "The", "the", "paris", "London", "<s>"]
    matrix, found, _ = load_vectors(_write(tmp_path, text), itos, reserved=("<pad>", "<unk>", "<s>"))
    assert found == 4
    torch.testing.assert_close(matrix[2:6, 0], torch.tensor([2.0, 1, 3, 5]))


def test_words_with_spaces_as_in_glove_840b(tmp_path):
    matrix, found, _ = load_vectors(_write(tmp_path, "cat 1 2\n. . . 3 4\nthe\u00a0x 5 6\n"), ["<pad>", ". . .", "the\u00a0x"])
    assert found == 2
    torch.testing.assert_close(matrix[1:], torch.tensor([[3.0, 4], [5, 6]]))


def test_random_rows_have_the_scale_of_the_found_vectors(tmp_path):
    itos = ["<pad>"] + [f"w{i}" for i in range(400)]
    lines = [f"w{i} " + " ".join(str(v) for v in (torch.randn(50) * 3).tolist()) for i in range(200)]
    matrix, found, _ = load_vectors(_write(tmp_path, "\n".join(lines)), itos)
    assert found == 200
    assert 2.7 < matrix[201:].std() < 3.3


def test_coverage(tmp_path):
    _, found, _ = load_vectors(_write(tmp_path, GLOVE), ITOS)
    assert vocabulary_words(ITOS) == 3
    assert coverage_line(found, vocabulary_words(ITOS)) == "pretrained vectors cover 2 of 3 words (66.7%)"
    assert coverage_line(8123, 9000) == "pretrained vectors cover 8,123 of 9,000 words (90.3%)"


def test_other_encodings(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("caf\u00e9 1 2\nthe 3 4\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"^.*latin.txt line 1 is not utf-8 text .*--vectors-encoding latin-1"):
        load_vectors(path, ["<pad>", "café"])
    matrix, found, _ = load_vectors(path, ["<pad>", "café"], encoding="latin-1")
    assert found == 1 and matrix[1].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("text, message", [
    ("the 1 2 3\ncat 1 2\n", "line 2: expected a word and 3 values like line 1, got 2 values"),
    ("the 1 2 3\ncat 1 2 3 4\n", "line 2: expected a word and 3 values like line 1, got 4 values"),
    ("2 3\nthe 1 2 3\ncat 1 2\n", "line 3: expected a word and 3 values as the header on line 1 says, got 2"),
    ("the 1 2\ncat 1 x\n", "line 2: 'x' is not a number"),
    ("the 1 2\nsat 1 2\ndog 1 nan\n", "line 3: expected finite numbers, got nan"),
    ("the one two\n", "line 1: 'one' is not a number"),
    ("the\n", "line 1: expected a word and its vector's values"),
    ("", "has no vectors"),
    ("\n\n", "has no vectors"),
    ("3 100\n", "has no vectors"),
    ("3 0\n", "line 1: the word2vec header 'count dim' has dim 0"),
    ("sat 1 2\nmat 3 4\n", "has a vector for none of the 3 words of the vocabulary"),
])
def test_bad_files_are_one_line_errors_naming_the_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_vectors(path, ITOS)
    assert str(e.value).startswith(str(path)) and message in str(e.value) and "\n" not in str(e.value)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"the 1 2\ncat 3 4\nd\xffg 5 6\n")
    with pytest.raises(InputError, match=r"v.txt line 3 is not utf-8 text \(invalid start byte at byte 1 of the line\)"):
        load_vectors(path, ITOS)


@pytest.mark.parametrize("name, message", [
    ("missing.txt", "pretrained vectors file .*missing.txt does not exist"),
    ("GoogleNews.bin", r"got a \.bin file: save it as text"),
    ("glove.6B.zip", r"got a \.zip file: unzip it"),
    ("", "is a directory"),
])
def test_bad_paths(tmp_path, name, message):
    with pytest.raises(InputError, match=message):
        load_vectors(tmp_path / name, ITOS)


def test_unknown_encoding_and_a_damaged_gzip(tmp_path):
    with pytest.raises(InputError, match="unknown text encoding 'utf-9'"):
        load_vectors(_write(tmp_path, GLOVE), ITOS, encoding="utf-9")
    path = tmp_path / "v.txt.gz"
    path.write_bytes(gzip.compress(GLOVE.encode())[:-10])
    with pytest.raises(InputError, match=r"^cannot read .*v.txt.gz"):
        load_vectors(path, ITOS)
