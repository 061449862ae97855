"""Per-token text features, for character and word tokens alike."""

from stackrnn.inspect.features import text_features


def test_character_features_follow_quotes_brackets_lines_and_words():
    f = text_features(list('He said "hi (a [b]) x"\nok'))
    row = lambda name: "".join(str(int(v)) if v < 10 else "+" for v in f[name])  # noqa: E731
    assert row("inside_quotes") == "0000000011111111111111000"
    assert row("bracket_depth") == "0000000000001112221000000"
    assert row("position_in_word") == "1201234001200100100010012"
    assert row("line_end") == "0000000000000000000000100"


def test_word_tokens_are_read_as_their_characters():
    f = text_features('He said "hello there" (and then) left <eos> ok'.split())
    assert f["inside_quotes"] == [0, 0, 1, 1, 0, 0, 0, 0, 0]
    assert f["bracket_depth"] == [0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert f["line_end"] == [0, 0, 0, 0, 0, 0, 0, 1, 0] and f["position_in_line"][-1] == 1
    assert f["position_in_word"][:3] == [2, 4, 5]  # letters of the word read so far, at its last letter
