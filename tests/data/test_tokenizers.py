"""Tokenizer: vocabulary order and limits, encode/decode round trips, and the vocab.json round trip."""

import json

import pytest

from stackrnn.data import Tokenizer
from stackrnn.errors import InputError


def test_char_vocabulary_order_is_reserved_then_frequency_then_string():
    tok = Tokenizer.fit("bbaaac c")  # a:3, b:2, c:2, ' ':1
    assert tok.itos == ["<unk>", "a", "b", "c", " "]
    assert tok.stoi == {t: i for i, t in enumerate(tok.itos)}
    assert tok.unk_id == 0 and len(tok) == 5 and tok.level == "char"


def test_min_freq_and_max_size_count_the_whole_vocabulary():
    text = "aaaabbbccd"
    assert Tokenizer.fit(text, min_freq=2).itos == ["<unk>", "a", "b", "c"]
    assert Tokenizer.fit(text, max_size=3).itos == ["<unk>", "a", "b"]
    assert Tokenizer.fit(text, reserved=["<pad>", "<unk>"], max_size=3).itos == ["<pad>", "<unk>", "a"]


@pytest.mark.parametrize(
    "kwargs",
    [dict(level="byte"), dict(min_freq=0), dict(max_size=0), dict(reserved=["<pad>"])],
)
def test_bad_fit_arguments_raise_input_error(kwargs):
    with pytest.raises(InputError):
        Tokenizer.fit("abc", **kwargs)


def test_char_round_trip_and_unknowns():
    tok = Tokenizer.fit("hello world\n")
    assert tok.decode(tok.encode("world hello\n")) == "world hello\n"
    assert tok.encode("hz") == [tok.stoi["h"], tok.unk_id]
    assert tok.unknown_tokens("zebra?") == ["?", "a", "b", "z"]
    assert tok.unknown_tokens("hello") == []


def test_word_level_marks_newlines_with_eos_like_ptb():
    text = " the cat sat \n the dog \n"
    tok = Tokenizer.fit(text, level="word")
    assert tok.itos[:2] == ["<unk>", "<eos>"]
    assert tok.tokens(text) == ["the", "cat", "sat", "<eos>", "the", "dog", "<eos>"]
    assert tok.tokenize("a b") == ["a", "b"]  # no newline, no <eos>
    # Round trip up to whitespace: words joined by one space, <eos> rendered as a newline.
    assert tok.decode(tok.encode(text)) == "the cat sat\nthe dog\n"
    assert tok.decode(tok.encode("the bird")) == "the <unk>"
    assert tok.unknown_tokens("the bird flew") == ["bird", "flew"]
    assert tok.eos_id == 1


def test_decode_accepts_a_tensor():
    torch = pytest.importorskip("torch")
    tok = Tokenizer.fit("abc")
    assert tok.decode(torch.tensor(tok.encode("cab"))) == "cab"


def test_save_load_round_trip(tmp_path):
    tok = Tokenizer.fit("some words here\nand there\n", level="word", min_freq=1)
    path = tmp_path / "vocab.json"
    tok.save(path)
    loaded = Tokenizer.load(path)
    assert loaded == tok and loaded.level == "word" and loaded.itos == tok.itos
    assert Tokenizer.from_dict(json.loads(path.read_text())) == tok
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temporary file left behind


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "vocab.json"
    Tokenizer.fit("ab").save(path)
    Tokenizer.fit("xyz").save(path)
    assert Tokenizer.load(path).itos == ["<unk>", "x", "y", "z"]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"format": "stackrnn.tokenizer", "version": 1, "level": "char", "itos": ["a", "b"]}),  # no <unk>
        json.dumps({"format": "stackrnn.tokenizer", "version": 1, "level": "bpe", "itos": ["<unk>"]}),
        json.dumps({"format": "stackrnn.tokenizer", "version": 1, "level": "char", "itos": ["<unk>", "a", "a"]}),
        json.dumps({"format": "stackrnn.tokenizer", "version": 99, "level": "char", "itos": ["<unk>"]}),
    ],
)
def test_corrupt_vocab_file_raises_input_error_naming_it(tmp_path, content):
    path = tmp_path / "vocab.json"
    path.write_text(content)
    with pytest.raises(InputError, match="vocab.json") as err:
        Tokenizer.load(path)
    assert "\n" not in str(err.value)


def test_missing_vocab_file_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Tokenizer.load(tmp_path / "nope.json")


def test_non_utf8_vocab_file_raises_input_error(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError, match="vocab.json"):
        Tokenizer.load(path)


# ----------------------------------------------------------------------------------------------- text level
def test_text_level_lowercases_and_splits_punctuation_and_sst_clitics():
    tok = Tokenizer.fit(["It 's a GREAT film , is n't it ?", "Don't!"], level="text")
    assert tok.itos[:2] == ["<pad>", "<unk>"] and tok.pad_id == 0 and tok.unk_id == 1
    assert tok.eos_id is None and tok.lower and tok.level == "text"
    assert tok.tokens("It 's a GREAT film , is n't it ?") == ["it", "'s", "a", "great", "film", ",", "is", "n't", "it", "?"]
    assert tok.tokens("Don't!") == ["don't", "!"]  # an inner apostrophe stays in the word
    assert tok.tokens("they 're 'quoted' (well-made) 3.5\nstars") == [
        "they", "'re", "'", "quoted", "'", "(", "well", "-", "made", ")", "3", ".", "5", "stars"]
    assert tok.tokens("Don\u2019t") == ["don't"]  # a typographic apostrophe is the same word
    assert tok.decode(tok.encode("It 's GREAT , is n't it ?")) == "it 's great , is n't it ?"
    assert tok.encode("a zebra") == [tok.stoi["a"], tok.unk_id]


def test_text_level_fits_a_list_of_texts_with_min_freq_and_max_size():
    texts = ["b a a", "a b c", "A d"]  # a:4 b:2 c:1 d:1 after lower-casing
    assert Tokenizer.fit(texts, level="text").itos == ["<pad>", "<unk>", "a", "b", "c", "d"]
    assert Tokenizer.fit(texts, level="text", min_freq=2).itos == ["<pad>", "<unk>", "a", "b"]
    assert Tokenizer.fit(texts, level="text", max_size=3).itos == ["<pad>", "<unk>", "a"]
    assert Tokenizer.fit(texts, level="text") == Tokenizer.fit(iter(texts), level="text")  # any iterable
    kept = Tokenizer.fit(texts, level="text", lower=False)
    assert "A" in kept.stoi and kept.tokens("A b") == ["A", "b"] and not kept.lower
    # a list of texts at word level: each text on its own, no <eos> between them
    assert Tokenizer.fit(["x y", "y"], level="word").itos == ["<unk>", "<eos>", "y", "x"]


def test_text_level_round_trips_through_vocab_json(tmp_path):
    path = tmp_path / "vocab.json"
    for lower in (True, False):
        tok = Tokenizer.fit(["Hello , World !"], level="text", lower=lower)
        tok.save(path)
        assert json.loads(path.read_text())["lower"] is lower
        loaded = Tokenizer.load(path)
        assert loaded == tok and loaded.lower is lower and loaded.pad_id == 0
        assert loaded.encode("HELLO world") == tok.encode("HELLO world")


def test_vocab_files_written_before_text_level_still_load(tmp_path):
    path = tmp_path / "vocab.json"  # no "lower": what char and word runs wrote before it existed
    path.write_text(json.dumps({"format": "stackrnn.tokenizer", "version": 1, "level": "char", "itos": ["<unk>", "A", "b"]}))
    tok = Tokenizer.load(path)
    assert tok.lower is False and tok.pad_id is None and tok.encode("Ab") == [1, 2]  # no lower-casing
    assert Tokenizer.fit("Ab").lower is False and Tokenizer.fit("Ab", level="word").lower is False


def test_bad_lower_is_rejected(tmp_path):
    with pytest.raises(InputError, match="lower"):
        Tokenizer.fit(["a"], level="text", lower="yes")
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"format": "stackrnn.tokenizer", "version": 1, "level": "text", "lower": 1,
                                "itos": ["<pad>", "<unk>"]}))
    with pytest.raises(InputError, match="vocab.json"):
        Tokenizer.load(path)
