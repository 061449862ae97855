"""Audio and acoustic features for speech recognition: reading WAV, Sphinx .mfc and .npy files, resampling,
log-mel filterbanks and MFCCs, mean/variance normalisation and SpecAugment.

Dimension key: N samples, T frames, F features per frame (n_mels, n_mfcc, or a feature file's columns).

Everything here is plain torch and the standard library. WAV files are read with the `wave` module (PCM 8, 16,
24 and 32 bit; soundfile, where installed, reads the rest: float WAV, FLAC). The mel filterbank is written out
below (HTK's mel scale, triangles on the FFT bins) rather than borrowed from librosa or torchaudio: it is a
dozen lines, and torchaudio's releases lag torch's (today none matches the installed torch 2.13), so
depending on them for one matrix would make speech runs uninstallable; librosa brings numba and llvmlite for
the same matrix. Feature files (.mfc, .npy) are used as they are.

Every reader raises an InputError naming the file and what is wrong with it, so a bad file in a dataset is one
clear line, not a traceback.
"""

from __future__ import annotations

import math
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac")
FEATURE_SUFFIXES = (".mfc", ".npy")
KINDS = ("logmel", "mfcc")
#: sample rates a reader accepts: anything outside is a corrupt header, not a recording
_RATES = (1000, 384_000)


# -- feature files ----------------------------------------------------------------------------------------
def read_mfc(path: str | Path, coefficients: int = 13) -> np.ndarray:
    """A CMU Sphinx feature file as (T, coefficients) float32: a big-endian int32 count of the floats that
    follow, then that many big-endian float32 values, frame by frame."""
    data = Path(path).read_bytes()
    if len(data) < 4:
        raise InputError(f"{path}: a Sphinx .mfc file starts with a 4-byte count, but the file has {len(data)} bytes")
    (count,) = struct.unpack(">i", data[:4])
    floats = (len(data) - 4) // 4
    if count != floats or (len(data) - 4) % 4:
        raise InputError(f"{path}: the header counts {count} values but the file holds {floats} "
                         f"({len(data)} bytes): the file is truncated or not a Sphinx .mfc file")
    if count == 0 or count % coefficients:
        raise InputError(f"{path}: {count} values are not whole frames of {coefficients} coefficients"
                         + (" (the file holds no frames)" if count == 0 else ""))
    frames = np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32).reshape(-1, coefficients)
    if not np.isfinite(frames).all():
        raise InputError(f"{path}: holds values that are not finite numbers (NaN or infinite)")
    return frames


def write_mfc(path: str | Path, frames: np.ndarray) -> None:
    """Write (T, C) features as a Sphinx .mfc file (what read_mfc reads)."""
    values = np.ascontiguousarray(frames, dtype=">f4").ravel()
    Path(path).write_bytes(struct.pack(">i", values.size) + values.tobytes())


def read_npy(path: str | Path) -> np.ndarray:
    """A (T, F) float array saved with numpy.save (never a pickle)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable .npy array ({str(e).splitlines()[0]})") from None
    if array.ndim != 2 or array.shape[0] < 1 or not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{path}: expected a (frames, features) array of numbers, got {array.dtype} of shape {array.shape}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InputError(f"{path}: holds values that are not finite numbers (NaN or infinite)")
    return array


# -- audio ------------------------------------------------------------------------------------------------
def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples (N,) float32 in [-1, 1], sample rate) of a PCM WAV file; several channels are averaged. Other
    encodings go through soundfile where it is installed."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, width, channels, n = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()
            raw = w.readframes(n)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (wave.Error, EOFError, struct.error) as e:
        return _read_soundfile(path, f"not a PCM WAV file ({e or 'truncated header'})")
    if not _RATES[0] <= rate <= _RATES[1]:
        raise InputError(f"{path}: sample rate {rate} Hz is not a recording's (expected {_RATES[0]} to {_RATES[1]} Hz): "
                         "the header is corrupt")
    if len(raw) < width * channels:
        raise InputError(f"{path}: holds no audio (0 samples)")
    usable = len(raw) // (width * channels) * width * channels
    if width == 1:
        x = (np.frombuffer(raw[:usable], np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        x = np.frombuffer(raw[:usable], "<i2").astype(np.float32) / 32768
    elif width == 3:
        b = np.frombuffer(raw[:usable], np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / (1 << 23)
    else:
        x = np.frombuffer(raw[:usable], "<i4").astype(np.float32) / 2**31
    return x.reshape(-1, channels).mean(1), rate


def _read_soundfile(path, reason: str) -> tuple[np.ndarray, int]:
    try:
        import soundfile
    except ImportError:
        raise InputError(f"{path}: {reason}; for other encodings pip install soundfile") from None
    try:
        x, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own error types for every malformed file
        raise InputError(f"{path}: {reason}, and soundfile cannot read it either ({e})") from None
    if x.shape[0] == 0:
        raise InputError(f"{path}: holds no audio (0 samples)")
    return x.mean(1), rate


def resample(x: Tensor, rate: int, target: int) -> Tensor:
    """Band-limited resampling of (N,) samples from `rate` to `target` Hz by the Fourier method (as
    scipy.signal.resample): the spectrum is cut or zero-extended, so nothing above the new Nyquist folds back."""
    if rate == target:
        return x
    n = max(1, round(x.numel() * target / rate))
    spectrum = torch.fft.rfft(x)
    keep = n // 2 + 1
    out = torch.zeros(keep, dtype=spectrum.dtype)
    m = min(keep, spectrum.numel())
    out[:m] = spectrum[:m]
    return torch.fft.irfft(out, n) * (n / x.numel())


# -- features ---------------------------------------------------------------------------------------------
def mel_filterbank(n_mels: int, n_fft: int, rate: int) -> Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters spaced evenly on HTK's mel scale, m = 2595 log10(1 + f/700),
    from 0 Hz to the Nyquist frequency; each triangle peaks at 1 on its centre frequency."""
    mel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    edges_mel = torch.linspace(0, mel(rate / 2), n_mels + 2, dtype=torch.float64)
    edges = 700 * (10 ** (edges_mel / 2595) - 1)  # (n_mels + 2,) Hz
    bins = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (K,)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0).float()  # (K, n_mels)


def dct_matrix(n_mels: int, n_mfcc: int) -> Tensor:
    """(n_mels, n_mfcc) the orthonormal DCT-II, which turns log-mel energies into cepstral coefficients."""
    n = torch.arange(n_mels, dtype=torch.float64)
    k = torch.arange(n_mfcc, dtype=torch.float64)
    basis = torch.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2 / n_mels)
    basis[:, 0] /= math.sqrt(2)
    return basis.float()


@dataclass(frozen=True)
class FeatureSpec:
    """How audio becomes features: kind (logmel or mfcc), the rate audio is resampled to, window and hop in
    milliseconds, and the number of mel bands and cepstral coefficients."""

    kind: str = "logmel"
    sample_rate: int = 16000
    n_mels: int = 40
    n_mfcc: int = 13
    window_ms: float = 25.0
    hop_ms: float = 10.0

    @property
    def size(self) -> int:
        return self.n_mels if self.kind == "logmel" else self.n_mfcc

    def features(self, samples: np.ndarray, rate: int) -> np.ndarray:
        """(T, F) features of (N,) samples at `rate`: resampled, framed with a Hann window (centred frames, as
        librosa), the power spectrum through the mel filters, log(x + 1e-6), and for mfcc the DCT of that."""
        x = resample(torch.as_tensor(samples, dtype=torch.float32), rate, self.sample_rate)
        win = max(2, round(self.sample_rate * self.window_ms / 1000))
        hop = max(1, round(self.sample_rate * self.hop_ms / 1000))
        n_fft = 1 << (win - 1).bit_length()
        pad = n_fft // 2
        if x.numel() <= pad:  # reflect padding needs more samples than it adds
            x = torch.nn.functional.pad(x, (0, pad + 1 - x.numel()))
        spec = torch.stft(x, n_fft, hop, win, torch.hann_window(win), center=True, return_complex=True)  # (K, T)
        power = spec.abs().pow(2).T  # (T, K)
        logmel = torch.log(power @ mel_filterbank(self.n_mels, n_fft, self.sample_rate) + 1e-6)  # (T, n_mels)
        out = logmel if self.kind == "logmel" else logmel @ dct_matrix(self.n_mels, self.n_mfcc)
        return out.numpy()


def read_features(path: str | Path, spec: FeatureSpec, *, coefficients: int = 13) -> np.ndarray:
    """(T, F) features of one file: audio (.wav, .flac) through `spec`, a feature file (.mfc, .npy) as it is."""
    suffix = Path(path).suffix.lower()
    if suffix == ".mfc":
        return read_mfc(path, coefficients)
    if suffix == ".npy":
        return read_npy(path)
    if suffix not in AUDIO_SUFFIXES:
        raise InputError(f"{path}: unknown kind of file {suffix or '(no suffix)'}: expected audio "
                         f"({', '.join(AUDIO_SUFFIXES)}) or features ({', '.join(FEATURE_SUFFIXES)})")
    samples, rate = read_wav(path) if suffix == ".wav" else _read_soundfile(path, "FLAC is read by soundfile")
    return spec.features(samples, rate)


def join_audio(parts: list[tuple[str, int]], tail_ms: int) -> tuple[np.ndarray, int]:
    """One recording made of WAV files, each after its milliseconds of silence, then `tail_ms` of silence; at
    the first file's rate (the others resampled to it)."""
    pieces, rate = [], None
    for path, gap in parts:
        x, r = read_wav(path)
        if rate is None:
            rate = r
        elif r != rate:
            x = resample(torch.from_numpy(x), r, rate).numpy()
        pieces += [np.zeros(round(rate * gap / 1000), np.float32), x]
    pieces.append(np.zeros(round(rate * tail_ms / 1000), np.float32))
    return np.concatenate(pieces), rate


def normalise(frames: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> np.ndarray:
    """(T, F) features less their mean over the frames, over their deviation (per utterance), or with the given
    training statistics; a constant feature keeps deviation 1 rather than dividing by zero."""
    if mean is None:
        mean, std = frames.mean(0), frames.std(0)
    std = np.where(std > 1e-5, std, 1.0)
    return ((frames - mean) / std).astype(np.float32)


def spec_augment(frames: Tensor, generator: torch.Generator, *, freq_masks: int, freq_width: int, time_masks: int,
                 time_width: int) -> Tensor:
    """SpecAugment's masks (Park et al. 2019) on one utterance's (T, F) normalised features: `freq_masks` bands
    of up to `freq_width` features and `time_masks` spans of up to `time_width` frames (at most a fifth of the
    utterance, so short ones keep most of their speech) set to 0, the mean after normalisation."""
    out = frames.clone()
    T, F = out.shape
    draw = lambda high: int(torch.randint(0, max(1, high) + 1, (1,), generator=generator))  # noqa: E731
    for _ in range(freq_masks):
        width = draw(min(freq_width, F))
        start = draw(F - width)
        out[:, start:start + width] = 0
    for _ in range(time_masks):
        width = draw(min(time_width, T // 5))
        start = draw(T - width)
        out[start:start + width] = 0
    return out
