"""Speech recognition as a task of the training loop: transcribed recordings (a manifest, CMU AN4, or the Free
Spoken Digit Dataset) -> features (log-mel or MFCC from audio, or feature files as they are), normalised ->
length-bucketed padded batches (lengths passed through, so padding never changes a transcript) ->
SpeechRecognizer trained with CTC, judged by word and character error rates (jiwer); plus the evaluation and
transcription that `stackrnn eval` and `stackrnn transcribe` run.

Dimension key: T frames, B batch, F features per frame, U transcript tokens, V tokens + the blank.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from ..config import option
from ..ctc import best_path, check_jiwer, error_rates, prefix_beam_search
from ..data.audio import KINDS, FeatureSpec, join_audio, normalise, read_features, spec_augment
from ..data.buckets import BucketBatches
from ..data.batching import epoch_seed
from ..data.pipeline import absolute
from ..data.speech import Tokens, Utterance, connect_digits, fsdd_split, read_an4, read_fsdd, read_manifest
from ..errors import InputError, plural
from ..models.speech import SpeechConfig, SpeechRecognizer
from ..run import RunDir
from .base import Batches, Step, Task

SPEECH = "speech.json"
FORMATS = ("auto", "manifest", "an4", "fsdd")
NORMALISATIONS = ("utterance", "global", "none")


@dataclass
class SpeechDataConfig:
    """[data] of a speech run: the recordings and transcripts, their features and how they are batched."""

    data: str | None = option(None, "the training recordings: a manifest (CSV, TSV or JSONL of path and transcript), "
                              "CMU AN4's folder (etc/, feat/), or a folder of Free Spoken Digit Dataset WAVs")
    format: str = option("auto", "auto: a folder with etc/an4_train.fileids is AN4, another folder FSDD, a file a "
                         "manifest", choices=FORMATS)
    valid_data: str | None = option(None, "manifests: the validation manifest; default: valid_fraction of the training data")
    test_data: str | None = option(None, "manifests: the test manifest (AN4 and FSDD bring their own test sets)")
    test_speakers: str = option("", "FSDD: the comma-separated speakers that are the test set (speaker-independent); "
                                "default: FSDD's own split, takes 0-4 of everyone")
    connected: int = option(0, "FSDD: 0 reads isolated digits; N makes N connected-digit strings for training (and "
                            "N / 5 each for validation and test), each 2 to 7 takes of one speaker of the split joined "
                            "with 50 to 300 ms of silence, from a fixed seed, and saved in the run", within="[0, inf)")
    valid_fraction: float = option(0.1, "without a validation manifest: this fraction of the training recordings, "
                                   "drawn once with a fixed seed", within="(0, 1)")
    tokens: list | None = option(None, "the symbols transcripts are written in, e.g. ['0', '1', ..., '9']; default: "
                                 "the characters of the training transcripts", cli=False)
    features: str = option("logmel", "features of audio files: logmel (log mel filterbank) or mfcc; feature files "
                           "(.mfc, .npy) are read as they are", choices=KINDS)
    sample_rate: int = option(16000, "audio is resampled to this rate (Hz) before its features are taken",
                              within="[1000, inf)")
    n_mels: int = option(40, "mel bands", within="[2, inf)")
    n_mfcc: int = option(13, "cepstral coefficients (features = mfcc), and the columns of a Sphinx .mfc file",
                         within="[1, inf)")
    window_ms: float = option(25.0, "analysis window (ms)", within="(0, inf)")
    hop_ms: float = option(10.0, "frame step (ms); also the frame step that feature files are taken to have",
                           within="(0, inf)")
    normalize: str = option("utterance", "mean/variance normalisation: per utterance, or global (the training "
                            "set's, saved in the run), or none", choices=NORMALISATIONS)
    freq_masks: int = option(0, "SpecAugment in training: frequency masks per utterance", within="[0, inf)")
    freq_width: int = option(8, "SpecAugment: widest frequency mask (features)", within="[0, inf)")
    time_masks: int = option(0, "SpecAugment in training: time masks per utterance", within="[0, inf)")
    time_width: int = option(20, "SpecAugment: widest time mask (frames; at most a fifth of the utterance)",
                             within="[0, inf)")
    batch_size: int = option(16, "utterances per training batch", within="[1, inf)")
    eval_batch_size: int = option(64, "utterances per batch when evaluating and transcribing", within="[1, inf)")

    def validate(self) -> None:
        if self.features == "mfcc" and self.n_mfcc > self.n_mels:
            raise InputError(f"data.n_mfcc: at most n_mels ({self.n_mels}) coefficients, got {self.n_mfcc}")
        if self.tokens is not None and (not self.tokens or not all(isinstance(s, str) and s for s in self.tokens)):
            raise InputError(f"data.tokens: expected a list of symbols (strings), got {self.tokens!r}")

    def spec(self) -> FeatureSpec:
        return FeatureSpec(self.features, self.sample_rate, self.n_mels, self.n_mfcc, self.window_ms, self.hop_ms)


class SpeechBatch(NamedTuple):
    """x (T, B, F) features right-padded with zeros; lengths (B,) frames; targets (B, U) token ids padded with 0;
    target_lengths (B,); index (B,) the utterances' positions in the list batched."""

    x: Tensor
    lengths: Tensor
    targets: Tensor
    target_lengths: Tensor
    index: Tensor


class SpeechBatches(BucketBatches):
    """Length-bucketed batches of utterances (BucketBatches' schedule and exact resume), with SpecAugment's masks
    drawn from (seed, batch position) when `augment` is given, so a resumed epoch replays them exactly."""

    def __init__(self, features: list[Tensor], targets: list[list[int]], batch_size: int, *,
                 augment: dict | None = None, **kwargs) -> None:
        super().__init__(features, targets, batch_size, **kwargs)
        self.augment = augment

    def _from(self, start: int) -> Iterator[SpeechBatch]:
        for b in range(start, len(self.batches)):
            yield self._speech_batch(self.batches[b], b)

    def _speech_batch(self, idx: list[int], position: int) -> SpeechBatch:
        frames = [self.sequences[i] for i in idx]
        if self.augment:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + position)
            frames = [spec_augment(f, g, **self.augment) for f in frames]
        targets = [torch.as_tensor(self.labels[i], dtype=torch.long) for i in idx]
        return SpeechBatch(pad_sequence(frames), torch.tensor([len(f) for f in frames]),
                           pad_sequence(targets, batch_first=True), torch.tensor([len(t) for t in targets]),
                           torch.tensor(idx))


class SpeechTask(Task):
    sections = {"model": SpeechConfig, "data": SpeechDataConfig}
    unit = "utterances"
    files = (SPEECH,)

    # -- data -------------------------------------------------------------------------------------------------
    def kind(self) -> str:
        d = self.cfg.data
        if d.format != "auto":
            return d.format
        path = Path(d.data)
        if path.is_dir():
            return "an4" if (path / "etc" / "an4_train.fileids").is_file() else "fsdd"
        return "manifest"

    def read_splits(self) -> dict[str, list[Utterance] | None]:
        """The utterances of train, valid (None: hold out a part of train) and test (None: none given)."""
        d = self.cfg.data
        if d.data is None:
            raise InputError("speech recognition needs recordings: pass --data (a manifest, AN4's folder or FSDD's)")
        kind = self.kind()
        if kind != "manifest" and (d.valid_data or d.test_data):
            raise InputError(f"data.valid_data and data.test_data are manifests' splits; {kind.upper()} brings its own")
        if kind != "fsdd" and d.test_speakers:
            raise InputError("data.test_speakers: splits the Free Spoken Digit Dataset by speaker; this data is "
                             f"{kind}")
        if kind == "an4":
            return {"train": read_an4(d.data, "train"), "valid": None, "test": read_an4(d.data, "test")}
        if kind == "fsdd":
            speakers = [s.strip() for s in d.test_speakers.split(",") if s.strip()]
            train, test = fsdd_split(read_fsdd(d.data), speakers)
            return {"train": train, "valid": None, "test": test}
        return {"train": read_manifest(d.data), "valid": read_manifest(d.valid_data) if d.valid_data else None,
                "test": read_manifest(d.test_data) if d.test_data else None}

    def split_utterances(self, split: str) -> list[Utterance]:
        """The utterances of `split`, the data read once (a counted warning about bad rows is shown once)."""
        if getattr(self, "_splits", None) is None:
            self._splits = self.read_splits()
        splits = self._splits
        if splits["valid"] is None:
            splits["train"], splits["valid"] = _hold_out(splits["train"], self.cfg.data.valid_fraction)
        if self.cfg.data.connected and not splits.get("connected"):
            self._connect(splits)
        if splits[split] is None:
            raise InputError(f"the run's data has no {split} split: give the run a test manifest (data.test_data)")
        return splits[split]

    def _connect(self, splits: dict) -> None:
        """Each split's isolated takes made into connected-digit strings (see data.connected), or the strings a
        loaded run saved."""
        if self.kind() != "fsdd":
            raise InputError("data.connected: makes connected-digit strings of Free Spoken Digit Dataset takes; this "
                             f"data is {self.kind()}")
        saved = getattr(self, "saved_strings", None)
        n = self.cfg.data.connected
        for i, (split, count) in enumerate((("train", n), ("valid", max(1, n // 5)), ("test", max(1, n // 5)))):
            if saved:
                splits[split] = [Utterance(u["path"], u["text"], u["where"], u["speaker"], [tuple(p) for p in u["parts"]],
                                           u["tail"]) for u in saved[split]]
            else:
                splits[split] = connect_digits(splits[split], count, seed=i, name=f"{split}-connected")
        splits["connected"] = True

    def raw(self, u: Utterance) -> np.ndarray:
        """(T, F) features of one utterance as read (before normalisation)."""
        if u.parts:
            samples, rate = join_audio(u.parts, u.tail)
            return self.spec.features(samples, rate)
        return read_features(u.path, self.spec, coefficients=self.cfg.data.n_mfcc)

    def prepare(self, run: RunDir | None) -> None:
        d = self.cfg.data
        check_jiwer()
        if run is None:
            for name in ("data", "valid_data", "test_data"):  # a run must find its data from any directory
                if getattr(d, name) is not None:
                    setattr(d, name, absolute(getattr(d, name)))
            self.spec = d.spec()
        else:
            self.load_vocab(run)
        train, valid = self.split_utterances("train"), self.split_utterances("valid")
        raw = [self.raw(u) for u in train]
        if run is None:
            self.tokens = Tokens(d.tokens) if d.tokens else Tokens.fit([u.text for u in train])
            self.input_size = _same_width(raw, train)
            self.mean = self.std = None
            if d.normalize == "global":
                stacked = np.concatenate(raw)
                self.mean, self.std = stacked.mean(0), stacked.std(0)
        self.train_set = self.encode(train, raw)
        self.valid_set = self.encode(valid)

    def encode(self, utterances: list[Utterance], raw: list[np.ndarray] | None = None) -> tuple[list[Tensor], list[list[int]], list[str]]:
        """(normalised features (T, F) each, token ids each, transcripts) of `utterances`."""
        targets = [self.tokens.encode(u.text, f"{u.where} ({u.path})") for u in utterances]
        if raw is None:
            raw = [self.raw(u) for u in utterances]
        return [self.features(f, u.path) for f, u in zip(raw, utterances)], targets, [self.tokens.decode(t) for t in targets]

    def features(self, frames: np.ndarray, path: str) -> Tensor:
        """One utterance's features as the model reads them: checked against the run's width, normalised."""
        if frames.shape[1] != self.input_size:
            raise InputError(f"{path}: {frames.shape[1]} features per frame, but the run reads {self.input_size}: "
                             "give files of the kind it was trained on")
        how = self.cfg.data.normalize
        if how != "none":
            frames = normalise(frames, self.mean, self.std)
        return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))

    def save_vocab(self, run: RunDir) -> None:
        strings = None
        if self.cfg.data.connected:  # what eval reads later, whatever becomes of the code that drew them
            strings = {split: [asdict(u) for u in self.split_utterances(split)] for split in ("train", "valid", "test")}
        run.save_json(SPEECH, {"symbols": self.tokens.symbols, "features": asdict(self.spec), "input_size": self.input_size,
                               "mean": None if self.mean is None else self.mean.tolist(),
                               "std": None if self.std is None else self.std.tolist(), "connected": strings})

    def load_vocab(self, run: RunDir) -> None:
        raw = run.load_json(SPEECH)
        try:
            self.tokens = Tokens(list(raw["symbols"]))
            self.spec = FeatureSpec(**raw["features"])
            self.input_size = int(raw["input_size"])
            self.mean = None if raw["mean"] is None else np.asarray(raw["mean"], dtype=np.float32)
            self.std = None if raw["std"] is None else np.asarray(raw["std"], dtype=np.float32)
            self.saved_strings = raw.get("connected")
        except (KeyError, TypeError, ValueError, InputError):
            raise InputError(f"{run / SPEECH} is corrupted (expected symbols, features, input_size, mean and std): "
                             "restore it or retrain") from None

    # -- model and training -----------------------------------------------------------------------------------
    def build_model(self) -> SpeechRecognizer:
        return SpeechRecognizer.from_config(self.cfg.model, self.input_size, len(self.tokens))

    def describe(self) -> str:
        return (f"{len(self.train_set[0]):,} training and {len(self.valid_set[0]):,} validation utterances, "
                f"{self.input_size} features per frame, {len(self.tokens) - 1} symbols")

    def batches(self, epoch: int) -> Batches:
        d = self.cfg.data
        augment = {k: getattr(d, k) for k in ("freq_masks", "freq_width", "time_masks", "time_width")}
        return SpeechBatches(self.train_set[0], self.train_set[1], d.batch_size, shuffle=True,
                             seed=epoch_seed(self.cfg.train.seed, epoch),
                             augment=augment if d.freq_masks or d.time_masks else None)

    def shard(self, batch: SpeechBatch, world) -> SpeechBatch:
        pick = slice(world.rank, None, world.size)
        if batch.index[pick].numel() == 0:
            # a last batch smaller than the world: this process still runs a step (DDP needs every process in each
            # backward), on one utterance that counts for nothing (its index list is empty), as classify does
            return SpeechBatch(batch.x[:, :1], batch.lengths[:1], batch.targets[:1], batch.target_lengths[:1],
                               batch.index[:0])
        return SpeechBatch(batch.x[:, pick], batch.lengths[pick], batch.targets[pick], batch.target_lengths[pick],
                           batch.index[pick])

    def step(self, model: SpeechRecognizer, batch: SpeechBatch, state: Any, device: torch.device) -> Step:
        _, loss = model(batch.x.to(device), batch.lengths, batch.targets.to(device), batch.target_lengths)
        return Step(loss, loss, int(batch.index.numel()))

    def summary_model(self, vocab_size: int | None) -> tuple[nn.Module, tuple[int, ...], dict]:
        if vocab_size is None:
            self.prepare(None)
            return self.build_model(), *self.summary_input()
        self.input_size = self.cfg.data.spec().size
        return SpeechRecognizer.from_config(self.cfg.model, self.input_size, vocab_size), *self.summary_input()

    def summary_input(self) -> tuple[tuple[int, ...], dict]:
        shape = (200, self.cfg.data.batch_size, self.input_size)  # (T, B, F): two seconds at 10 ms
        return shape, {"lengths": torch.full((shape[1],), shape[0])}

    # -- evaluation -------------------------------------------------------------------------------------------
    # CER sits at 1 while a new CTC model still outputs only blanks, so the loss leads (auto) and drives the schedule
    monitors = ("loss", "cer", "wer", "accuracy")
    valid_figures = " CER {cer:.4f} WER {wer:.4f}"

    @torch.no_grad()
    def outputs(self, model: SpeechRecognizer, features: list[Tensor], targets: list[list[int]] | None = None,
                device: torch.device | str = "cpu") -> tuple[list[Tensor], float | None]:
        """Each utterance's (T', V) log-probabilities, in input order, and the mean CTC loss given targets."""
        was_training = model.training
        model.eval()
        out: list[Tensor | None] = [None] * len(features)
        total = 0.0
        batches = SpeechBatches(features, targets or [[1]] * len(features), self.cfg.data.eval_batch_size, shuffle=False)
        for b in batches:
            log_probs, loss = model(b.x.to(device), b.lengths, b.targets.to(device) if targets else None,
                                    b.target_lengths)
            frames = model.output_lengths(b.lengths)
            for j, i in enumerate(b.index.tolist()):
                out[i] = log_probs[:frames[j], j].cpu()
            if loss is not None:
                total += loss.item() * len(b.index)
        model.train(was_training)
        return out, (total / len(features) if targets else None)

    def decode(self, log_probs: Tensor, beam: int) -> str:
        ids = best_path(log_probs)[0] if beam == 1 else prefix_beam_search(log_probs, beam)[0]
        return self.tokens.decode(ids)

    def _score(self, model, encoded, beam: int, device) -> tuple[dict, list[str]]:
        features, targets, references = encoded
        log_probs, loss = self.outputs(model, features, targets, device)
        hypotheses = [self.decode(lp, beam) for lp in log_probs]
        return {"loss": loss, **error_rates(references, hypotheses)}, hypotheses

    def evaluate(self, model: SpeechRecognizer, device: torch.device) -> dict | None:
        return self._score(model, self.valid_set, 1, device)[0]

    def closing_items(self) -> tuple[float, float]:
        return len(self.valid_set[0]) / 3, 0.0

    def evaluate_split(self, model: SpeechRecognizer, split: str, *, device: torch.device | str = "cpu",
                       beam: int = 1, examples: int = 10) -> dict:
        """`stackrnn eval`: WER, CER, sequence accuracy and CTC loss on the run's `split`, decoded with best path
        (beam 1) or prefix beam search, and the first `examples` transcripts beside their references."""
        if beam < 1:
            raise InputError(f"--beam: expected an integer >= 1, got {beam}")
        utterances = self.split_utterances(split)
        encoded = self.encode(utterances)
        scores, hypotheses = self._score(model, encoded, beam, device)
        return {"split": split, "utterances": len(utterances), "beam": beam, **scores,
                "examples": [{"path": u.path, "reference": r, "transcript": h}
                             for u, r, h in list(zip(utterances, encoded[2], hypotheses))[:examples]]}

    def transcribe(self, model: SpeechRecognizer, paths: list[str], *, beam: int = 1, stream: float | None = None,
                   device: torch.device | str = "cpu") -> list[dict]:
        """Each file's transcript: {"path", "transcript", "tokens"}; with best path (beam 1) every token's
        {"token", "time" (seconds where its first frame starts), "probability" (its highest over its frames)}.
        With `stream` (milliseconds), a unidirectional model reads each file's frames in chunks of about that
        long, its state carried from chunk to chunk, as it would read audio arriving live."""
        if beam < 1:
            raise InputError(f"--beam: expected an integer >= 1, got {beam}")
        if stream is not None:
            self.check_stream(model, stream)
        features = [self.features(read_features(p, self.spec, coefficients=self.cfg.data.n_mfcc), p) for p in paths]
        if stream is None:
            log_probs, _ = self.outputs(model, features, None, device)
        else:
            log_probs = [self.stream(model, f, stream, device) for f in features]
        seconds = self.spec.hop_ms / 1000 * model.stride * 2 ** (len(model.blocks) - 1)  # one output frame
        results = []
        for path, lp in zip(paths, log_probs):
            if beam == 1:
                ids, frames, probs = best_path(lp)
                tokens = [{"token": self.tokens.symbols[k - 1], "time": round(t * seconds, 3), "probability": round(p, 4)}
                          for k, t, p in zip(ids, frames, probs)]
            else:
                ids, tokens = prefix_beam_search(lp, beam)[0], None
            results.append({"path": path, "transcript": self.tokens.decode(ids), "tokens": tokens})
        return results


    @torch.no_grad()
    def layer_outputs(self, model: SpeechRecognizer, path: str, device: torch.device | str = "cpu"
                      ) -> tuple[list[Tensor], Tensor, list[float]]:
        """One file read through the model: every layer's outputs (T_l, D_l), the log-probabilities (T', V), and
        the seconds of one frame of each layer and of the output."""
        x = self.features(read_features(path, self.spec, coefficients=self.cfg.data.n_mfcc), path)
        layers, log_probs = model.eval().layer_outputs(x.unsqueeze(1).to(device), torch.tensor([len(x)]))
        first = self.spec.hop_ms / 1000 * model.stride
        cuts = [len(block.specs) for block in model.blocks]  # layers per block: each block after the first halves
        seconds = [first * 2 ** b for b, n in enumerate(cuts) for _ in range(n)]
        return [out[:, 0].cpu() for out in layers], log_probs[:, 0].cpu(), [*seconds, seconds[-1]]

    def check_stream(self, model: SpeechRecognizer, chunk_ms: float) -> None:
        if not model.streamable:
            raise InputError("--stream: this run's stack is bidirectional (its layers read the future), so it cannot "
                             "stream; train with --no-bidirectional for a model that can")
        if self.cfg.data.normalize == "utterance":
            raise InputError("--stream: this run normalises each utterance by its own mean and deviation, which are "
                             "known only at its end; train with --normalize global (or none) for a model that can stream")
        if not chunk_ms > 0:
            raise InputError(f"--stream: expected a chunk length in milliseconds > 0, got {chunk_ms}")

    @torch.no_grad()
    def stream(self, model: SpeechRecognizer, features: Tensor, chunk_ms: float, device) -> Tensor:
        """(T', V) log-probabilities of one utterance read in chunks of about `chunk_ms` (a whole number of the
        frames one output frame stands for), the model's state carried between them."""
        step = model.chunk_frames
        size = max(1, round(chunk_ms / self.spec.hop_ms / step)) * step
        state, parts = None, []
        for start in range(0, len(features), size):
            out, state = model.stream(features[start:start + size].unsqueeze(1).to(device), state)
            parts.append(out[:, 0].cpu())
        return torch.cat(parts)


def _same_width(raw: list[np.ndarray], utterances: list[Utterance]) -> int:
    widths = {f.shape[1] for f in raw}
    if len(widths) > 1:
        bad = next(u for f, u in zip(raw, utterances) if f.shape[1] != raw[0].shape[1])
        raise InputError(f"{bad.path}: {plural(next(f for f, u in zip(raw, utterances) if u is bad).shape[1], 'feature')} "
                         f"per frame, but {utterances[0].path} has {raw[0].shape[1]}: every file must have the same kind "
                         "of features")
    return widths.pop()


def _hold_out(train: list[Utterance], fraction: float) -> tuple[list[Utterance], list[Utterance]]:
    """Split off `fraction` of the training utterances for validation, drawn with a fixed seed: the same on every
    machine and every resume, whatever the run's seed."""
    n = len(train)
    held = set(torch.randperm(n, generator=torch.Generator().manual_seed(1234))[:round(n * fraction)].tolist())
    if not held or len(held) == n:
        raise InputError(f"{plural(n, 'training recording')} are too few to hold out {fraction:g} of them for "
                         "validation: give more data or a validation manifest (data.valid_data)")
    return [u for i, u in enumerate(train) if i not in held], [u for i, u in enumerate(train) if i in held]
