"""Translation as a task of the training loop: tab-separated parallel text -> prepared sentences (d2l's
normalisation) -> source and target word vocabularies -> source-length-bucketed batches -> Seq2Seq, trained
teacher-forced and scored by greedy BLEU on the validation split; plus the evaluation, translation and attention
maps that `stackrnn eval` and `stackrnn translate` run.

The train/valid/test split is a function of each pair's source sentence (see data/parallel.py), and the run
records it in split.json: the data file's checksum and the line numbers of the held-out pairs. Resume and eval
take the split from there, so a run's test set never changes under it; a data file that changed since is an
error, not a silent new split.

Dimension key: S source steps, T target steps, B batch.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import check_source, option
from ..data.batching import epoch_seed
from ..data.buckets import PairBatch, PairBatches
from ..data.parallel import (BOS, TRANSLATE_DATASETS, ParallelText, dataset_path, prepare_sentence, read_parallel,
                             split_indices, words)
from ..data.pipeline import absolute
from ..data.tokenizers import EOS, PAD, UNK, Tokenizer
from ..decode import beam_search, check_search, greedy_search
from ..errors import InputError
from ..evaluate import check_bleu_available, translation_metrics
from ..models.seq2seq import Seq2Seq, Seq2SeqConfig
from ..run import RunDir
from .base import Batches, Step, Task

SOURCE_VOCAB, TARGET_VOCAB, SPLIT = "source_vocab.json", "target_vocab.json", "split.json"
SPLITS = ("train", "valid", "test")


@dataclass
class TranslateDataConfig:
    """[data] of a translation run: the parallel text, how sentences are prepared, split and batched."""

    dataset: str | None = option(None, f"named dataset, downloaded once into the cache: {', '.join(TRANSLATE_DATASETS)}")
    data: str | None = option(None, "parallel text: one pair per line, source<TAB>target (further columns ignored), "
                              "such as the Tatoeba/Anki fra.txt")
    reverse: bool = option(False, "translate the second column into the first")
    encoding: str = option("utf-8", "text encoding of the data file")
    normalize: bool = option(True, "d2l's normalisation: U+202F and U+00A0 to spaces, a space before , . ! ?")
    lower: bool = option(True, "lower-case both sides")
    max_length: int | None = option(None, "skip pairs with a side longer than this many words (counted in a warning)",
                                    within="[1, inf)")
    max_pairs: int | None = option(None, "use only the first N pairs of the file (after skipping), for quick experiments",
                                   within="[3, inf)")
    min_freq: int = option(2, "words seen fewer times in the training pairs become <unk> (each side on its own)",
                           within="[1, inf)")
    max_vocab: int | None = option(None, "largest vocabulary of each side, reserved tokens included", within="[5, inf)")
    valid_fraction: float = option(0.05, "share of source sentences held out for validation", within="[0, 1)")
    test_fraction: float = option(0.05, "share of source sentences held out for testing", within="[0, 1)")
    batch_size: int = option(64, "pairs per training batch", within="[1, inf)")
    eval_batch_size: int = option(256, "pairs per batch when evaluating and translating", within="[1, inf)")

    def validate(self) -> None:
        check_source(self, TRANSLATE_DATASETS)
        if self.valid_fraction == 0:
            raise InputError("data.valid_fraction: translation runs pick their best weights on validation pairs; "
                             "give a fraction > 0")


@dataclass
class Encoded:
    """A split as the model sees it: source and target ids per pair, and the prepared sentences."""

    source: list[list[int]]
    target: list[list[int]]
    source_text: list[str]
    target_text: list[str]


class TranslateTask(Task):
    sections = {"model": Seq2SeqConfig, "data": TranslateDataConfig}
    unit = "tokens"  # target tokens, <eos> included
    files = (SOURCE_VOCAB, TARGET_VOCAB, SPLIT)

    # -- data -------------------------------------------------------------------------------------------------
    def _path(self) -> str:
        d = self.cfg.data
        if d.dataset is not None:
            return str(dataset_path(d.dataset))
        if d.data is None:
            raise InputError("translation needs parallel text: pass --data FILE (source<TAB>target lines) or "
                             f"--dataset {'|'.join(TRANSLATE_DATASETS)}")
        return d.data

    def _read(self, path: str, limit: int | None = None, *, filter_length: bool = True) -> ParallelText:
        d = self.cfg.data
        text = read_parallel(path, encoding=d.encoding, reverse=d.reverse, normalize=d.normalize, lower=d.lower,
                             max_length=d.max_length if filter_length else None)
        if limit is not None and len(text) > limit:
            text = ParallelText(text.source[:limit], text.target[:limit], text.lines[:limit], text.path, text.skipped)
        return text

    def read_splits(self, run: RunDir | None) -> dict[str, list[int]]:
        """Read the data into self.text and return each split's indices into it: computed for a new run, taken
        from the run's split.json otherwise."""
        path = self._path()
        self.text = self._read(path, self.cfg.data.max_pairs)
        self.data_sha1 = _sha1(path)
        if run is None:
            return split_indices(self.text, self.cfg.data.valid_fraction, self.cfg.data.test_fraction)
        recorded = run.load_json(SPLIT)
        if recorded.get("sha1") != self.data_sha1:
            raise InputError(f"{path} is not the file {run.path} was trained on (its {SPLIT} records another checksum): "
                             "the held-out pairs would not be the same; restore that file, or train a new run")
        where = {line: i for i, line in enumerate(self.text.lines)}
        try:
            held = {s: [where[line] for line in recorded[s]] for s in ("valid", "test")}
        except (KeyError, TypeError):
            raise InputError(f"{run / SPLIT} is corrupted or does not match the data's options: restore it or retrain") from None
        taken = set(held["valid"]) | set(held["test"])
        return {"train": [i for i in range(len(self.text)) if i not in taken], **held}

    def prepare(self, run: RunDir | None) -> None:
        d = self.cfg.data
        if run is None and d.data is not None:
            d.data = absolute(d.data)  # a run must find its data from any directory
        tc = self.cfg.train
        if tc.loss != "mean" or tc.sample_prefix:
            raise InputError("train.loss = 'sum_steps' and train.sample_prefix are for language models: leave them out "
                             "of a translation run")
        check_bleu_available()
        self.splits = self.read_splits(run)
        if not self.splits["train"] or not self.splits["valid"]:
            raise InputError(f"{self.text.path}: {len(self.text)} pairs leave no training or validation pairs: give more "
                             "data or other --valid-fraction/--test-fraction")
        if run is None:
            train = self.splits["train"]
            fit = lambda side, reserved: Tokenizer.fit([side[i] for i in train], level="word", min_freq=d.min_freq,  # noqa: E731
                                                       max_size=d.max_vocab, reserved=reserved, lower=False)
            self.source_tokenizer = fit(self.text.source, [PAD, UNK])
            self.target_tokenizer = fit(self.text.target, [PAD, UNK, BOS, EOS])
        else:
            self.load_vocab(run)
        self.train_set, self.valid_set = self.encode_split("train"), self.encode_split("valid")

    def encode_split(self, split: str) -> Encoded:
        idx = self.splits[split]
        return self.encode([self.text.source[i] for i in idx], [self.text.target[i] for i in idx])

    def encode(self, sources: list[str], targets: list[str]) -> Encoded:
        """Prepared sentences -> ids; unknown words become <unk>."""
        return Encoded([self.source_tokenizer.encode(s) for s in sources],
                       [self.target_tokenizer.encode(t) for t in targets], sources, targets)

    def save_vocab(self, run: RunDir) -> None:
        run.save_json(SOURCE_VOCAB, self.source_tokenizer.to_dict())
        run.save_json(TARGET_VOCAB, self.target_tokenizer.to_dict())
        line = lambda s: [self.text.lines[i] for i in self.splits[s]]  # noqa: E731
        run.save_json(SPLIT, {"data": self.text.path, "sha1": self.data_sha1, "pairs": len(self.text),
                              "train_pairs": len(self.splits["train"]), "valid": line("valid"), "test": line("test")})

    def load_vocab(self, run: RunDir) -> None:
        self.run = run  # eval reads the run's split.json
        def load(name: str, reserved: tuple[str, ...]) -> Tokenizer:
            try:
                tok = Tokenizer.from_dict(run.load_json(name))
            except InputError as e:
                raise InputError(f"{run / name}: {e}: restore it or retrain") from None
            if not all(r in tok.stoi for r in reserved):
                raise InputError(f"{run / name} lacks {', '.join(reserved)}: restore it or retrain")
            return tok

        self.source_tokenizer = load(SOURCE_VOCAB, (PAD, UNK))
        self.target_tokenizer = load(TARGET_VOCAB, (PAD, UNK, BOS, EOS))

    @property
    def specials(self) -> dict[str, int]:
        t = self.target_tokenizer.stoi
        return {"bos": t[BOS], "eos": t[EOS]}

    # -- model ------------------------------------------------------------------------------------------------
    def build_model(self) -> Seq2Seq:
        return Seq2Seq.from_config(self.cfg.model, len(self.source_tokenizer), len(self.target_tokenizer),
                                   source_pad=self.source_tokenizer.stoi[PAD], target_pad=self.target_tokenizer.stoi[PAD])

    def summary_model(self, vocab_size: int | None) -> tuple[nn.Module, tuple[int, ...], dict]:
        if vocab_size is None:
            self.prepare(None)
            sizes = len(self.source_tokenizer), len(self.target_tokenizer)
        else:
            sizes = vocab_size, vocab_size
        return (Seq2Seq.from_config(self.cfg.model, *sizes), *self.summary_input())

    def summary_input(self) -> tuple[tuple[int, ...], dict]:
        steps, batch = self.cfg.data.max_length or 10, self.cfg.data.batch_size  # (S, B) source, (T, B) target
        return (steps, batch), {"dtype": torch.long, "source_lengths": torch.full((batch,), steps),
                                "target_in": torch.zeros(steps + 1, batch, dtype=torch.long)}

    def describe(self) -> str:
        return (f"{len(self.train_set.source):,} training and {len(self.valid_set.source):,} validation pairs, "
                f"{len(self.source_tokenizer):,} source and {len(self.target_tokenizer):,} target words")

    # -- training ---------------------------------------------------------------------------------------------
    def _batches(self, data: Encoded, size: int, shuffle: bool, seed: int = 0) -> PairBatches:
        return PairBatches(data.source, data.target, size, shuffle=shuffle, seed=seed,
                           pad_id=self.source_tokenizer.stoi[PAD], target_pad_id=self.target_tokenizer.stoi[PAD],
                           **self.specials)

    def batches(self, epoch: int) -> Batches:
        # the order of an epoch is a function of (seed, epoch) only, so a resumed epoch replays exactly
        return self._batches(self.train_set, self.cfg.data.batch_size, True, epoch_seed(self.cfg.train.seed, epoch))

    def shard(self, batch: PairBatch, world) -> PairBatch:
        columns = slice(world.rank, None, world.size)
        if batch.index[columns].numel() == 0:
            # a last batch smaller than the world: this process still runs a step (DDP needs every process in
            # each backward), on one pair that counts for nothing (its index list is empty)
            return _trimmed(PairBatch(batch.source[:, :1], batch.source_lengths[:1], batch.target_in[:, :1],
                                      batch.target_out[:, :1], batch.index[:0]), self.target_tokenizer.stoi[PAD])
        return _trimmed(PairBatch(batch.source[:, columns], batch.source_lengths[columns], batch.target_in[:, columns],
                                  batch.target_out[:, columns], batch.index[columns]), self.target_tokenizer.stoi[PAD])

    def step(self, model: Seq2Seq, batch: PairBatch, state: Any, device: torch.device) -> Step:
        target_out = batch.target_out.to(device)
        _, loss = model(batch.source.to(device), batch.source_lengths, batch.target_in.to(device), target_out)
        # the stand-in pair of an uneven data-parallel batch counts 0 items, so the loop weights it by 0
        items = int((target_out != self.target_tokenizer.stoi[PAD]).sum()) if batch.index.numel() else 0
        return Step(loss, loss, items)

    @torch.no_grad()
    def _loss(self, model: Seq2Seq, data: Encoded, device: torch.device | str) -> float:
        """Mean cross-entropy per target token (teacher-forced, <eos> included), without label smoothing, so
        that it compares across configs."""
        total, count, pad = 0.0, 0, self.target_tokenizer.stoi[PAD]
        with _evaluating(model):
            for b in self._batches(data, self.cfg.data.eval_batch_size, False):
                target_out = b.target_out.to(device)
                logits, _ = model(b.source.to(device), b.source_lengths, b.target_in.to(device))
                total += nn.functional.cross_entropy(logits.flatten(0, 1).float(), target_out.flatten(),
                                                     ignore_index=pad, reduction="sum").item()
                count += int((target_out != pad).sum())
        return total / max(count, 1)

    @torch.no_grad()
    def translate_ids(self, model: Seq2Seq, sources: list[list[int]], *, beam: int = 1, max_length: int | None = None,
                      length_penalty: float = 0.6, device: torch.device | str = "cpu") -> list[list[int]]:
        """Target ids (without <bos>, <eos>) of each source, in input order; beam 1 is greedy search."""
        out: list[list[int]] = [[] for _ in sources]
        with _evaluating(model):
            for b in self._batches(Encoded(sources, [[]] * len(sources), [], []), self.cfg.data.eval_batch_size, False):
                src = b.source.to(device)
                if beam == 1:
                    hyps = greedy_search(model, src, b.source_lengths, max_length=max_length, **self.specials)
                else:
                    hyps = beam_search(model, src, b.source_lengths, beam=beam, max_length=max_length,
                                       length_penalty=length_penalty, **self.specials)
                for i, h in zip(b.index.tolist(), hyps):
                    out[i] = h
        return out

    def _text(self, ids: list[int]) -> str:
        return " ".join(self.target_tokenizer.itos[i] for i in ids)

    # the validation loss keeps falling after translations stop improving (teacher-forced, it never sees the
    # model's own mistakes): pick the weights that translate best, as NMT toolkits do
    monitors = ("bleu", "loss")
    valid_figures = " bleu {bleu:.2f} exact {exact_match:.3f}"

    def evaluate(self, model: Seq2Seq, device: torch.device) -> dict | None:
        hyps = self.translate_ids(model, self.valid_set.source, device=device)
        metrics = translation_metrics([self._text(h) for h in hyps], self.valid_set.target_text)
        return {"loss": self._loss(model, self.valid_set, device), "bleu": metrics["bleu"],
                "exact_match": metrics["exact_match"]}

    def closing_items(self) -> tuple[float, float]:
        # the evaluation makes two forward passes over the validation targets: the loss, then greedy translations
        # of about their length; finish translates a few sentences side by side, each output token taking about
        # as long as one time step of a training batch's forward pass
        tokens = sum(len(t) for t in self.valid_set.target)
        return 2 * tokens / 3, tokens / max(len(self.valid_set.target), 1) * self.cfg.data.batch_size / 3

    def finish(self, run: RunDir, device: torch.device) -> str | None:
        """A few validation translations by the best weights, beside their references."""
        model = self.build_model()
        run.load_model(model, "model.safetensors")
        model.to(device)
        n = min(5, len(self.valid_set.source))
        hyps = self.translate_ids(model, self.valid_set.source[:n], device=device)
        return "\n".join(f"{s}  =>  {self._text(h)}   (reference: {t})"
                         for s, h, t in zip(self.valid_set.source_text, hyps, self.valid_set.target_text))

    # -- after training ---------------------------------------------------------------------------------------
    def evaluate_split(self, model: Seq2Seq, split: str, *, data_path: str | None = None, beam: int = 1,
                       max_length: int | None = None, length_penalty: float = 0.6, examples: int = 10,
                       device: torch.device | str = "cpu") -> dict:
        """`stackrnn eval`: BLEU, exact match and loss on the run's `split`, or on every pair of the parallel
        file `data_path`; with the first `examples` translations beside their references."""
        check_search(beam, max_length, length_penalty)
        if data_path is not None:
            # every pair of the file counts: the training length filter was for training's sake
            text = self._read(data_path, filter_length=False)
            data, split = self.encode(text.source, text.target), str(data_path)
        else:
            self.splits = self.read_splits(self.run)
            data = self.encode_split(split)
            if not data.source:
                raise InputError(f"the run's data has no {split} pairs (test_fraction = 0?): score a parallel file "
                                 "with --data FILE")
        hyps = [self._text(h) for h in self.translate_ids(model, data.source, beam=beam, max_length=max_length,
                                                          length_penalty=length_penalty, device=device)]
        metrics = translation_metrics(hyps, data.target_text)
        return {"split": split, "pairs": len(hyps), "beam": beam, **metrics,
                "loss": self._loss(model, data, device),
                "examples": [{"source": s, "reference": r, "translation": h}
                             for s, r, h in list(zip(data.source_text, data.target_text, hyps))[:examples]]}

    def prepare_input(self, texts: list[str]) -> list[str]:
        """User sentences prepared as the training data was; an empty one is an error naming it."""
        d = self.cfg.data
        prepared = [prepare_sentence(t, normalize=d.normalize, lower=d.lower) for t in texts]
        for i, p in enumerate(prepared):
            if not words(p):
                raise InputError(f"sentence {i + 1} is empty: give some words to translate")
        return prepared

    def translate(self, model: Seq2Seq, texts: list[str], *, beam: int = 5, max_length: int | None = None,
                  length_penalty: float = 0.6, device: torch.device | str = "cpu") -> list[dict]:
        """`stackrnn translate`: each sentence's translation, and the source words the vocabulary lacks."""
        check_search(beam, max_length, length_penalty)
        prepared = self.prepare_input(texts)
        hyps = self.translate_ids(model, [self.source_tokenizer.encode(p) for p in prepared], beam=beam,
                                  max_length=max_length, length_penalty=length_penalty, device=device)
        return [{"source": t, "translation": self._text(h), "unknown": self.source_tokenizer.unknown_tokens(p)}
                for t, p, h in zip(texts, prepared, hyps)]

    @staticmethod
    def check_attention(model: Seq2Seq) -> None:
        if model.attention is None:
            raise InputError("this run's model has no attention (model.attention = 'none'): there is no map to draw")

    @torch.no_grad()
    def attention_map(self, model: Seq2Seq, source: str, target: str, *, ended: bool = True,
                      device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[str], list[str]]:
        """The attention of every target step over the source words, for the pair (`source`, `target`): weights
        (T, S), T = the target's words, plus the step that predicts <eos> when `ended` (False for a translation
        cut at its length limit, which never produced one); and both sides' tokens."""
        self.check_attention(model)
        src, target = self.prepare_input([source, target])
        src_ids, tgt_ids = self.source_tokenizer.encode(src), self.target_tokenizer.encode(target)
        b = next(iter(self._batches(Encoded([src_ids], [tgt_ids], [], []), 1, False)))
        with _evaluating(model):
            _, _, weights = model(b.source.to(device), b.source_lengths, b.target_in.to(device), return_attention=True)
        rows = len(tgt_ids) + ended
        return (weights[:rows, :, 0].float().cpu(), [self.source_tokenizer.itos[i] for i in src_ids],
                [self.target_tokenizer.itos[i] for i in tgt_ids] + ([EOS] if ended else []))


@contextmanager
def _evaluating(model: nn.Module):
    """The model in eval mode (no dropout) for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _trimmed(batch: PairBatch, pad: int) -> PairBatch:
    """A shard's batch cut to its own longest source and target (the global batch's may be longer)."""
    s = int(batch.source_lengths.max())
    t = int((batch.target_out != pad).sum(0).max())
    return PairBatch(batch.source[:s], batch.source_lengths, batch.target_in[:t], batch.target_out[:t], batch.index)


def _sha1(path: str) -> str:
    try:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()
    except OSError as e:
        raise InputError(f"cannot read {path} ({e.strerror}): check the path") from None
