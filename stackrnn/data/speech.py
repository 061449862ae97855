"""Transcribed speech: lists of (file, transcript) from a manifest, the CMU AN4 layout or the Free Spoken Digit
Dataset's file names, and the token set transcripts are written in.

A manifest is CSV, TSV or JSONL with a path (audio or features) and a transcript per row, paths relative to the
manifest:

    path,transcript                       {"path": "a/1.wav", "transcript": "yes"}
    a/1.wav,yes

FSDD's isolated takes can also be joined into connected-digit strings (`connect_digits`: 2 to 7 takes of one
speaker with short silences, drawn from a fixed seed), the sequence task CTC is for.

Every problem names its file and line. In a long manifest (LONG rows or more) a row whose file is missing or
whose transcript is empty is skipped with one counted warning, unless nothing is left; in a short one it is an
error, since then it is most likely a mistake in the whole file.
"""

from __future__ import annotations

import csv
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, plural

#: a manifest of at least this many rows skips bad rows (with a counted warning) instead of stopping
LONG = 20
#: FSDD's file names, {digit}_{speaker}_{index}.wav
_FSDD = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav")
#: AN4 transcripts: "WORDS ... (utterance id)"
_AN4 = re.compile(r"(.*?)\s*\(([^()\s]+)\)\s*")
PATH_KEYS = ("path", "audio", "audio_filepath", "file", "features")
TEXT_KEYS = ("transcript", "text", "sentence")


@dataclass
class Utterance:
    """One transcribed recording: its file, its transcript, where it was listed ("file, line N") and its
    speaker (when the dataset names one); or a recording made of several (`parts`)."""

    path: str
    text: str
    where: str
    speaker: str = ""
    #: a connected-digit string: (take, milliseconds of silence before it) joined, then `tail` ms of silence
    parts: list[tuple[str, int]] | None = None
    tail: int = 0


def read_manifest(path: str | Path) -> list[Utterance]:
    """The rows of a CSV, TSV or JSONL manifest (by suffix), checked (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such manifest file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise InputError(f"{path}: a manifest is .csv, .tsv or .jsonl, got {suffix or 'no suffix'}")
    rows: list[tuple[int, str | None, str | None]] = []  # (line, path, transcript)
    with open(path, encoding="utf-8", newline="") as f:
        if suffix == ".jsonl":
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(f"{path}, line {n}: not a JSON object ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise InputError(f"{path}, line {n}: expected a JSON object with path and transcript")
                rows.append((n, _first(obj, PATH_KEYS), _first(obj, TEXT_KEYS)))
        else:
            reader = csv.reader(f, delimiter="\t" if suffix == ".tsv" else ",")
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: the manifest is empty")
            columns = [h.strip().lower() for h in header]
            p = next((columns.index(k) for k in PATH_KEYS if k in columns), None)
            t = next((columns.index(k) for k in TEXT_KEYS if k in columns), None)
            if p is None or t is None:
                raise InputError(f"{path}, line 1: expected a header naming a path column ({', '.join(PATH_KEYS)}) and "
                                 f"a transcript column ({', '.join(TEXT_KEYS)}), got {', '.join(header)}")
            for fields in reader:
                n = reader.line_num
                if not any(x.strip() for x in fields):
                    continue
                if len(fields) != len(header):
                    raise InputError(f"{path}, line {n}: {len(fields)} fields, but the header has {len(header)}")
                rows.append((n, fields[p], fields[t]))
    if not rows:
        raise InputError(f"{path}: the manifest lists no recordings")
    good, bad = [], []
    for n, file, text in rows:
        where = f"{path}, line {n}"
        if not isinstance(file, str) or not file.strip():
            raise InputError(f"{where}: no path to an audio or feature file")
        if not isinstance(text, str):
            raise InputError(f"{where}: no transcript")
        full = (path.parent / file.strip()).resolve()
        problem = None if full.is_file() else f"{full} does not exist"
        problem = problem or (None if text.strip() else "the transcript is empty")
        (bad if problem else good).append(f"{where}: {problem}" if problem else Utterance(str(full), text.strip(), where))
    return kept(good, bad, str(path), len(rows))


def kept(good: list, bad: list[str], source: str, total: int) -> list:
    """The good rows, after one counted warning for the bad ones (long lists) or an error (short ones, or none left)."""
    if bad and (total < LONG or not good):
        raise InputError(bad[0] + ("" if good else f" (and every other of the {total} rows is bad too)"
                                   if len(bad) > 1 else ""))
    if bad:
        warnings.warn(f"{source}: skipped {plural(len(bad), 'bad row')} of {total}; the first: {bad[0]}", stacklevel=2)
    return good


def _first(obj: dict, keys: tuple[str, ...]):
    return next((obj[k] for k in keys if k in obj), None)


def read_an4(root: str | Path, split: str) -> list[Utterance]:
    """AN4's `split` (train or test) as CMU distributes it: etc/an4_{split}.fileids (feat/ paths without .mfc)
    line by line with etc/an4_{split}.transcription ("WORDS (utterance id)")."""
    root = Path(root)
    ids_file, text_file = root / "etc" / f"an4_{split}.fileids", root / "etc" / f"an4_{split}.transcription"
    for f in (ids_file, text_file):
        if not f.is_file():
            raise InputError(f"{root}: AN4's layout has {f.relative_to(root)}, which is missing")
    ids = [line.strip() for line in ids_file.read_text().splitlines() if line.strip()]
    texts = [line for line in text_file.read_text().splitlines() if line.strip()]
    if len(ids) != len(texts):
        raise InputError(f"{ids_file} lists {len(ids)} utterances but {text_file.name} has {len(texts)} transcripts")
    good, bad = [], []
    for n, (file_id, line) in enumerate(zip(ids, texts), 1):
        where = f"{text_file}, line {n}"
        m = _AN4.fullmatch(line)
        if not m:
            raise InputError(f"{where}: expected 'WORDS ... (utterance id)', got {line!r}")
        if m.group(2) != Path(file_id).name:
            raise InputError(f"{where}: utterance {m.group(2)!r}, but line {n} of {ids_file.name} is {file_id!r}")
        full = root / "feat" / f"{file_id}.mfc"
        if not full.is_file():
            bad.append(f"{where}: {full} does not exist")
        elif not m.group(1).strip():
            bad.append(f"{where}: the transcript is empty")
        else:
            good.append(Utterance(str(full), " ".join(m.group(1).split()), where, file_id.split("/")[-2]))
    return kept(good, bad, str(text_file), len(ids))


def read_fsdd(folder: str | Path) -> list[Utterance]:
    """Every `{digit}_{speaker}_{index}.wav` of the Free Spoken Digit Dataset (in `folder` or its recordings/),
    each transcribed as its digit; `where` holds the take's index for FSDD's own split."""
    folder = Path(folder)
    if (folder / "recordings").is_dir():
        folder = folder / "recordings"
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of FSDD recordings")
    found = []
    for p in sorted(folder.iterdir()):
        m = _FSDD.fullmatch(p.name)
        if m:
            found.append(Utterance(str(p), m.group(1), m.group(3), m.group(2)))
    if not found:
        raise InputError(f"{folder}: holds no FSDD recordings named {{digit}}_{{speaker}}_{{index}}.wav")
    return found


def fsdd_split(utterances: list[Utterance], test_speakers: list[str]) -> tuple[list[Utterance], list[Utterance]]:
    """(train, test): by FSDD's own rule (takes 0-4 of every digit and speaker are the test set) or, with
    `test_speakers`, every take of those speakers is the test set (speaker-independent results)."""
    if not test_speakers:
        return [u for u in utterances if int(u.where) > 4], [u for u in utterances if int(u.where) <= 4]
    speakers = sorted({u.speaker for u in utterances})
    unknown = [s for s in test_speakers if s not in speakers]
    if unknown:
        raise InputError(f"data.test_speakers: {unknown[0]!r} is not among the recordings' speakers ({', '.join(speakers)})")
    if set(test_speakers) >= set(speakers):
        raise InputError("data.test_speakers: every speaker would be tested, none left to train on")
    return ([u for u in utterances if u.speaker not in test_speakers], [u for u in utterances if u.speaker in test_speakers])


def connect_digits(takes: list[Utterance], count: int, seed: int, *, gaps_ms: tuple[int, int] = (50, 300),
                   name: str = "connected") -> list[Utterance]:
    """`count` connected-digit strings, each 2 to 7 different takes of one speaker joined with silences of
    `gaps_ms` (before each take and after the last), drawn from `seed` alone: the same strings on every machine
    and every call. Speakers are drawn uniformly, takes uniformly among the speaker's."""
    by_speaker: dict[str, list[Utterance]] = {}
    for u in takes:
        by_speaker.setdefault(u.speaker, []).append(u)
    speakers = sorted(s for s, group in by_speaker.items() if len(group) >= 2)
    if not speakers:
        raise InputError("data.connected: connected-digit strings need a speaker with at least 2 takes in each split")
    rng = np.random.default_rng(seed)
    strings = []
    for i in range(count):
        speaker = speakers[int(rng.integers(len(speakers)))]
        group = by_speaker[speaker]
        picked = rng.choice(len(group), size=min(int(rng.integers(2, 8)), len(group)), replace=False)
        gaps = rng.integers(gaps_ms[0], gaps_ms[1] + 1, size=len(picked) + 1).tolist()
        parts = [(group[k].path, gap) for k, gap in zip(picked.tolist(), gaps)]
        text = "".join(group[k].text for k in picked.tolist())
        strings.append(Utterance(f"{name}-{i}.wav", text, f"{name} string {i} ({speaker}: {text})", speaker, parts,
                                 gaps[-1]))
    return strings


class Tokens:
    """The symbols transcripts are written in; id 0 is CTC's blank, symbol i is id i + 1.

    Characters by default (a space is a symbol, so words are told apart); given symbols longer than one
    character, a transcript is read as whitespace-separated symbols (phones, words)."""

    def __init__(self, symbols: list[str]) -> None:
        if len(set(symbols)) != len(symbols) or not symbols:
            raise InputError(f"data.tokens: expected distinct symbols, got {symbols!r}")
        self.symbols = list(symbols)
        self.words = any(len(s) != 1 for s in symbols)
        self.index = {s: i + 1 for i, s in enumerate(symbols)}

    @classmethod
    def fit(cls, texts: list[str]) -> Tokens:
        return cls(sorted({c for t in texts for c in t}))

    def __len__(self) -> int:
        return len(self.symbols) + 1  # the blank too

    def split(self, text: str) -> list[str]:
        if self.words:
            return text.split()
        return [c for c in " ".join(text.split()) if c != " " or " " in self.index]

    def encode(self, text: str, where: str) -> list[int]:
        pieces = self.split(text)
        unknown = next((p for p in pieces if p not in self.index), None)
        if unknown is not None:
            raise InputError(f"{where}: transcript {text!r} has {unknown!r}, which is not among the run's symbols "
                             f"({''.join(self.symbols) if not self.words else ' '.join(self.symbols)!r})")
        if not pieces:
            raise InputError(f"{where}: transcript {text!r} has no symbols of the run's token set")
        return [self.index[p] for p in pieces]

    def decode(self, ids: list[int]) -> str:
        """The transcript of token ids (blank-free); spaces a model emits at either end or twice in a row are
        one word boundary, so they are trimmed and merged, as references are."""
        if self.words:
            return " ".join(self.symbols[i - 1] for i in ids)
        text = "".join(self.symbols[i - 1] for i in ids)
        return " ".join(word for word in text.split(" ") if word) if " " in self.index else text
