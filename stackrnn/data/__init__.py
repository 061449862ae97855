"""Data: tokenizers; for language modelling, corpora (embedded, downloaded, local) and TBPTT/random batches; for
classification, labelled texts (local files and named datasets) and length-bucketed padded batches; for
forecasting, time series from CSV files (wide as M4's, long, single) with their timestamps and calendar features.

The names below are imported on first use, not with the package: the tokenizers (no torch) serve stackrnn.runtime,
which must not import torch."""

from importlib import import_module

#: each public name and the module of this package that defines it
_PUBLIC = {
    **dict.fromkeys(("RandomBatches", "SequentialBatches", "batchify", "unigram_perplexity", "window_lengths"),
                    "batching"),
    **dict.fromkeys(("BucketBatches", "LabelledBatch"), "buckets"),
    **dict.fromkeys(("DATASETS", "Corpus", "Dataset", "RemoteFile", "cache_dir", "embedded_text", "fetch",
                     "load_corpus", "preprocess_d2l"), "corpora"),
    **dict.fromkeys(("CLASSIFY_DATASETS", "FORMATS", "Examples", "load_dataset", "read_labelled", "read_lines"),
                    "labelled"),
    **dict.fromkeys(("SERIES_FORMATS", "SeriesSet", "read_series", "read_wide_test"), "series"),
    **dict.fromkeys(("Tokenizer",), "tokenizers"),
}

__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
