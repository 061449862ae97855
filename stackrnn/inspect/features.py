"""Simple properties of each position of a text, to relate hidden units and layers to: what a unit tracks is
read off by correlating its activation with these (Karpathy et al. 2015 found units for quotes, brackets and
line position this way), and linear probes predict them from each layer's states.

Every feature is one number per token of the text, computed from the tokens up to and including that position
(what a left-to-right model has read), so that it is something the model could know there.

Dimension key: N tokens.
"""

from __future__ import annotations

OPENING, CLOSING = "([{", ")]}"
QUOTES = "\"\u201c\u201d"


def char_class(ch: str) -> int:
    """0 letter, 1 digit, 2 whitespace, 3 punctuation or anything else."""
    return 0 if ch.isalpha() else 1 if ch.isdigit() else 2 if ch.isspace() else 3


#: the class names of char_class, in id order
CHAR_CLASSES = ("letter", "digit", "space", "other")


def text_features(tokens: list[str]) -> dict[str, list[float]]:
    """Per-token features of a text cut into tokens: characters (char models) or words (word models, whose
    tokens are read as their characters with a space after each word, "<eos>" as a newline; each word gets the
    values at its last character):

        inside_quotes    1 between an opening and a closing double quote (the quote characters included)
        inside_brackets  1 inside (...), [...] or {...}
        bracket_depth    how many brackets are open
        position_in_line characters since the last newline
        position_in_word letters since the last non-letter (0 on a non-letter)
        char_class       char_class() of the token's last character
        line_end         1 on a newline
    """
    words = any(len(t) > 1 for t in tokens)  # a character model's tokens are single characters
    stream: list[str] = []
    last: list[int] = []  # the position in `stream` of each token's last character
    for tok in tokens:
        stream.extend("\n" if tok == "<eos>" else tok or " ")
        last.append(len(stream) - 1)
        if words and tok != "<eos>":
            stream.append(" ")
    per_char = _char_features(stream)
    return {name: [values[i] for i in last] for name, values in per_char.items()}


def _char_features(chars: list[str]) -> dict[str, list[float]]:
    """text_features of single characters."""
    feats: dict[str, list[float]] = {name: [] for name in FEATURES}
    quoted, depth, line_pos, word_pos = False, 0, 0, 0
    for ch in chars:
        closes_quote = ch in QUOTES and quoted
        if ch in QUOTES:
            quoted = not quoted
        if ch in OPENING:
            depth += 1
        feats["inside_quotes"].append(float(quoted or closes_quote))
        feats["inside_brackets"].append(float(depth > 0))
        feats["bracket_depth"].append(float(depth))
        if ch in CLOSING:
            depth = max(0, depth - 1)
        word_pos = word_pos + 1 if ch.isalpha() else 0
        feats["position_in_word"].append(float(word_pos))
        feats["position_in_line"].append(float(line_pos))
        line_pos = 0 if ch == "\n" else line_pos + 1
        feats["char_class"].append(float(char_class(ch)))
        feats["line_end"].append(float(ch == "\n"))
    return feats


#: the features text_features computes, in a fixed order
FEATURES = ("inside_quotes", "inside_brackets", "bracket_depth", "position_in_line", "position_in_word", "char_class",
            "line_end")
