"""Character- and word-level tokenizers with a fixed vocabulary.

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

Unknown tokens encode to the id of "<unk>", which every vocabulary holds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from ..files import atomic_write_text

UNK = "<unk>"
EOS = "<eos>"
LEVELS = ("char", "word")
_FORMAT = "stackrnn.tokenizer"
_VERSION = 1


class Tokenizer:
    """A vocabulary plus the rule that cuts text into tokens.

    Attributes:
        itos: list of token strings; position = id. Reserved tokens come first.
        stoi: dict from token string to id (the inverse of itos).
        unk_id: id of "<unk>", the id of every token not in the vocabulary.
        level: "char" or "word".
    """

    def __init__(self, itos: list[str], level: str = "char"):
        problem = _check_vocab(itos, level)
        if problem:
            raise InputError(f"bad vocabulary: {problem}")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        self.unk_id: int = self.stoi[UNK]
        self._level = level

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def fit(
        cls,
        text: str,
        level: str = "char",
        min_freq: int = 1,
        max_size: int | None = None,
        reserved: list[str] | None = None,
    ) -> Tokenizer:
        """Build the vocabulary of `text`.

        The vocabulary is the reserved tokens, then the other tokens by descending frequency with ties broken by
        the token string (so the same text always gives the same ids), keeping tokens seen at least `min_freq`
        times, cut to `max_size` entries in all (reserved tokens included).

        Args:
            text: training text.
            level: "char" or "word".
            min_freq: drop tokens seen fewer times than this.
            max_size: the most entries the vocabulary may have, reserved tokens included; None for no limit.
            reserved: tokens placed first whatever their count; must include "<unk>".
                Default ["<unk>"] for char level, ["<unk>", "<eos>"] for word level.
        """
        _check_level(level)
        if not isinstance(min_freq, int) or min_freq < 1:
            raise InputError(f"min_freq must be an integer >= 1, got {min_freq!r}: pass min_freq=1 to keep every token")
        if reserved is None:
            reserved = [UNK] if level == "char" else [UNK, EOS]
        reserved = list(dict.fromkeys(reserved))  # drop repeats, keep order
        if UNK not in reserved:
            raise InputError(f"reserved tokens {reserved} lack {UNK!r}: add it, unknown tokens need an id")
        if max_size is not None and (not isinstance(max_size, int) or max_size < len(reserved)):
            raise InputError(
                f"max_size must be an integer >= {len(reserved)} (the reserved tokens), got {max_size!r}: "
                "pass a larger max_size or None for no limit"
            )

        counts = Counter(_tokenize(text, level))
        taken = set(reserved)
        ranked = sorted(
            (tok for tok, n in counts.items() if n >= min_freq and tok not in taken),
            key=lambda tok: (-counts[tok], tok),
        )
        itos = reserved + ranked
        if max_size is not None:
            itos = itos[:max_size]
        return cls(itos, level)

    # -------------------------------------------------------------------------------------------- using
    @property
    def level(self) -> str:
        """"char" or "word"."""
        return self._level

    @property
    def eos_id(self) -> int | None:
        """Id of "<eos>" (the newline of word-level text), or None if the vocabulary has none."""
        return self.stoi.get(EOS)

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Tokenizer(level={self._level!r}, size={len(self)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tokenizer) and self._level == other._level and self.itos == other.itos

    def tokenize(self, text: str) -> list[str]:
        """Cut `text` into token strings (characters, or words with "<eos>" at each newline)."""
        return _tokenize(text, self._level)

    tokens = tokenize  # the name generate/inspect read best with: tok.tokens(prompt)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; tokens outside the vocabulary become `unk_id`."""
        get, unk = self.stoi.get, self.unk_id
        return [get(tok, unk) for tok in _tokenize(text, self._level)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids (a list, or a 1-D tensor). Word level: words joined by spaces, "<eos>" as newline."""
        if hasattr(ids, "tolist"):  # a tensor or numpy array: one conversion instead of one per element
            ids = ids.tolist()
        words = [self.itos[i] for i in ids]
        if self._level == "char":
            return "".join(words)
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
        return sorted({tok for tok in _tokenize(text, self._level) if tok not in self.stoi})

    # ------------------------------------------------------------------------------------------ storage
    def to_dict(self) -> dict:
        """A JSON-able description; `Tokenizer.from_dict` inverts it."""
        return {"format": _FORMAT, "version": _VERSION, "level": self._level, "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        """Rebuild a tokenizer from `to_dict()` output; an ill-formed dict raises InputError."""
        problem = _check_dict(d)
        if problem:
            raise InputError(f"bad vocabulary: {problem}")
        return cls(d["itos"], d["level"])

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
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            reason = _one_line(e)
            raise InputError(f"vocabulary file {path} cannot be read ({reason}): restore it from the run") from None
        problem = _check_dict(d)
        if problem:
            raise InputError(f"vocabulary file {path} is ill-formed ({problem}): restore it from the run")
        return cls(d["itos"], d["level"])


# ------------------------------------------------------------------------------------------------- helpers
def _tokenize(text: str, level: str) -> list[str]:
    if level == "char":
        return list(text)
    tokens: list[str] = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        tokens.extend(line.split())
        if i < len(lines) - 1:  # a newline followed this line
            tokens.append(EOS)
    return tokens


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise InputError(f"unknown tokenizer level {level!r}: use 'char' or 'word'")


def _check_vocab(itos: object, level: object) -> str | None:
    """What is wrong with (itos, level), or None."""
    if level not in LEVELS:
        return f"level {level!r} is not 'char' or 'word'"
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
    return _check_vocab(d.get("itos"), d.get("level"))


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
