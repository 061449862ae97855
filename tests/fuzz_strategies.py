"""Hypothesis strategies and fuzz targets for everything that reads user input: the config loader, the command line
and the data loaders. Shared by tests/test_fuzz.py (a few hundred cases) and scripts/fuzz.py (10,000).

A target is a strategy of inputs and a function that feeds one input to the library. The property every target
checks: the input loads, or the library raises its own InputError with a one-line message (from the command
line: status 2 and one error line on stderr, no traceback). Any other exception is a bug.

Inputs are malformed on purpose: random bytes, bad encodings, NUL bytes, byte-order marks, empty files, huge
lines, wrong column counts, bad quoting, JSON and TOML of the wrong types, unknown keys, deep nesting, numbers
too large to parse; command lines built from the real flag names with random values. No input starts training,
downloads anything or builds a model bigger than the tiny runs made once per process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import tomli_w
from hypothesis import strategies as st

try:  # the plot extra: without it, plotting is left out of the fuzzing
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401 - imported before a case patches Figure.savefig, which pyplot wraps
except ImportError:
    matplotlib = None

from stackrnn.errors import InputError
from stackrnn.train import preflight as real_preflight  # (the command line's cases replace it with _fake_preflight)

# ---------------------------------------------------------------------------------------------- raw material
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "ascii", "cp1252", "shift_jis")
BAD_ENCODINGS = ("", "nope", "hex", "rot13", "base64", "utf-8 ", "UTF8", "idna", "punycode", "undefined")

#: strings that break parsers: huge numbers (Python refuses int() of more than 4300 digits), deep nesting
#: (recursion), NUL, BOMs, lone surrogates' escapes, line and paragraph separators, quotes.
NASTY = ("", " ", "\x00", "\ufeff", "\u2028", "\u2029", "\x0c", "\r", "\r\n", "\t", '"', "'", '""', "\\",
         "1" * 5000, "-" + "9" * 5000, "1e999", "-1e999", "nan", "NaN", "inf", "-inf", "Infinity", "\\ud800",
         "[" * 3000, "{" * 3000, '{"a":' * 3000, "<unk>", "<pad>", "<eos>", "None", "none", "null", "true",
         "false", "0", "-1", "2147483648", "9223372036854775808", "0x10", "1_000", "1.5", "-0.0", "1e-400")

short_text = st.one_of(st.text(max_size=12), st.sampled_from(NASTY))
line_text = st.one_of(st.text(max_size=60), st.sampled_from(NASTY),
                      st.lists(short_text, max_size=5).map(lambda parts: ",".join(parts)),
                      st.lists(short_text, max_size=5).map(lambda parts: "\t".join(parts)))
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                        st.floats(allow_nan=True, allow_infinity=True), short_text)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(short_text, inner, max_size=4), max_leaves=10)

#: raw JSON texts that json.loads chokes on in ways other than JSONDecodeError
JSON_BOMBS = ("1" * 5000, "[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
              '{"itos": [' + "1" * 5000 + "]}", "NaN", "-Infinity", '"\\ud800"', "\ufeff{}", "")


def lines_to_text(lines: list[str]) -> str:
    return "\n".join(lines)


@st.composite
def encoded(draw, text: str) -> bytes:
    """`text` as bytes in a random encoding, sometimes with a BOM, a NUL or a cut in the middle."""
    encoding = draw(st.sampled_from(ENCODINGS))
    try:
        data = text.encode(encoding, errors=draw(st.sampled_from(("replace", "surrogatepass"))))
    except UnicodeEncodeError:  # surrogatepass is for the UTF codecs only
        data = text.encode(encoding, errors="replace")
    return draw(mutated_bytes(data))


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """`data`, or `data` with a BOM before it, a few bytes flipped, inserted or cut off."""
    how = draw(st.sampled_from(("same", "same", "bom", "cut", "insert", "flip")))
    if how == "bom":
        return draw(st.sampled_from((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff"))) + data
    if how == "cut" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "insert":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if how == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return data


def text_file(lines: st.SearchStrategy[str] = line_text, max_lines: int = 12) -> st.SearchStrategy[bytes]:
    """File contents: random bytes, or random lines in a random encoding, now and then one huge line."""
    huge = st.sampled_from((1_000, 140_000)).map(lambda n: "x" * n)  # the csv module's field limit is 131,072
    as_text = st.lists(st.one_of(lines, huge), max_size=max_lines).map(lines_to_text)
    return st.one_of(st.binary(max_size=200), as_text.flatmap(encoded), as_text.map(lambda t: t.encode("utf-8", "surrogatepass")))


def write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


# ----------------------------------------------------------------------------------------------------- targets
@dataclass
class Target:
    """What to fuzz: `strategy` draws an input, `run(input, folder)` feeds it to the library in an empty temporary
    folder. `run` returns normally when the input was accepted and raises whatever the library raised."""

    name: str
    strategy: st.SearchStrategy
    run: Callable[[Any, Path], None]
    weight: int = 1  # share of the script's examples


def all_of(*calls: Callable[[], Any]) -> None:
    """Make every call, then raise the first InputError one of them raised (anything else at once)."""
    errors = []
    for call in calls:
        try:
            call()
        except InputError as e:
            errors.append(e)
    if errors:
        raise errors[0]


class Skip(Exception):
    """An input the harness declines (a model too big to build here): neither a pass nor a failure."""


def check_one(target: Target, example: Any) -> str:
    """Feed one input: "ok" when it loads, "input error" for a one-line InputError, "skipped" for an input the
    harness declines; anything else propagates."""
    offline = mock.patch("urllib.request.urlopen", side_effect=OSError("no downloads while fuzzing"))
    with tempfile.TemporaryDirectory(prefix="stackrnn-fuzz-") as tmp, warnings.catch_warnings(), offline:
        warnings.simplefilter("ignore")
        try:
            target.run(example, Path(tmp))
        except Skip:
            return "skipped"
        except InputError as e:
            message = str(e)
            if not message.strip() or "\n" in message or "Traceback" in message:
                raise AssertionError(f"InputError message is not one line: {message!r}") from e
            return "input error"
    return "ok"


# -- text corpora ----------------------------------------------------------------------------------------------
@st.composite
def corpus_input(draw) -> dict:
    """A text file or a ptb folder (the path mostly naming what was written), and the split fractions."""
    ptb = draw(st.booleans())
    if ptb:
        files = draw(st.dictionaries(st.sampled_from(("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt", "other.txt")),
                                     text_file(max_lines=6), max_size=4))
        files = {f"ptb/{k}": v for k, v in files.items()}
    else:
        files = {"text.txt": draw(text_file())}
    return {
        "files": files,
        "d2l": draw(st.booleans()),
        "valid_fraction": draw(st.one_of(st.sampled_from((0.0, 0.1, 0.1, 0.5, 0.99, 1.0, -0.1)), st.floats(allow_nan=True))),
        "test_fraction": draw(st.one_of(st.sampled_from((0.0, 0.0, 0.1, 0.5)), st.floats(allow_nan=True))),
        "path": draw(st.sampled_from(("ptb" if ptb else "text.txt",) * 6 + ("text.txt", "ptb", "missing.txt", "."))),
    }


def run_corpus(x: dict, folder: Path) -> None:
    from stackrnn.data.corpora import load_corpus

    for name, data in x["files"].items():
        write(folder, name, data)
    load_corpus(data=folder / x["path"], d2l=x["d2l"], valid_fraction=x["valid_fraction"], test_fraction=x["test_fraction"])


# -- labelled texts ----------------------------------------------------------------------------------------------
COLUMN_NAMES = ("text", "label", "sentence", "Text", " text", "", "label ", "text\x00")
csv_field = st.one_of(short_text, short_text.map(lambda s: f'"{s}"'), short_text.map(lambda s: f'"{s}'),
                      st.sampled_from(('a"b', '"a""b"', '"a"b', '"\n"', "pos", "neg", "0", "1")))


@st.composite
def table_text(draw, delimiter: str) -> str:
    header = draw(st.lists(st.sampled_from(COLUMN_NAMES), min_size=0, max_size=4))
    rows = draw(st.lists(st.lists(csv_field, max_size=5), max_size=6))
    return "\n".join(delimiter.join(r) for r in [header, *rows])


jsonl_line = st.one_of(
    json_value.map(lambda v: json.dumps(v, allow_nan=True)),
    st.fixed_dictionaries({}, optional={"text": json_value, "label": json_value, "sentence": json_value})
    .map(json.dumps),
    st.sampled_from(JSON_BOMBS[:3] + ('{"text": "a", "label": ' + "1" * 5000 + "}",
                                      '{"text": "good", "label": 1}', '{"text": "bad", "label": "neg"}')),
    line_text,
)
sst_line = st.one_of(st.tuples(st.sampled_from(("0", "1", "pos", "", "-")), short_text).map(" ".join), line_text)

SUFFIX_FORMAT = {"csv": "csv", "tsv": "tsv", "jsonl": "jsonl", "json": "jsonl", "sst": "sst", "txt": "sst"}
content_of = {"csv": table_text(","), "tsv": table_text("\t"), "jsonl": st.lists(jsonl_line, max_size=8).map(lines_to_text),
              "sst": st.lists(sst_line, max_size=8).map(lines_to_text)}
likely_encoding = st.one_of(st.just("utf-8"), st.just("utf-8"), st.sampled_from(ENCODINGS + BAD_ENCODINGS))


@st.composite
def labelled_input(draw) -> dict:
    """A labelled file (mostly in the format its suffix says, as UTF-8), or a folder of class folders."""
    kind = draw(st.sampled_from(("csv", "tsv", "jsonl", "json", "sst", "txt", "folder")))
    format = SUFFIX_FORMAT.get(kind, "folder")
    content = draw(st.one_of(content_of.get(format, content_of["sst"]), *content_of.values()))
    encoding = draw(likely_encoding)
    as_bytes = draw(st.one_of(st.just(content.encode(encoding, "surrogatepass") if encoding.startswith("utf") else b""),
                              encoded(content), text_file()))
    return {
        "kind": kind, "content": as_bytes or content.encode("utf-8", "surrogatepass"),
        "format": draw(st.one_of(st.just("auto"), st.just(format),
                                 st.sampled_from(("auto", "sst", "csv", "tsv", "jsonl", "folder", "xml")))),
        "text_column": draw(st.sampled_from(("text",) * 4 + COLUMN_NAMES)),
        "label_column": draw(st.sampled_from(("label",) * 4 + COLUMN_NAMES)),
        "encoding": encoding,
        "classes": draw(st.one_of(st.none(), st.none(), st.lists(st.sampled_from(("pos", "neg", "..", "", "a/b", ".hidden")), max_size=3))),
        "folder": draw(st.dictionaries(st.sampled_from(("pos/1.txt", "pos/2.txt", "neg/1.txt", ".hidden/x", "empty/", "pos/.dot",
                                                        "neg/sub/x.txt")), text_file(max_lines=3), max_size=4)),
    }


def run_labelled(x: dict, folder: Path) -> None:
    from stackrnn.data.labelled import read_labelled, read_lines

    if x["kind"] == "folder":
        for name, data in x["folder"].items():
            if name.endswith("/"):
                (folder / "data" / name).mkdir(parents=True, exist_ok=True)
            else:
                write(folder / "data", name, data)
        path = folder / "data"
        path.mkdir(exist_ok=True)
    else:
        path = write(folder, f"data.{x['kind']}", x["content"])
    all_of(lambda: read_labelled(path, format=x["format"], text_column=x["text_column"], label_column=x["label_column"],
                                 encoding=x["encoding"], classes=x["classes"]),
           lambda: read_lines(path, encoding=x["encoding"]))  # (texts to classify, one a line)


# -- parallel text -----------------------------------------------------------------------------------------------
pair_line = st.one_of(st.tuples(short_text, short_text).map("\t".join),
                      st.tuples(short_text, short_text, short_text).map("\t".join), line_text)
parallel_input = st.fixed_dictionaries({
    "content": st.lists(pair_line, max_size=10).map(lambda ls: lines_to_text(ls).encode("utf-8", "surrogatepass"))
    | st.lists(pair_line, max_size=10).map(lines_to_text).flatmap(encoded) | text_file(),
    "encoding": likely_encoding,
    "reverse": st.booleans(), "normalize": st.booleans(), "lower": st.booleans(),
    "max_length": st.one_of(st.none(), st.integers(-2, 5), st.sampled_from((True, 2.5, "3", float("nan")))),
    "valid_fraction": st.one_of(st.sampled_from((0.0, 0.05, 0.5, 1.0)), st.floats(allow_nan=True)),
    "test_fraction": st.one_of(st.sampled_from((0.0, 0.05, 0.5)), st.floats(allow_nan=True)),
})


def run_parallel(x: dict, folder: Path) -> None:
    from stackrnn.data.parallel import read_parallel, split_indices

    path = write(folder, "pairs.txt", x["content"])
    text = read_parallel(path, encoding=x["encoding"], reverse=x["reverse"], normalize=x["normalize"],
                         lower=x["lower"], max_length=x["max_length"])
    split_indices(text, x["valid_fraction"], x["test_fraction"])


# -- time series -------------------------------------------------------------------------------------------------
SERIES_HEADERS = ("V1", "series", "timestamp", "value", "Month", "Passengers", "price", "", " value", "V1\x00")
series_cell = st.one_of(st.integers(-10**6, 10**6).map(str), st.integers(0, 500).map(str),
                        st.floats(allow_nan=True, allow_infinity=True).map(repr),
                        st.sampled_from(("", "NA", "nan", "x", "1,5", "1e999", "H1", "H2", "2020-01-01", "2020-01",
                                         "2020-01-01 01:00:00", "2020-13-01", "2019-12-31T23:00", "1949-02")),
                        short_text)
timestamp = st.one_of(st.dates(min_value=__import__("datetime").date(1900, 1, 1)).map(str),
                      st.datetimes().map(lambda t: t.isoformat(sep=" ")),
                      st.integers(1940, 2030).flatmap(lambda y: st.integers(0, 13).map(lambda m: f"{y}-{m:02d}")),
                      short_text)


@st.composite
def series_input(draw) -> dict:
    """A series file in one of the three layouts (or junk), half of them well formed but for their numbers (so
    that the readers' good paths run too), a test file, a format and reader options."""
    layout = draw(st.sampled_from(("wide", "long", "single", "junk")))
    clean = draw(st.booleans())
    cell = st.integers(0, 10**4).map(str) if clean else series_cell
    cells = st.lists(cell, min_size=6 if clean else 0, max_size=10)
    if layout == "wide":
        ids = st.sampled_from(("H1", "H2", "H3")) if not clean else st.just(None)
        rows = [["V1", "V2", "V3", "V4"]] + [[f"H{i + 1}" if i_ is None else i_, *draw(cells)]
                                               for i, i_ in enumerate(draw(st.lists(ids, min_size=1, max_size=4)))]
    elif layout == "long":
        rows = [draw(st.sampled_from((["series", "timestamp", "value"], ["series", "timestamp", "value", "price"])
                                     if clean else (["series", "timestamp", "value"], ["id", "time", "y"], ["series", "value"])))]
        if clean:
            rows += [[sid, f"2020-01-{day:02d}", draw(cell), draw(cell)] for sid in ("a", "b") for day in range(1, 9)]
        else:
            rows += draw(st.lists(st.tuples(st.sampled_from(("a", "b", "")), timestamp, series_cell, series_cell)
                                  .map(list), max_size=10))
    elif layout == "single":
        start = draw(st.integers(1940, 2000))
        n = draw(st.integers(6 if clean else 0, 30))
        rows = [["Month", "Passengers"]] + [[f"{start + i // 12}-{i % 12 + 1:02d}", draw(cell)] for i in range(n)]
        if not clean and draw(st.booleans()):
            rows = [rows[0]] + draw(st.permutations(rows[1:]))
    else:
        rows = draw(st.lists(st.lists(series_cell, max_size=4), max_size=5))
    content = "\n".join(",".join(r) for r in rows)
    return {"content": content.encode("utf-8", "surrogatepass"),
            "test": draw(st.one_of(st.none(), st.none(), st.lists(st.lists(series_cell, max_size=4), max_size=3)
                                   .map(lambda rs: "\n".join(",".join(r) for r in [["V1", "V2"], *rs]).encode()))),
            "format": draw(st.sampled_from(("auto", "auto", "auto", "wide", "long", "single", "csv"))),
            "freq": draw(st.sampled_from((None, None, None, None, "H", "D", "M", "Y", "h", "X", ""))),
            "hold": draw(st.sampled_from((1, 1, 2, 3, 0, -1, 12))), "min_length": draw(st.sampled_from((0, 1, 3, 5, 20, -1)))}


def run_series(x: dict, folder: Path) -> None:
    from stackrnn.data.calendar import calendar_features, date_range
    from stackrnn.data.series import read_series, read_wide_test
    from stackrnn.forecasting.baselines import forecast_all

    data = read_series(write(folder, "series.csv", x["content"]), x["format"], freq=x["freq"])
    if x["test"] is not None:
        read_wide_test(data, write(folder, "test.csv", x["test"]))
    kept, _ = data.drop_short(x["min_length"])
    head, tails = kept.split_last(x["hold"])
    for name in ("seasonal_naive", "naive2"):
        forecast_all(name, head.values, len(tails[0]), 2)
    if head.starts is not None and head.freq is not None:
        calendar_features(date_range(head.starts[0], head.freq, 3)[-1], head.freq, 4)


# -- vocabulary files ------------------------------------------------------------------------------------------
vocab_dict = st.fixed_dictionaries({}, optional={
    "format": st.one_of(st.just("stackrnn.tokenizer"), json_value),
    "version": st.one_of(st.just(1), json_value),
    "level": st.one_of(st.sampled_from(("char", "word", "text", "bpe")), json_value),
    "lower": st.one_of(st.booleans(), json_value),
    "itos": st.one_of(st.lists(st.sampled_from(("<unk>", "<eos>", "<pad>", "a", "b", "", " ", "\x00")), max_size=6),
                      json_value),
})
VALID_VOCAB = {"format": "stackrnn.tokenizer", "version": 1, "level": "word", "lower": False,
               "itos": ["<unk>", "<eos>", "the", "cat", "ab"]}
vocab_input = st.one_of(vocab_dict.map(lambda d: json.dumps(d, allow_nan=True).encode()),
                        st.just(json.dumps(VALID_VOCAB).encode()), st.deferred(lambda: _json_mutations(VALID_VOCAB)),
                        json_value.map(lambda v: json.dumps(v).encode()),
                        st.sampled_from(JSON_BOMBS).map(str.encode),
                        vocab_dict.map(lambda d: json.dumps(d)).flatmap(encoded), st.binary(max_size=100))


def run_vocab(data: bytes, folder: Path) -> None:
    from stackrnn.data.tokenizers import Tokenizer

    tok = Tokenizer.load(write(folder, "vocab.json", data))
    tok.decode(tok.encode("ab c\n"))


# -- pretrained word vectors ----------------------------------------------------------------------------------
vector_line = st.one_of(
    st.tuples(st.sampled_from(("the", "cat", "The", "<unk>", "", "a b")),
              st.lists(st.one_of(st.floats(allow_nan=True).map(repr), st.sampled_from(("1", "x", "", "1e999"))),
                       max_size=4)).map(lambda t: " ".join([t[0], *t[1]])),
    st.sampled_from(("2 3", "3 2", "0 0", "-1 3", "1 " + "9" * 5000)), line_text)
vectors_input = st.fixed_dictionaries({
    "content": st.lists(vector_line, max_size=6).map(lambda ls: lines_to_text(ls).encode("utf-8", "surrogatepass"))
    | st.lists(vector_line, max_size=6).map(lines_to_text).flatmap(encoded) | text_file(max_lines=4),
    "name": st.sampled_from(("vectors.txt", "vectors.txt.gz", "vectors.bin", "vectors.zip", "vectors")),
    "gzip": st.booleans(),
    "encoding": likely_encoding,
})


def run_vectors(x: dict, folder: Path) -> None:
    import gzip

    from stackrnn.data.vectors import load_vectors

    data = gzip.compress(x["content"]) if x["gzip"] else x["content"]
    load_vectors(write(folder, x["name"], data), ["<pad>", "<unk>", "the", "cat", "dog"], encoding=x["encoding"])


# -- config files ----------------------------------------------------------------------------------------------
def _field_names() -> dict[str, list[str]]:
    from stackrnn.train import sections

    names: dict[str, set[str]] = {}
    for task in ("lm", "classify", "translate"):
        for section, cls in sections(task).items():
            names.setdefault(section, set()).update(f.name for f in __import__("dataclasses").fields(cls))
    return {s: sorted(v) for s, v in names.items()}


FIELD_NAMES = _field_names()
toml_scalar = st.one_of(st.booleans(), st.integers(-3, 8), st.integers(min_value=-2**63, max_value=2**63 - 1),
                        st.floats(allow_nan=True), st.text(max_size=8),
                        st.sampled_from(("lstm", "gru", "rnn", "char", "word", "auto", "cpu", "adam", "sgd", "mean",
                                         "sum_steps", "fp16", "bf16", "plateau", "cosine", "general", "linear")),
                        st.datetimes(), st.dates(), st.times())
toml_value = st.recursive(toml_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3), max_leaves=6)


@st.composite
def toml_tables(draw) -> dict:
    tables: dict[str, Any] = {}
    if draw(st.booleans()):
        tables["task"] = draw(st.one_of(st.sampled_from(("lm", "classify", "translate", "LM", "")), toml_value))
    sections = ("model", "data", "train") * 3 + ("optim", "Model")
    for section in draw(st.lists(st.sampled_from(sections), max_size=4, unique=True)):
        names = FIELD_NAMES.get(section, ["x"])
        if section == "model" and draw(st.booleans()):  # layer tables: a list of per-layer tables
            names = [*names, "layers", "encoder_layers", "decoder_layers"]
        keys = draw(st.lists(st.one_of(st.sampled_from(names), st.text(min_size=1, max_size=6)), max_size=4, unique=True))
        value = draw(st.one_of(st.fixed_dictionaries({k: st.one_of(toml_value, _layer_tables) for k in keys}), toml_scalar))
        tables[section] = value
    return tables


_layer_tables = st.lists(st.dictionaries(st.sampled_from(("cell", "hidden_size", "dropout", "residual", "zoneout", "x")),
                                         toml_scalar, max_size=3), max_size=3)


def _dumps(tables: dict) -> bytes:
    try:
        return tomli_w.dumps(tables).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError):  # a value TOML cannot hold: write what can be written
        return repr(tables).encode("utf-8", "surrogatepass")


TOML_BOMBS = ("a = " + "[" * 5000 + "]" * 5000, "x = " + "1" * 5000, "[model]\nhidden_size = " + "9" * 5000,
              "[model]\nhidden_size = 1e999", "[[model]]\nx = 1", "model = 3", "[model.layers]\nx=1", "\ufefftask = 'lm'",
              "task = 'lm'\ntask = 'lm'", "[train]\nlr = nan", "[data]\nbatch_size = 0x10")
config_input = st.fixed_dictionaries({
    "content": st.one_of(toml_tables().map(_dumps), toml_tables().map(_dumps).flatmap(mutated_bytes),
                         st.sampled_from(TOML_BOMBS).map(str.encode), text_file(max_lines=6)),
    "task": st.sampled_from((None, None, None, "lm", "classify", "translate")),
})


def run_config(x: dict, folder: Path) -> None:
    from stackrnn.train import build_config

    build_config(str(write(folder, "config.toml", x["content"])), {}, x["task"])


# -- tiny runs and their files -----------------------------------------------------------------------------------
_RUNS: dict[str, Path | None] = {}
_RUNS_FOLDER: list[Path] = []


def tiny_run(task: str) -> Path:
    """A run of `task` trained for two steps on a tiny data file, made once per process (a few seconds); the
    language model's where `task` cannot train here (translation without sacrebleu, the translate extra)."""
    if task in _RUNS:
        return _RUNS[task] or tiny_run("lm")
    from stackrnn.train import build_config, train

    if not _RUNS_FOLDER:
        folder = Path(tempfile.mkdtemp(prefix="stackrnn-fuzz-runs-"))
        _RUNS_FOLDER.append(folder)
        import atexit

        atexit.register(shutil.rmtree, folder, True)
    folder = _RUNS_FOLDER[0]
    words = "the cat sat on a mat and the dog ran to the cat".split()
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 6))) for _ in range(60)]
    train_opts = {"max_steps": 2, "epochs": 1, "progress": False, "device": "cpu", "log_every": 1}
    if task == "lm":
        data = write(folder, "lm.txt", "\n".join(sentences))
        opts = {"model": {"hidden_size": 8, "num_layers": 1}, "data": {"data": str(data), "batch_size": 2, "num_steps": 5}}
    elif task == "classify":
        data = write(folder, "cls.csv", "text,label\n" + "\n".join(f"{s},{i % 2}" for i, s in enumerate(sentences)))
        opts = {"model": {"hidden_size": 8, "num_layers": 1, "embedding_size": 8}, "data": {"data": str(data), "batch_size": 4}}
    else:
        data = write(folder, "pairs.txt", "\n".join(f"{s}\t{s[::-1]}" for s in sentences))
        opts = {"model": {"embedding_size": 8, "encoder_hidden_size": 8, "encoder_num_layers": 1, "decoder_hidden_size": 8,
                          "decoder_num_layers": 1}, "data": {"data": str(data), "batch_size": 4, "min_freq": 1,
                                                              "valid_fraction": 0.2, "test_fraction": 0.2}}
    opts["train"] = train_opts
    out = folder / task
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            train(build_config(None, opts, task), out)
        except InputError:
            if task == "lm":
                raise
            _RUNS[task] = None
            return tiny_run("lm")
    _RUNS[task] = out
    return out


def _json_mutations(original: dict) -> st.SearchStrategy[bytes]:
    """The original JSON object with a key dropped, retyped or added, nested values included."""

    @st.composite
    def mutate(draw) -> bytes:
        data = json.loads(json.dumps(original))
        for _ in range(draw(st.integers(1, 3))):
            node = data
            while isinstance(node, (dict, list)) and node and draw(st.booleans()):
                key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
                if not isinstance(node[key], (dict, list)) or not node[key]:
                    break
                node = node[key]
            if isinstance(node, dict) and node:
                key = draw(st.sampled_from(sorted(node)))
                if draw(st.booleans()):
                    del node[key]
                else:
                    node[key] = draw(json_value)
            elif isinstance(node, list) and node:
                node[draw(st.integers(0, len(node) - 1))] = draw(json_value)
        return json.dumps(data, allow_nan=True).encode()

    return mutate()


_norms = st.lists(st.one_of(st.none(), st.floats(0, 10), json_scalar), max_size=3)
metrics_record = st.fixed_dictionaries(
    {"split": st.sampled_from(("train", "valid", "grad", "x")),
     "step": st.one_of(st.integers(-2, 50), st.integers(-2, 50), json_value)},
    optional={
              "layer_grad_norm": st.one_of(_norms, json_value), "step_grad_norm": st.one_of(st.lists(_norms, max_size=3), json_value),
              **{k: st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), json_value)
                 for k in ("loss", "perplexity", "accuracy", "bleu", "lr", "grad_norm", "epoch", "time")}})
metrics_input = st.lists(st.one_of(metrics_record.map(lambda r: json.dumps(r, allow_nan=True)), jsonl_line), max_size=6) \
    .map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")) | text_file(max_lines=4)


def run_metrics(data: bytes, folder: Path) -> None:
    """metrics.jsonl as resuming reads it (keeping the records up to the checkpoint) and as plots do."""
    from stackrnn.plot import plot_runs
    from stackrnn.run import METRICS, RunDir

    write(folder / "run", METRICS, data)
    RunDir(folder / "run").trim_metrics(10)
    if matplotlib is not None:
        with mock.patch("matplotlib.figure.Figure.savefig"):  # the drawing is not under test, the reading is
            plot_runs([folder / "run"], folder / "plots")


TENSOR_NAMES = ("hidden.0.0", "hidden.0.1", "hidden.1.0", "hidden.x.0", "hidden.0", "hidden..0", "hidden.-1.0",
                "rng.torch", "rng.cuda.0", "0.exp_avg", "0.exp_avg_sq", "0.step", "embedding.weight", "")


@st.composite
def safetensors_file(draw) -> bytes:
    """A well-formed safetensors file with random tensor names, shapes, dtypes and step metadata."""
    import torch
    from safetensors.torch import save

    tensors = {}
    for name in draw(st.lists(st.sampled_from(TENSOR_NAMES), max_size=4, unique=True)):
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        dtype = draw(st.sampled_from((torch.float32, torch.uint8, torch.int64, torch.float16)))
        tensors[name] = torch.zeros(shape, dtype=dtype)
    step = draw(st.one_of(st.none(), st.integers(-1, 3).map(str), short_text))
    return save(tensors, metadata=None if step is None else {"step": step})


RUN_FILES = ("config.toml", "vocab.json", "trainer.json", "metrics.jsonl", "model.safetensors", "last.safetensors",
             "optimizer.safetensors", "trainer.safetensors", "labels.json", "split.json", "source_vocab.json",
             "target_vocab.json")


@st.composite
def run_input(draw) -> dict:
    task = draw(st.sampled_from(("lm", "classify", "translate")))
    run = tiny_run(task)
    changes: dict[str, bytes | None] = {}
    for name in draw(st.lists(st.sampled_from(RUN_FILES), min_size=1, max_size=2, unique=True)):
        path = run / name
        original = path.read_bytes() if path.exists() else b""
        options = [st.just(None), st.binary(max_size=64), mutated_bytes(original), st.sampled_from(JSON_BOMBS).map(str.encode)]
        if name.endswith(".json") and original:
            options += [_json_mutations(json.loads(original))] * 3
        if name == "config.toml":
            options += [toml_tables().map(_dumps)]
        if name.endswith(".safetensors"):
            options += [safetensors_file()] * 2
        if name == "metrics.jsonl":
            options += [metrics_input]
        changes[name] = draw(st.one_of(options))
    return {"task": task, "changes": changes, "weights": draw(st.sampled_from(("model.safetensors", "last.safetensors")))}


def _small_enough(path: Path) -> bool:
    """Whether a changed config.toml describes a model small enough to build here (a config that does not load
    is small enough: loading it is what fails)."""
    from stackrnn.config import read_toml

    def sizes(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from sizes(v)
        elif isinstance(node, list):
            for v in node:
                yield from sizes(v)
        elif isinstance(node, int) and not isinstance(node, bool):
            yield node

    try:
        tables = read_toml(path)
    except InputError:
        return True
    return not any(n > 64 for n in sizes(tables.get("model", {})))


def run_run(x: dict, folder: Path) -> None:
    from stackrnn.checkpoint import Position, load_checkpoint
    from stackrnn.optim import Schedule, make_optimizer
    from stackrnn.run import RunDir
    from stackrnn.train import RunConfig, open_run, preflight

    path = folder / "run"
    if not run_run_files(x, path):
        raise Skip


    def resume():
        cfg = RunConfig.of_run(RunDir.open(path, need=("config.toml",)))
        task, run, _ = preflight(cfg, path, resume=True)
        model = task.build_model()
        optimizer = make_optimizer(cfg.train, model)
        pos = Position()
        load_checkpoint(run, model, optimizer, Schedule(cfg.train, optimizer, 10), pos, __import__("torch").device("cpu"))
        run.trim_metrics(pos.step)

    all_of(lambda: open_run(path, x["weights"]), resume)


# -- the command line --------------------------------------------------------------------------------------------
TASKS = ("lm", "classify", "translate")


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    nargs: Any
    choices: tuple | None
    required: bool
    type: Any


def _commands() -> dict[tuple[str, str], list[Option]]:
    """(command, task) -> the command's options as the real parser of that task defines them."""
    from stackrnn.cli import make_parser

    commands = {}
    for task in TASKS:
        parser = make_parser(task)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, p in sub.choices.items():
            commands[name, task] = [Option(tuple(a.option_strings), a.nargs, tuple(a.choices) if a.choices else None,
                                           a.required, a.type) for a in p._actions if a.option_strings]
    return commands


COMMANDS = _commands()
COMMAND_NAMES = sorted({name for name, _ in COMMANDS})
#: paths an argument may name, inside the example's folder (see run_cli): fuzzed files, runs, nothing
PATHS = ("data.txt", "long.txt", "data.csv", "data.jsonl", "pairs.txt", "config.toml", "vectors.txt", "missing.txt", "run-lm",
         "run-classify", "run-translate", "broken-run", "empty", ".", "out/new", "map.png", "data.txt/x")
#: the run each command reads best (the others are tried too)
RUN_OF = {"generate": "run-lm", "inspect": "run-lm", "probe": "run-lm", "predict": "run-classify",
          "translate": "run-translate", "plot": "run-lm", "eval": "broken-run"}
ASSIGNMENTS = ("model.num_layers=1,2", "train.epochs=1", "model.hidden_size=4", "data.data=data.txt", "x.y=1",
               "model.cell=lstm,gru", "train.lr=0.1,0.1", "data.batch_size=0", "model.dropout=nan", "train.epochs",
               "data.data=pairs.txt", "data.data=data.csv", "model.hidden_size=", "train.max_minutes=1")
flag_value = st.one_of(st.integers(-3, 12).map(str), st.sampled_from(NASTY), st.sampled_from(PATHS),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=10),
                       st.sampled_from(ASSIGNMENTS + ("lm", "classify", "translate", "best", "last", "valid", "test",
                                                      "cpu", "cuda", "mps", "auto", "true", "false", "none")))
#: plausible values, by the option's type: most get past argparse to the library's own checks
plausible = {int: st.integers(-2, 6).map(str), float: st.one_of(st.floats(-1, 2).map(repr), st.sampled_from(("0.5", "1")))}
config_value = st.one_of(st.integers(-1, 6).map(str), st.sampled_from(("0", "0.1", "0.5", "1.5", "true", "false", "none",
                                                                       "lstm", "gru", "char", "word", "data.txt",
                                                                       "data.csv", "pairs.txt", "vectors.txt")))
#: a text long enough for inspect and probe (100 tokens and more), in the tiny runs' words
LONG_TEXT = "the cat sat on a mat and the dog ran to the cat on the mat\n" * 8
long_text = st.one_of(st.just(LONG_TEXT), mutated_bytes(LONG_TEXT.encode()).map(lambda b: b.decode("utf-8", "replace")))
#: values of the options whose values are not paths, numbers or config values
SPECIAL = {"--properties": st.sampled_from(("char_class", "token_back_1", "token_back_0", "token_back_" + "9" * 12,
                                            "token_back_\u0663", "bracket_depth,char_class", " , ", "position_in_word,x",
                                            "token_back_1,token_back_1", "token_back_99999")),
           "--prefix": st.sampled_from(("the", "", "zzz", "the cat", "\x00", " ", "\n", "<unk>")),
           "--text": st.one_of(long_text, short_text), "--target": st.sampled_from(("the cat", "", "zzz", "\n")),
           "--attention": st.sampled_from(("map.png", "map.PNG", "map.jpg", "out/new/map.png", "empty", "")),
           "--out": st.sampled_from(("out/new",) * 4 + ("empty", "run-lm", "data.txt", ""))}
#: options that set an amount of work (tokens to generate, beam width): kept small, as a big one is a long run
#: rather than bad input
WORK_FLAGS = {"--length", "--beam", "--max-length", "--max-tokens", "--units", "--nested", "--examples"}
work_value = st.one_of(st.integers(-3, 12).map(str), st.sampled_from(("", "x", "1.5", "nan", "-0", "0x3", " 2", "1e3", "100", "300")))


@st.composite
def _value(draw, option: Option, command: str) -> str:
    flag = option.flags[-1]
    if flag in ("--max-tokens", "--nested") and draw(st.integers(0, 3)):
        return draw(st.sampled_from(("100", "300", "2000", "99", "0")))  # probes need 100 tokens
    if flag in WORK_FLAGS:
        return draw(work_value)
    if flag in SPECIAL and draw(st.integers(0, 4)):
        return draw(SPECIAL[flag])
    if draw(st.integers(0, 4)) == 0:
        return draw(flag_value)
    if option.choices:
        return draw(st.sampled_from(option.choices))
    if option.type in plausible:
        return draw(plausible[option.type])
    if flag in ("--grid", "--set"):
        return draw(st.sampled_from(ASSIGNMENTS))
    if flag in ("--data", "--file", "--text-file", "--config", "--valid-data", "--test-data", "--pretrained-vectors"):
        return draw(st.sampled_from(PATHS))
    if flag in ("--resume",):
        return draw(st.sampled_from(("run-lm", "run-classify", "run-translate", "broken-run", "empty", "missing")))
    return draw(config_value)


@st.composite
def cli_input(draw) -> dict:
    command = draw(st.sampled_from(COMMAND_NAMES * 6 + ["", "--version", "bogus", "--help"]))
    task = draw(st.sampled_from(TASKS))
    argv = [command] if command else []
    if command in ("train", "summary", "sweep") and draw(st.booleans()):
        argv += ["--task", task]
    else:
        task = "lm"  # (unless the config file says otherwise: its options are then partly unknown)
    options = COMMANDS.get((command, task), [])
    right = st.just(RUN_OF.get(command, "run-lm"))
    run = st.one_of(right, right, right, right, st.just("broken-run"), st.sampled_from(PATHS), short_text)
    if command in RUN_OF:
        argv += [draw(run) for _ in range(draw(st.sampled_from((1, 1, 1, 0, 2) if command == "plot" else (1, 1, 1, 1, 0))))]
    if command in ("translate", "predict"):
        argv += draw(st.lists(st.one_of(st.just("the cat sat"), short_text), min_size=draw(st.sampled_from((0, 1, 1))),
                              max_size=3))
    if command == "sweep" and draw(st.booleans()):
        argv.append(draw(st.sampled_from(PATHS)))
    if command in ("inspect", "probe") and draw(st.integers(0, 4)):
        if draw(st.booleans()):
            argv += ["--text", draw(long_text)]
        else:
            argv += ["--text-file", draw(st.sampled_from(("long.txt",) * 4 + PATHS))]
    required = [o for o in options if o.required]
    chosen = [o for o in required if draw(st.integers(0, 9))] + draw(st.lists(st.sampled_from(options), max_size=5)) \
        if options else []
    for option in chosen:
        flag = draw(st.sampled_from(option.flags))
        if flag in ("-h", "--help") and draw(st.integers(0, 9)):
            continue  # help now and then: it prints a page and exits 0
        if option.nargs == 0:
            argv.append(flag)
            continue
        value = draw(_value(option, command))
        how = draw(st.integers(0, 15))
        if how == 0:
            argv.append(f"{flag}={value}")
        elif how == 1:
            argv.append(flag)  # the value left out
        else:
            argv += [flag, value]
    if draw(st.integers(0, 9)) == 0:
        argv.insert(draw(st.integers(0, len(argv))), draw(short_text))
    labelled = draw(labelled_input())["content"]
    files = {
        "data.txt": draw(text_file(max_lines=8)),
        "long.txt": draw(long_text).encode("utf-8", "surrogatepass"),
        "data.csv": labelled,
        "data.jsonl": labelled,
        "pairs.txt": draw(parallel_input)["content"],
        "config.toml": draw(config_input)["content"],
        "vectors.txt": draw(vectors_input)["content"],
    }
    return {"argv": argv, "files": files, "broken": draw(st.one_of(st.none(), run_input()))}


def _no_training(cfg, out, *, resume=False, progress=None):
    """Stand-in for train.train: the input checks of a real run (device, data, monitored figure), no training.
    The data is read only where it is a local file of the example's (a named dataset would be a download)."""
    from stackrnn.train import TrainResult

    _fake_preflight(cfg, out, resume=resume)
    import torch

    return TrainResult(run=Path(out), step=0, epoch=0, train_loss=None, valid_loss=None, best_valid_loss=None,
                       stopped="finished", seconds=0.0, model=torch.nn.Linear(1, 1))


def _fake_preflight(cfg, out, *, resume, world_size=1, writer=True):
    """Stand-in for train.preflight: the real one where the data is a local file and the model small, else the
    checks that need no data."""
    from stackrnn.train import choose_device

    data = getattr(cfg.data, "data", None)
    if getattr(cfg.data, "dataset", None) is None and data is not None and Path(data).exists():
        model_sizes = [v for v in vars(cfg.model).values() if isinstance(v, int) and not isinstance(v, bool)]
        if all(v <= 64 for v in model_sizes) and not getattr(cfg.model, "pretrained_vectors", None):
            return real_preflight(cfg, out, resume=resume, world_size=world_size, writer=writer)
    choose_device(cfg.train.device)
    cfg.make_task().monitored(cfg.train.monitor)


def run_cli(x: dict, folder: Path) -> None:
    """cli.main on the argv, in `folder` (which holds the fuzzed files and copies of the tiny runs), with training,
    summaries' model building, process launching and plotting replaced by stand-ins."""
    from stackrnn.cli import main

    for name, data in x["files"].items():
        write(folder, name, data)
    (folder / "empty").mkdir()
    for task in ("lm", "classify", "translate"):
        shutil.copytree(tiny_run(task), folder / f"run-{task}")
    if x["broken"] is not None:
        run_run_files(x["broken"], folder / "broken-run")  # (not made where its model would be too big)

    def summary_model(self, vocab_size):
        return None, (), {}

    stderr, stdout = io.StringIO(), io.StringIO()
    patches = [mock.patch("stackrnn.train.train", _no_training), mock.patch("stackrnn.train.preflight", _fake_preflight),
               mock.patch("stackrnn.distributed.launch", lambda *a, **k: 0),
               mock.patch("stackrnn.summary.summary", lambda *a, **k: "summary"),
               mock.patch("stackrnn.sweep.plot_sweep", lambda *a, **k: [])]
    if matplotlib is not None:
        patches.append(mock.patch("matplotlib.figure.Figure.savefig"))
    from stackrnn.tasks import task_class

    for task in ("lm", "classify", "translate"):
        patches.append(mock.patch.object(task_class(task), "summary_model", summary_model))
    showwarning = warnings.showwarning
    cwd = os.getcwd()
    try:
        os.chdir(folder)
        with contextlib.ExitStack() as stack:
            for p in patches:
                stack.enter_context(p)
            stack.enter_context(contextlib.redirect_stderr(stderr))
            stack.enter_context(contextlib.redirect_stdout(stdout))
            try:
                code = main(x["argv"])
            except SystemExit as e:
                code = e.code
    finally:
        os.chdir(cwd)
        warnings.showwarning = showwarning
    # (lines end at "\n" only: a file name may hold the other line breaks str.splitlines knows, such as U+0085)
    errors = [line for line in stderr.getvalue().split("\n") if line and ": warning: " not in line]
    if code == 0:
        return
    if code != 2 or "Traceback" in stderr.getvalue() or len(errors) != 1 or ": error: " not in errors[0]:
        raise AssertionError(f"stackrnn {' '.join(x['argv'])!r}: exit status {code!r}, stderr {stderr.getvalue()[-2000:]!r}")
    raise InputError(errors[0])


def run_run_files(x: dict, path: Path) -> bool:
    """A copy of a tiny run at `path` with the files of `x` changed; False (and no copy) where its changed config
    describes a model too big to build in a fuzz case."""
    shutil.copytree(tiny_run(x["task"]), path)
    for name, data in x["changes"].items():
        (path / name).unlink(missing_ok=True)
        if data is not None:
            (path / name).write_bytes(data)
    if _small_enough(path / "config.toml"):
        return True
    shutil.rmtree(path)
    return False


TARGETS = {t.name: t for t in (
    Target("corpus", corpus_input(), run_corpus, 2),
    Target("labelled", labelled_input(), run_labelled, 3),
    Target("parallel", parallel_input, run_parallel, 2),
    Target("series", series_input(), run_series, 2),
    Target("vocab", vocab_input, run_vocab, 1),
    Target("vectors", vectors_input, run_vectors, 1),
    Target("config", config_input, run_config, 2),
    Target("run", run_input(), run_run, 1),
    Target("metrics", metrics_input, run_metrics, 1),
    Target("cli", cli_input(), run_cli, 3),
)}
