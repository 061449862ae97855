"""Data: tokenizers; for language modelling, corpora (embedded, downloaded, local) and TBPTT/random batches; for
classification, labelled texts (local files and named datasets) and length-bucketed padded batches; for
forecasting, time series from CSV files (wide as M4's, long, single) with their timestamps and calendar features."""

from stackrnn.data.batching import (
    RandomBatches,
    SequentialBatches,
    batchify,
    unigram_perplexity,
    window_lengths,
)
from stackrnn.data.buckets import BucketBatches, LabelledBatch
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
from stackrnn.data.labelled import CLASSIFY_DATASETS, FORMATS, Examples, load_dataset, read_labelled, read_lines
from stackrnn.data.series import SERIES_FORMATS, SeriesSet, read_series, read_wide_test
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
    "Examples",
    "FORMATS",
    "CLASSIFY_DATASETS",
    "read_labelled",
    "read_lines",
    "load_dataset",
    "BucketBatches",
    "LabelledBatch",
    "SERIES_FORMATS",
    "SeriesSet",
    "read_series",
    "read_wide_test",
]
