"""Data for language modelling: tokenizers, corpora (embedded, downloaded, local) and TBPTT/random batches."""

from stackrnn.data.batching import (
    RandomBatches,
    SequentialBatches,
    batchify,
    unigram_perplexity,
    window_lengths,
)
from stackrnn.data.corpora import (
    DATASETS,
    Corpus,
    Dataset,
    RemoteFile,
    cache_dir,
    embedded_text,
    fetch,
    load_corpus,
    preprocess_d2l,
)
from stackrnn.data.tokenizers import Tokenizer

__all__ = [
    "Tokenizer",
    "Corpus",
    "Dataset",
    "RemoteFile",
    "DATASETS",
    "cache_dir",
    "embedded_text",
    "fetch",
    "load_corpus",
    "preprocess_d2l",
    "batchify",
    "SequentialBatches",
    "RandomBatches",
    "window_lengths",
    "unigram_perplexity",
]
