"""Character-, word- and text-level tokenizers with a fixed vocabulary.

A `Tokenizer` maps text to token ids and back. It is fit once on the training text, saved as `vocab.json` in the
run directory, and loaded again by generate/eval, so the ids a model was trained on never drift.

    tok = Tokenizer.fit(text, level="char")
    ids = tok.encode("hello")          # list[int]
    tok.decode(ids)                    # "hello"

Levels
- "char": every character is a token; `decode` joins them, so decode(encode(s)) == s for in-vocabulary text.
- "word": each line is split on whitespace and "<eos>" is appended at every newline (the PTB / Zaremba et al.
  convention: a line is a sentence). `decode` joins words with single spaces and renders "<eos>" as a newline,
  so decode(encode(s)) is s with runs of spaces collapsed.
- "text": for classification. The text is lower-cased (unless lower=False), then cut into words: runs of
  letters and digits that keep inner apostrophes ("don't"), the clitics SST writes apart ("'s", "'re", "'ll",
  ...; "n't" of "do n't" is a word with an inner apostrophe), and every other non-space character alone
  ("great!" -> "great", "!"). No "<eos>": a text is one example, its line breaks mean nothing. The reserved
  tokens are "<pad>" (id 0, what short texts of a batch are padded with) and "<unk>". `decode` joins with spaces.

    tok = Tokenizer.fit(["It's great!", "It does n't work ."], level="text")
    tok.tokens("Don't!")               # ["don't", "!"]

Unknown tokens encode to the id of "<unk>", which every vocabulary holds.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from ..files import atomic_write_text

UNK = "<unk>"
EOS = "<eos>"
PAD = "<pad>"
LEVELS = ("char", "word", "text")
#: reserved tokens of each level, placed first; "text" puts <pad> at id 0 (nn.Embedding's usual padding_idx)
RESERVED = {"char": [UNK], "word": [UNK, EOS], "text": [PAD, UNK]}
_FORMAT = "stackrnn.tokenizer"
_VERSION = 1


class Tokenizer:
    """A vocabulary plus the rule that cuts text into tokens.

    Attributes:
        itos: list of token strings; position = id. Reserved tokens come first.
        stoi: dict from token string to id (the inverse of itos).
        unk_id: id of "<unk>", the id of every token not in the vocabulary.
        level: "char", "word" or "text".
        lower: whether text is lower-cased before it is cut into tokens.
    """

    def __init__(self, itos: list[str], level: str = "char", lower: bool | None = None):
        problem = _check_vocab(itos, level) or _check_lower(lower)
        if problem:
            raise InputError(f"bad vocabulary: {problem}")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        self.unk_id: int = self.stoi[UNK]
        self._level = level
        self.lower: bool = _default_lower(level) if lower is None else lower

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def fit(
        cls,
        text: str | Iterable[str],
        level: str = "char",
        min_freq: int = 1,
        max_size: int | None = None,
        reserved: list[str] | None = None,
        lower: bool | None = None,
    ) -> Tokenizer:
        """Build the vocabulary of `text` (one string, or a list of texts such as the examples of a dataset).

        The vocabulary is the reserved tokens, then the other tokens by descending frequency with ties broken by
        the token string (so the same text always gives the same ids), keeping tokens seen at least `min_freq`
        times, cut to `max_size` entries in all (reserved tokens included).

        Args:
            text: training text, or a list of training texts (each cut into tokens on its own).
            level: "char", "word" or "text".
            min_freq: drop tokens seen fewer times than this.
            max_size: the most entries the vocabulary may have, reserved tokens included; None for no limit.
            reserved: tokens placed first whatever their count; must include "<unk>". Default ["<unk>"] for char
                level, ["<unk>", "<eos>"] for word level, ["<pad>", "<unk>"] for text level.
            lower: lower-case text before cutting it. Default True for text level, False for the others (a
                language model must generate capitals).
        """
        _check_level(level)
        problem = _check_lower(lower)
        if problem:
            raise InputError(f"{problem}: pass lower=True or lower=False")
        if not isinstance(min_freq, int) or min_freq < 1:
            raise InputError(f"min_freq must be an integer >= 1, got {min_freq!r}: pass min_freq=1 to keep every token")
        if reserved is None:
            reserved = RESERVED[level]
        reserved = list(dict.fromkeys(reserved))  # drop repeats, keep order
        if UNK not in reserved:
            raise InputError(f"reserved tokens {reserved} lack {UNK!r}: add it, unknown tokens need an id")
        if max_size is not None and (not isinstance(max_size, int) or max_size < len(reserved)):
            raise InputError(
                f"max_size must be an integer >= {len(reserved)} (the reserved tokens), got {max_size!r}: "
                "pass a larger max_size or None for no limit"
            )

        if lower is None:
            lower = _default_lower(level)
        counts: Counter[str] = Counter()
        for one in [text] if isinstance(text, str) else text:
            counts.update(_tokenize(one, level, lower))
        taken = set(reserved)
        ranked = sorted(
            (tok for tok, n in counts.items() if n >= min_freq and tok not in taken),
            key=lambda tok: (-counts[tok], tok),
        )
        itos = reserved + ranked
        if max_size is not None:
            itos = itos[:max_size]
        return cls(itos, level, lower)

    # -------------------------------------------------------------------------------------------- using
    @property
    def level(self) -> str:
        """"char", "word" or "text"."""
        return self._level

    @property
    def pad_id(self) -> int | None:
        """Id of "<pad>" (what text-level batches are padded with), or None if the vocabulary has none."""
        return self.stoi.get(PAD)

    @property
    def eos_id(self) -> int | None:
        """Id of "<eos>" (the newline of word-level text), or None if the vocabulary has none."""
        return self.stoi.get(EOS)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Tokenizer(level={self._level!r}, size={len(self)}, lower={self.lower})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Tokenizer) and self._level == other._level and self.lower == other.lower
                and self.itos == other.itos)

    def tokenize(self, text: str) -> list[str]:
        """Cut `text` into token strings (characters, words with "<eos>" at each newline, or text-level words)."""
        return _tokenize(text, self._level, self.lower)

    tokens = tokenize  # the name generate/inspect read best with: tok.tokens(prompt)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; tokens outside the vocabulary become `unk_id`."""
        get, unk = self.stoi.get, self.unk_id
        return [get(tok, unk) for tok in _tokenize(text, self._level, self.lower)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids (a list, or a 1-D tensor). Word level: words joined by spaces, "<eos>" as newline;
        text level: tokens joined by spaces."""
        if hasattr(ids, "tolist"):  # a tensor or numpy array: one conversion instead of one per element
            ids = ids.tolist()
        words = [self.itos[i] for i in ids]
        if self._level == "char":
            return "".join(words)
        if self._level == "text":
            return " ".join(words)
        # Join each sentence with spaces, then sentences with newlines, so no space hugs a newline.
        lines, line = [], []
        for w in words:
            if w == EOS:
                lines.append(" ".join(line))
                line = []
            else:
                line.append(w)
        lines.append(" ".join(line))
        return "\n".join(lines)

    def unknown_tokens(self, text: str) -> list[str]:
        """Sorted distinct tokens of `text` that are not in the vocabulary (to reject a prompt before use)."""
        return sorted({tok for tok in _tokenize(text, self._level, self.lower) if tok not in self.stoi})

    # ------------------------------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        """A JSON-able description; `Tokenizer.from_dict` inverts it."""
        return {"format": _FORMAT, "version": _VERSION, "level": self._level, "lower": self.lower,
                "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        """Rebuild a tokenizer from `to_dict()` output; an ill-formed dict raises InputError."""
        problem = _check_dict(d)
        if problem:
            raise InputError(f"bad vocabulary: {problem}")
        return cls(d["itos"], d["level"], d.get("lower", False))

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON, atomically: a reader sees the old file or the new one, never half."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), ensure_ascii=False, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a vocabulary written by `save`; a missing, corrupt or ill-formed file raises InputError."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"vocabulary file {path} does not exist: pass the vocab.json of a run") from None
        except (OSError, ValueError, RecursionError) as e:
            # ValueError: not UTF-8, not JSON, or an integer of more than 4,300 digits; RecursionError: nested
            # thousands deep
            reason = "nested too deeply" if isinstance(e, RecursionError) else _one_line(e)
            raise InputError(f"vocabulary file {path} cannot be read ({reason}): restore it from the run") from None
        problem = _check_dict(d)
        if problem:
            raise InputError(f"vocabulary file {path} is ill-formed ({problem}): restore it from the run")
        return cls(d["itos"], d["level"], d.get("lower", False))


# ------------------------------------------------------------------------------------------------- helpers
# A word: letters/digits with inner apostrophes (don't, n't), or a clitic SST writes apart ('s, 're, 'll, 've,
# 'd, 'm), else one non-space character. A clitic must end there, so a quote opening 'hello' stays punctuation.
_TEXT_TOKEN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|'(?:s|re|ve|ll|d|m)(?![^\W_])|\S", re.IGNORECASE)


def _tokenize(text: str, level: str, lower: bool = False) -> list[str]:
    if lower:
        text = text.lower()
    if level == "char":
        return list(text)
    if level == "text":
        # typographic apostrophes (U+2019, "don’t") read as ASCII ones, so both spellings are one word
        return _TEXT_TOKEN.findall(text.replace("\u2019", "'"))
    tokens: list[str] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        tokens.extend(line.split())
        if i < len(lines) - 1:  # a newline followed this line
            tokens.append(EOS)
    return tokens


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise InputError(f"unknown tokenizer level {level!r}: use 'char', 'word' or 'text'")


def _default_lower(level: str) -> bool:
    return level == "text"


def _check_lower(lower: object) -> str | None:
    if lower is not None and not isinstance(lower, bool):
        return f"lower must be true or false, got {lower!r}"
    return None


def _check_vocab(itos: object, level: object) -> str | None:
    """What is wrong with (itos, level), or None."""
    if level not in LEVELS:
        return f"level {level!r} is not 'char', 'word' or 'text'"
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        return "itos is not a list of strings"
    if len(set(itos)) != len(itos):
        return "itos has repeated tokens"
    if UNK not in itos:
        return f"itos lacks {UNK!r}"
    return None


def _check_dict(d: object) -> str | None:
    if not isinstance(d, dict):
        return "not a JSON object"
    if d.get("format") != _FORMAT:
        return f"'format' is {d.get('format')!r}, expected {_FORMAT!r}"
    if d.get("version") != _VERSION:
        return f"'version' is {d.get('version')!r}, this stackrnn reads version {_VERSION}"
    return _check_vocab(d.get("itos"), d.get("level")) or _check_lower(d.get("lower"))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
