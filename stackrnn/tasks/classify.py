"""Text classification as a task of the training loop: labelled texts -> word ids -> length-bucketed padded
batches (lengths passed to the stack, so padding never changes a prediction) -> SequenceClassifier, scored by
accuracy; plus the evaluation and prediction that `stackrnn eval` and `stackrnn predict` run.

Dimension key: T longest text in a batch (tokens), B batch, C classes, V vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import check_source, option
from ..data.batching import epoch_seed
from ..data.buckets import BucketBatches, LabelledBatch
from ..data.pipeline import absolute
from ..data.labelled import CLASSIFY_DATASETS, FORMATS, Examples, load_dataset, read_labelled
from ..data.tokenizers import Tokenizer
from ..data.vectors import coverage_line, load_vectors, vocabulary_words
from ..errors import InputError
from ..evaluate import classification_metrics
from ..models.classifier import ClassifierConfig, SequenceClassifier
from ..run import VOCAB, RunDir
from .base import Batches, Step, Task

LABELS = "labels.json"
SPLITS = ("train", "valid", "test")
#: how a file's name says which split it holds: stsa.binary.train, train.csv, imdb_dev.jsonl, ...
_SPLIT_WORDS = {"train": "train", "training": "train", "dev": "valid", "val": "valid", "valid": "valid",
                "validation": "valid", "test": "test"}


@dataclass
class ClassifyDataConfig:
    """[data] of a classification run: where the labelled texts are, how they are read, cut into words and batched."""

    dataset: str | None = option(None, f"named dataset, downloaded once into the cache: {', '.join(CLASSIFY_DATASETS)}")
    data: str | None = option(None, "training data: a labelled file (SST's '<label> <sentence>' lines, CSV, TSV or JSONL), "
                              "a folder with one subfolder per class, or a folder holding train/dev/test files or "
                              "train/ and test/ folders")
    valid_data: str | None = option(None, "validation file; default: the data folder's dev file, else valid_fraction of the training data")
    test_data: str | None = option(None, "test file; default: the data folder's test file, if any")
    format: str = option("auto", "file format; auto: a folder is 'folder', .csv/.tsv/.jsonl by suffix, else 'sst'", choices=FORMATS)
    text_column: str = option("text", "CSV/TSV column or JSONL key holding the text")
    label_column: str = option("label", "CSV/TSV column or JSONL key holding the label")
    classes: list | None = option(None, "folder format: the class subfolders to read (aclImdb: ['neg', 'pos']); default: all", cli=False)
    encoding: str = option("utf-8", "text encoding of the data files")
    lower: bool = option(True, "lower-case the texts before cutting them into words")
    min_freq: int = option(1, "drop words seen fewer times than this in the training texts (they become <unk>)",
                           within="[1, inf)")
    max_vocab: int | None = option(None, "largest vocabulary, <pad> and <unk> included", within="[3, inf)")
    max_length: int | None = option(None, "keep at most this many words of each text (the start); default: all",
                                    within="[1, inf)")
    valid_fraction: float = option(0.1, "without a validation file: this fraction of the training texts, drawn once with a fixed seed",
                                   within="(0, 1)")
    batch_size: int = option(32, "texts per training batch", within="[1, inf)")
    eval_batch_size: int = option(256, "texts per batch when evaluating and predicting", within="[1, inf)")

    def validate(self) -> None:
        check_source(self, CLASSIFY_DATASETS)
        if self.dataset is not None and (self.valid_data is not None or self.test_data is not None):
            raise InputError("data.valid_data and data.test_data go with data (local files); a named dataset brings "
                             "its own splits: pass all three as files instead")
        if self.classes is not None and not all(isinstance(c, str) for c in self.classes):
            raise InputError(f"data.classes: expected a list of folder names, got {self.classes!r}")


@dataclass
class Encoded:
    """A split as the model sees it: word ids per text, class ids, and the texts themselves."""

    ids: list[list[int]]
    labels: list[int]
    examples: Examples


class ClassifyTask(Task):
    sections = {"model": ClassifierConfig, "data": ClassifyDataConfig}
    unit = "examples"
    files = (VOCAB, LABELS)

    # -- data -------------------------------------------------------------------------------------------------
    def _read(self, path: str, classes: list[str] | None = None) -> Examples:
        d = self.cfg.data
        return read_labelled(path, format=d.format, text_column=d.text_column, label_column=d.label_column,
                             encoding=d.encoding, classes=d.classes or classes)

    def read_splits(self) -> dict[str, Examples | None]:
        """The labelled texts of every split the config names (valid and test may be None)."""
        d = self.cfg.data
        if d.dataset is not None:
            splits = load_dataset(d.dataset)
            return {s: splits.get(s) for s in SPLITS}
        if d.data is None:
            raise InputError("classification needs labelled data: pass --data FILE (or a folder) or --dataset "
                             f"{'|'.join(CLASSIFY_DATASETS)}")
        paths = {"train": d.data, "valid": d.valid_data, "test": d.test_data}
        folder, classes = Path(d.data), None
        if folder.is_dir():
            found = _split_paths(folder)
            if found:
                paths = {s: paths[s] if s != "train" and paths[s] else found.get(s) for s in SPLITS}
                if paths["train"] is None:
                    raise InputError(f"{folder} holds {', '.join(sorted(found))} data but no training file: pass the training file with --data")
                if found["train"].is_dir() and found.get("test") is not None and found["test"].is_dir():
                    # aclImdb's layout: train/ also holds unsup/, unlabelled reviews, so the classes are the
                    # class folders of the labelled test split
                    classes = sorted(p.name for p in found["test"].iterdir() if p.is_dir() and not p.name.startswith("."))
        return {s: None if p is None else self._read(str(p), classes) for s, p in paths.items()}

    def prepare(self, run: RunDir | None) -> None:
        d = self.cfg.data
        if run is None:
            for name in ("data", "valid_data", "test_data"):  # a run must find its data from any directory
                if getattr(d, name) is not None:
                    setattr(d, name, absolute(getattr(d, name)))
        tc = self.cfg.train
        if tc.loss != "mean" or tc.sample_prefix:
            raise InputError("train.loss = 'sum_steps' and train.sample_prefix are for language models: leave them out "
                             "of a classification run")
        splits = self.read_splits()
        train, valid = splits["train"], splits["valid"]
        if run is None:
            self.labels = sorted(set(train.labels), key=_label_order)
            if len(self.labels) < 2:
                raise InputError(f"{train.source}: every training example has the label {self.labels[0]!r}: a classifier "
                                 "needs at least two classes (check --label-column)")
        if valid is None:
            train, valid = _hold_out(train, d.valid_fraction)
        if run is None:
            self.tokenizer = Tokenizer.fit(train.texts, level="text", lower=d.lower, min_freq=d.min_freq, max_size=d.max_vocab)
        else:
            self.load_vocab(run)
        self.train_set = self.encode(train)
        self.valid_set = self.encode(valid)
        self.test_examples = splits["test"]

    def encode(self, examples: Examples) -> Encoded:
        """Word ids (cut to max_length; a text with no known word keeps one <unk>) and class ids; a label the
        run was not trained on is an error naming it."""
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted(set(examples.labels) - set(index), key=_label_order)
        if unknown:
            raise InputError(f"{examples.source}: label {unknown[0]!r} was not among the training labels "
                             f"({', '.join(map(repr, self.labels))}): fix the labels or retrain with this data")
        return Encoded([self.encode_text(t) for t in examples.texts], [index[y] for y in examples.labels], examples)

    def encode_text(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text)[: self.cfg.data.max_length]
        return ids or [self.tokenizer.unk_id]  # punctuation-free emptiness: still one step for the stack to read

    def save_vocab(self, run: RunDir) -> None:
        run.save_tokenizer(self.tokenizer)
        run.save_json(LABELS, {"labels": self.labels})

    def load_vocab(self, run: RunDir) -> None:
        self.tokenizer = run.load_tokenizer()
        if self.tokenizer.pad_id is None:  # what short texts of a batch are padded with
            raise InputError(f"{run / VOCAB} lacks <pad>, which a classifier's vocabulary holds: restore it or retrain")
        labels = run.load_json(LABELS).get("labels")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise InputError(f"{run / LABELS} is corrupted (expected at least two label names): restore it or retrain")
        self.labels = labels

    # -- model ------------------------------------------------------------------------------------------------
    def build_model(self) -> SequenceClassifier:
        return SequenceClassifier.from_config(self.cfg.model, len(self.tokenizer), len(self.labels),
                                              pad_id=self.tokenizer.pad_id)

    def init_weights(self, model: SequenceClassifier) -> None:
        self.coverage = None
        path = self.cfg.model.pretrained_vectors
        if path:
            matrix, found, dim = load_vectors(path, self.tokenizer.itos, encoding=self.cfg.model.vectors_encoding)
            model.set_pretrained(matrix, freeze=self.cfg.model.freeze_embeddings, source=path)
            self.coverage = coverage_line(found, vocabulary_words(self.tokenizer.itos))

    def summary_model(self, vocab_size: int | None) -> tuple[nn.Module, tuple[int, ...], dict]:
        if vocab_size is None:
            self.prepare(None)
            vocab_size, classes = len(self.tokenizer), len(self.labels)
        else:
            classes = 2
        return (SequenceClassifier.from_config(self.cfg.model, vocab_size, classes, pad_id=0), *self.summary_input())

    def summary_input(self) -> tuple[tuple[int, ...], dict]:
        shape = (self.cfg.data.max_length or 50, self.cfg.data.batch_size)  # (T, B)
        return shape, {"dtype": torch.long, "lengths": torch.full((shape[1],), shape[0])}

    def describe(self) -> str:
        parts = [f"{len(self.train_set.ids):,} training and {len(self.valid_set.ids):,} validation texts",
                 f"{len(self.labels)} classes", f"{len(self.tokenizer):,} words in the vocabulary"]
        if getattr(self, "coverage", None):
            parts.append(self.coverage)
        return ", ".join(parts)

    # -- training ---------------------------------------------------------------------------------------------
    def batches(self, epoch: int) -> Batches:
        # the order of an epoch is a function of (seed, epoch) only, so a resumed epoch replays exactly
        return BucketBatches(self.train_set.ids, self.train_set.labels, self.cfg.data.batch_size, shuffle=True,
                             seed=epoch_seed(self.cfg.train.seed, epoch), pad_id=self.tokenizer.pad_id)

    def shard(self, batch: Any, world) -> Any:
        part = LabelledBatch(*(t[..., world.rank::world.size] for t in batch))
        if part.index.numel() == 0:
            # a last batch smaller than the world: this process still runs a step (DDP needs every process in
            # each backward), on one example that counts for nothing (its index list is empty)
            return LabelledBatch(batch.x[:, :1], batch.lengths[:1], batch.y[:1], batch.index[:0])
        return part

    def step(self, model: SequenceClassifier, batch: Any, state: Any, device: torch.device) -> Step:
        _, loss = model(batch.x.to(device), batch.lengths, batch.y.to(device))
        return Step(loss, loss, int(batch.index.numel()))

    @torch.no_grad()
    def _scores(self, model: SequenceClassifier, ids: list[list[int]], labels: list[int] | None,
                device: torch.device | str = "cpu") -> tuple[torch.Tensor, float | None]:
        """(N, C) class probabilities in input order, and the mean loss when labels are given."""
        was_training = model.training
        model.eval()
        probs = torch.zeros(len(ids), len(self.labels))
        total = 0.0
        batches = BucketBatches(ids, labels or [0] * len(ids), self.cfg.data.eval_batch_size, shuffle=False,
                                pad_id=self.tokenizer.pad_id)
        for b in batches:
            logits, loss = model(b.x.to(device), b.lengths, b.y.to(device) if labels is not None else None)
            probs[b.index] = model.probabilities(logits).float().cpu()
            if loss is not None:
                total += loss.item() * b.y.numel()
        model.train(was_training)
        return probs, (total / len(ids) if labels is not None else None)

    # validation loss bottoms out epochs before accuracy peaks (the model grows confident on the texts it gets
    # wrong), so the best weights by loss are often not the most accurate: pick by accuracy, as Keras users do
    monitors = ("accuracy", "loss")
    valid_figures = " accuracy {accuracy:.4f}"

    def evaluate(self, model: SequenceClassifier, device: torch.device) -> dict | None:
        probs, loss = self._scores(model, self.valid_set.ids, self.valid_set.labels, device)
        accuracy = (probs.argmax(1) == torch.tensor(self.valid_set.labels)).double().mean().item()
        return {"loss": loss, "accuracy": accuracy}

    def closing_items(self) -> tuple[float, float]:
        return len(self.valid_set.ids) / 3, 0.0  # a forward pass over the validation texts (finish shows nothing)

    # -- after training ---------------------------------------------------------------------------------------
    def evaluate_split(self, model: SequenceClassifier, split: str, data_path: str | None = None,
                       device: torch.device | str = "cpu") -> dict:
        """Every figure of `stackrnn eval` on the run's `split` ("valid" or "test"), or on the labelled file
        `data_path`."""
        if data_path is not None:
            examples, split = self._read(data_path), str(data_path)
        else:
            splits = self.read_splits()
            examples = splits[split]
            if split == "valid" and examples is None:
                examples = _hold_out(splits["train"], self.cfg.data.valid_fraction)[1]
            if examples is None:
                raise InputError(f"the run's data has no {split} split: score a labelled file with --data FILE")
        encoded = self.encode(examples)
        probs, loss = self._scores(model, encoded.ids, encoded.labels, device)
        metrics = classification_metrics(probs.argmax(1), torch.tensor(encoded.labels), self.labels)
        return {"split": split, "loss": loss, **metrics}

    def predict(self, model: SequenceClassifier, texts: list[str], device: torch.device | str = "cpu") -> list[dict]:
        """For each text: its most probable label and the probability of every label."""
        for i, text in enumerate(texts):
            if not text.strip():
                raise InputError(f"text {i + 1} is empty: give some words to classify")
        probs, _ = self._scores(model, [self.encode_text(t) for t in texts], None, device)
        return [{"text": t, "label": self.labels[int(p.argmax())],
                 "probabilities": {label: round(float(q), 6) for label, q in zip(self.labels, p)}}
                for t, p in zip(texts, probs)]


def _label_order(label: str):
    """Numeric labels in numeric order (SST's 0..4), others alphabetically."""
    return (0, int(label), "") if re.fullmatch(r"-?\d+", label) else (1, 0, label)


def _hold_out(train: Examples, fraction: float) -> tuple[Examples, Examples]:
    """Split off `fraction` of the training texts of every class for validation (stratified, and never a class's
    last example), drawn with a fixed seed: the same on every machine and every resume, whatever the run's seed."""
    n = len(train.texts)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1234)).tolist()
    by_class: dict[str, list[int]] = {}
    for i in order:
        by_class.setdefault(train.labels[i], []).append(i)
    held = [i for members in by_class.values() for i in members[: min(round(len(members) * fraction), len(members) - 1)]]
    if not held:
        raise InputError(f"{train.source}: {n} examples are too few to hold out {fraction:g} of them for validation: "
                         "give more data, a larger --valid-fraction, or a validation file with --valid-data")
    kept = sorted(set(range(n)) - set(held))
    pick = lambda idx, tag: Examples([train.texts[i] for i in idx], [train.labels[i] for i in idx], f"{train.source} ({tag})")  # noqa: E731
    return pick(kept, "training part"), pick(sorted(held), f"{fraction:g} held out for validation")


def _split_paths(folder: Path) -> dict[str, Path]:
    """The split files or folders in a data folder: names like stsa.binary.train, train.csv, dev.tsv, or the
    train/ and test/ folders of aclImdb. Empty when the folder is itself one split (a folder per class)."""
    found: dict[str, list[Path]] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        words = set(re.split(r"[._\-]", p.name.lower()))
        splits = {_SPLIT_WORDS[w] for w in words if w in _SPLIT_WORDS}
        if len(splits) == 1:
            found.setdefault(splits.pop(), []).append(p)
    for split, paths in found.items():
        if len(paths) > 1:
            raise InputError(f"{folder} holds several {split} files ({', '.join(p.name for p in paths)}): pass the "
                             "files with --data, --valid-data and --test-data")
    return {s: paths[0] for s, paths in found.items()}
