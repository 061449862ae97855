"""From a [data] config to token streams and batches for a language model.

Dimension key: N tokens, T window length (num_steps), B batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import check_source, option
from ..errors import InputError
from .batching import RandomBatches, SequentialBatches, epoch_seed
from .corpora import DATASETS, Corpus, load_corpus
from .tokenizers import Tokenizer


@dataclass
class DataConfig:
    """[data]: the corpus, its tokens, and how training windows are cut from it."""

    dataset: str | None = option(None, f"named corpus: {', '.join(DATASETS)} (default: embedded, needs no network)")
    data: str | None = option(None, "a local text file (or a folder with ptb.train/valid/test.txt) instead of --dataset")
    encoding: str = option("utf-8", "text encoding of the --data file or folder")
    level: str | None = option(None, "tokens: char or word (default: the dataset's usual level, else char)", choices=("char", "word"))
    d2l_preprocess: bool = option(False, "d2l's preprocessing: letters and spaces only, lower case")
    min_freq: int = option(1, "drop tokens seen fewer times than this in training text (they become <unk>)",
                           within="[1, inf)")
    max_vocab: int | None = option(None, "largest vocabulary, reserved tokens included", within="[1, inf)")
    valid_fraction: float = option(0.1, "fraction of the text, from its tail, held out for validation")
    test_fraction: float = option(0.0, "fraction of the text, at its very end, held out for testing")
    train_chars: int | None = option(None, "train on the first N characters only and validate on the next valid_chars (d2l: 10000)",
                                     within="[1, inf)")
    valid_chars: int | None = option(None, "with train_chars: characters right after the training text held out for validation",
                                     within="[1, inf)")
    batch_size: int = option(32, "sequences per batch", within="[1, inf)")
    num_steps: int = option(35, "steps per training window (the truncated-BPTT length)", within="[1, inf)")
    sampling: str = option("sequential", "sequential: windows continue each other and the state is carried (TBPTT); "
                           "random: d2l's random windows, state reset each batch", choices=("sequential", "random"))
    variable_bptt: bool = option(False, "AWD-LSTM's variable window length (sequential sampling)")
    eval_batch_size: int = option(10, "sequences per batch when evaluating", within="[1, inf)")

    def validate(self) -> None:
        check_source(self)
        if (self.train_chars is None) != (self.valid_chars is None):
            raise InputError("data.train_chars and data.valid_chars: give both or neither")
        if self.variable_bptt and self.sampling != "sequential":
            raise InputError("data.variable_bptt: only works with sampling = 'sequential'")

    def resolved_level(self) -> str:
        if self.level is not None:
            return self.level
        return DATASETS[self.dataset].level if self.dataset in DATASETS else "char"


@dataclass
class LMData:
    """A tokenized corpus: the tokenizer and the (N,) id streams of each split (test may be None)."""

    tokenizer: Tokenizer
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor | None
    name: str


def load_text(cfg: DataConfig) -> Corpus:
    """Read the corpus of `cfg` and split it."""
    if cfg.train_chars is not None:
        corpus = load_corpus(cfg.dataset, cfg.data, d2l=cfg.d2l_preprocess, valid_fraction=0.0, encoding=cfg.encoding)
        text = corpus.train
        end = cfg.train_chars + cfg.valid_chars
        if len(text) < end:
            raise InputError(f"data.train_chars + data.valid_chars = {end} but the corpus has {len(text)} characters: use smaller numbers")
        return Corpus(corpus.name, text[: cfg.train_chars], text[cfg.train_chars : end], None)
    return load_corpus(cfg.dataset, cfg.data, d2l=cfg.d2l_preprocess, valid_fraction=cfg.valid_fraction,
                       test_fraction=cfg.test_fraction, encoding=cfg.encoding)


def prepare(cfg: DataConfig, tokenizer: Tokenizer | None = None) -> LMData:
    """Load, split and tokenize. The vocabulary is fit on the training text, unless `tokenizer` (a run's) is given."""
    corpus = load_text(cfg)
    if tokenizer is None:
        tokenizer = Tokenizer.fit(corpus.train, level=cfg.resolved_level(), min_freq=cfg.min_freq, max_size=cfg.max_vocab)
    ids = lambda text: torch.tensor(tokenizer.encode(text), dtype=torch.long)  # (N,)
    test = ids(corpus.test) if corpus.test else None
    return LMData(tokenizer, ids(corpus.train), ids(corpus.valid), test, corpus.name)


def train_batches(cfg: DataConfig, ids: torch.Tensor, epoch: int, seed: int) -> SequentialBatches | RandomBatches:
    """The training windows of one epoch. Both the random offset and the order are functions of (seed, epoch),
    so an epoch can be replayed exactly when resuming."""
    seed_of_epoch = epoch_seed(seed, epoch)
    if cfg.sampling == "random":
        return RandomBatches(ids, cfg.batch_size, cfg.num_steps, seed=seed_of_epoch)
    # d2l starts each epoch at a random offset so windows do not always begin at the same tokens
    offset = int(torch.randint(cfg.num_steps, (), generator=torch.Generator().manual_seed(seed_of_epoch)))
    offset = min(offset, max(0, ids.numel() - 2 * cfg.batch_size))
    return SequentialBatches(ids, cfg.batch_size, cfg.num_steps, offset=offset, variable_bptt=cfg.variable_bptt, seed=seed_of_epoch)


def eval_batches(cfg: DataConfig, ids: torch.Tensor) -> SequentialBatches:
    """Windows over a whole split for evaluation: sequential, so the state is carried and every token is scored once."""
    batch = max(1, min(cfg.eval_batch_size, ids.numel() // 2))
    return SequentialBatches(ids, batch, cfg.num_steps)


def absolute(path: str) -> str:
    """A local path made absolute (and ~ expanded), so a run can find its data from any directory."""
    return str(Path(path).expanduser().resolve())


def absolute_data_path(cfg: DataConfig) -> DataConfig:
    """The config with its local data path made absolute."""
    if cfg.data is not None:
        cfg.data = absolute(cfg.data)
    return cfg
