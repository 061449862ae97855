"""The speech model and its pieces (models/speech.py, ctc.py, data/audio.py): CTC learns a synthetic task;
padding never changes an utterance's outputs (front end, pyramid, every path of the stack); prefix beam search
is exact when wide, scores what CTC scores, and beam 1 is best path; the Sphinx .mfc reader round-trips; the
WAV reader, resampling and mel filters do what they say. Tiny, CPU, one thread, seconds."""

import math
import struct
import wave
from itertools import product

import numpy as np
import pytest
import torch

from stackrnn import LSTM, GRU
from stackrnn.ctc import best_path, decode, prefix_beam_search
from stackrnn.data.audio import FeatureSpec, mel_filterbank, read_mfc, read_wav, resample, write_mfc
from stackrnn.errors import InputError
from stackrnn.models.speech import SpeechRecognizer, join_frames

from .conftest import SHARED


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: fastest on one thread


# -- a synthetic task: symbols rendered as feature patterns --------------------------------------------------
SYMBOLS, F = 3, 6


def render(tokens: list[int], rng: np.random.Generator) -> np.ndarray:
    """(T, F) frames: each symbol k (1..3) as 3 to 5 frames with feature k - 1 on (plus noise), separated by 2 to
    4 frames of silence; a repeated symbol is two such bursts, as CTC needs."""
    frames = [np.zeros((rng.integers(1, 4), F))]
    for k in tokens:
        burst = np.zeros((rng.integers(3, 6), F))
        burst[:, k - 1] = 1.0
        burst[:, SYMBOLS + (k - 1)] = np.linspace(0, 1, len(burst))  # a rising edge: where the symbol's frames are
        frames += [burst, np.zeros((rng.integers(2, 5), F))]
    x = np.concatenate(frames)
    return (x + rng.normal(0, 0.1, x.shape)).astype(np.float32)


def synthetic(n: int, seed: int) -> tuple[list[torch.Tensor], list[list[int]]]:
    rng = np.random.default_rng(seed)
    targets = [rng.integers(1, SYMBOLS + 1, rng.integers(1, 5)).tolist() for _ in range(n)]
    return [torch.from_numpy(render(t, rng)) for t in targets], targets


def batch(features, targets):
    x = torch.nn.utils.rnn.pad_sequence(features)  # (T, B, F)
    lengths = torch.tensor([len(f) for f in features])
    y = torch.nn.utils.rnn.pad_sequence([torch.tensor(t) for t in targets], batch_first=True)
    return x, lengths, y, torch.tensor([len(t) for t in targets])


@pytest.mark.parametrize("frontend, pyramid", [("none", 0), ("none", 2), ("conv", 0)])
def test_ctc_learns_the_synthetic_task(frontend, pyramid):
    """A 2-layer bidirectional LSTM learns to read symbols rendered as feature patterns: >= 95% of held-out
    sequences exactly right, with best path and with beam search, also with a pyramid or Deep Speech 2's
    convolutions (each half the frames)."""
    torch.manual_seed(0)
    model = SpeechRecognizer(F, SYMBOLS + 1, [LSTM(24, bidirectional=True)] * 2, frontend=frontend, stack_frames=2,
                             conv_channels=8, pyramid=pyramid)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    train_x, train_y = synthetic(320, seed=1)
    for epoch in range(14):
        for i in range(0, 320, 32):
            _, loss = model(*batch(train_x[i:i + 32], train_y[i:i + 32]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    test_x, test_y = synthetic(100, seed=2)
    x, lengths, _, _ = batch(test_x, test_y)
    with torch.no_grad():
        log_probs, _ = model(x, lengths)
    frames = model.output_lengths(lengths)
    for beam in (1, 4):
        right = sum(decode(log_probs[:frames[b], b], beam) == test_y[b] for b in range(100))
        assert right >= 95, (beam, right, loss.item())


def test_the_conv_front_end_keeps_padding_out_and_halves_the_frame_rate():
    """Deep Speech 2's convolutions reach 5 frames either way: an utterance reads the same alone and beside longer
    ones, and n frames become ceil(n / 2) output frames."""
    torch.manual_seed(0)
    model = SpeechRecognizer(13, 5, [LSTM(8, bidirectional=True)] * 2, frontend="conv", conv_channels=4).eval()
    assert model.conv.output_size == 4 * 4  # 13 -> 7 -> 4 frequencies
    feats = [torch.randn(n, 13) for n in (30, 9, 1, 17)]
    x, lengths = torch.nn.utils.rnn.pad_sequence(feats), torch.tensor([len(f) for f in feats])
    with torch.no_grad():
        together, _ = model(x, lengths)
        frames = model.output_lengths(lengths)
        assert frames.tolist() == [15, 5, 1, 9] and together.shape[0] == 15
        for b, f in enumerate(feats):
            alone, _ = model(f.unsqueeze(1), torch.tensor([len(f)]))
            torch.testing.assert_close(together[:frames[b], b], alone[:, 0], atol=1e-5, rtol=1e-5)
    assert not model.streamable


@pytest.mark.parametrize("fused", [True, False])
def test_an_utterance_gets_the_same_outputs_alone_and_in_a_padded_batch(fused):
    """Odd lengths through frame stacking (3) and a pyramid from layer 2 (two halvings), with a GRU and a
    zoneout layer (the engine or the reference loop) beside the fused LSTM: padding changes nothing."""
    torch.manual_seed(0)
    layers = [LSTM(8, bidirectional=True), GRU(8, bidirectional=True), LSTM(8, bidirectional=True, zoneout=0.1)]
    model = SpeechRecognizer(F, 5, layers, frontend="stack", stack_frames=3, pyramid=2).eval()
    for block in model.blocks:
        block.fused = fused
    feats = [torch.randn(n, F) for n in (23, 7, 16, 1)]
    x, lengths = torch.nn.utils.rnn.pad_sequence(feats), torch.tensor([len(f) for f in feats])
    with torch.no_grad():
        together, _ = model(x, lengths)
        frames = model.output_lengths(lengths)
        assert frames.tolist() == [2, 1, 2, 1]  # ceil(ceil(ceil(n / 3) / 2) / 2)
        for b, f in enumerate(feats):
            alone, _ = model(f.unsqueeze(1), torch.tensor([len(f)]))
            assert alone.shape[0] == frames[b]
            torch.testing.assert_close(together[:frames[b], b], alone[:, 0], atol=1e-5, rtol=1e-5)


def test_join_frames_puts_neighbours_side_by_side_and_pads_with_zeros():
    x = torch.arange(5.0).view(5, 1, 1)  # (T, B, F)
    assert join_frames(x, 2).squeeze(1).tolist() == [[0, 1], [2, 3], [4, 0]]


def test_the_pyramid_and_stack_options_are_checked():
    with pytest.raises(ValueError, match="pyramid"):
        SpeechRecognizer(F, 4, [LSTM(8)] * 2, pyramid=3)
    with pytest.raises(InputError, match="too few for a residual"):
        SpeechRecognizer(F, 4, [LSTM(8)] * 3, pyramid=2, residual=True)
    model = SpeechRecognizer(F, 4, [LSTM(8)] * 4, pyramid=4, residual=True, dropout=0.2, variational=True)
    assert [b.num_layers for b in model.blocks] == [3, 1] and model.blocks[0].residual_from == 2


def test_the_loss_is_torch_ctc_with_blank_0_and_impossible_alignments_count_zero():
    torch.manual_seed(0)
    model = SpeechRecognizer(F, 4, [LSTM(8, bidirectional=True)])
    x = torch.randn(6, 2, F)
    # the second utterance's "1 1" needs 3 frames (1, blank, 1) but has 2: infinitely unlikely, counted as 0
    lengths, targets, target_lengths = torch.tensor([6, 2]), torch.tensor([[1, 2], [1, 1]]), torch.tensor([2, 2])
    log_probs, loss = model(x, lengths, targets, target_lengths)
    one = torch.nn.functional.ctc_loss(log_probs[:, :1], targets[:1], lengths[:1], target_lengths[:1], blank=0)
    torch.testing.assert_close(loss, one / 2)  # the mean over the batch of each one's loss over its length


# -- decoding -------------------------------------------------------------------------------------------------
def collapse(path) -> tuple[int, ...]:
    out, last = [], 0
    for k in path:
        if k != 0 and k != last:
            out.append(k)
        last = k
    return tuple(out)


@pytest.mark.parametrize("seed", range(5))
def test_a_wide_prefix_beam_search_finds_the_most_probable_transcript(seed):
    """Against enumeration: every frame path of 5 frames over a blank and 2 tokens (3^5 paths), their
    probabilities summed per transcript; a beam as wide as every prefix returns the best and its probability."""
    torch.manual_seed(seed)
    lp = torch.randn(5, 3).mul(2).log_softmax(-1).double()
    totals: dict = {}
    for path in product(range(3), repeat=5):
        totals[collapse(path)] = totals.get(collapse(path), 0.0) + math.exp(sum(lp[t, k].item() for t, k in enumerate(path)))
    best = max(totals, key=totals.get)
    tokens, score = prefix_beam_search(lp, beam=100)
    assert tuple(tokens) == best
    assert math.isclose(math.exp(score), totals[best], rel_tol=1e-9)


@pytest.mark.parametrize("beam", [2, 3, 8])
def test_beam_search_scores_its_transcript_as_ctc_does_at_most(beam):
    """The probability the search gives its answer is a sum over some of its transcript's paths: at most CTC's
    sum over all of them, and close to it (the enumeration test above shows it equal when the beam is wide)."""
    torch.manual_seed(beam)
    lp = torch.randn(12, 4).mul(3).log_softmax(-1).double()
    tokens, score = prefix_beam_search(lp, beam)
    if tokens:
        nll = torch.nn.functional.ctc_loss(lp.unsqueeze(1), torch.tensor([tokens]), torch.tensor([12]),
                                           torch.tensor([len(tokens)]), reduction="sum")
        assert score <= -nll.item() + 1e-9  # at most every path (a narrow beam may have dropped some)
        assert score >= -nll.item() - 2.0  # and most of them: the paths a beam drops are the unlikely ones


def test_beam_1_is_best_path_and_best_path_merges_repeats_and_drops_blanks():
    lp = torch.full((7, 3), -5.0)
    for t, k in enumerate([1, 1, 0, 1, 2, 2, 0]):
        lp[t, k] = 0.0
    lp = lp.log_softmax(-1)
    tokens, frames, probs = best_path(lp)
    assert tokens == [1, 1, 2] and frames == [0, 3, 4] and all(0.98 < p <= 1 for p in probs)
    assert decode(lp, 1) == tokens == prefix_beam_search(lp, 4)[0]
    torch.manual_seed(0)
    for _ in range(20):  # beam 1 means best path, whatever the frames
        lp = torch.randn(9, 4).log_softmax(-1)
        assert decode(lp, 1) == best_path(lp)[0]
    with pytest.raises(ValueError, match="beam"):
        prefix_beam_search(lp, 0)


# -- features -------------------------------------------------------------------------------------------------
def test_the_mfc_reader_round_trips_and_refuses_a_wrong_count(tmp_path):
    frames = np.random.default_rng(0).normal(size=(17, 13)).astype(np.float32)
    path = tmp_path / "a.mfc"
    write_mfc(path, frames)
    assert path.read_bytes()[:4] == struct.pack(">i", 17 * 13)
    np.testing.assert_array_equal(read_mfc(path), frames)
    path.write_bytes(struct.pack(">i", 17 * 13 + 5) + path.read_bytes()[4:])
    with pytest.raises(InputError, match=r"a.mfc: the header counts 226 values but the file holds 221"):
        read_mfc(path)
    path.write_bytes(struct.pack(">i", 14) + np.zeros(14, ">f4").tobytes())
    with pytest.raises(InputError, match="not whole frames of 13"):
        read_mfc(path)


@pytest.mark.skipif(not (SHARED / "an4_mfcc").is_dir(), reason="../shared/data/an4_mfcc is absent")
def test_an_an4_file_reads_as_13_cepstra_per_frame_and_writes_back_byte_for_byte(tmp_path):
    src = SHARED / "an4_mfcc" / "feat" / "an4_clstk" / "fash" / "an251-fash-b.mfc"
    frames = read_mfc(src)
    assert frames.shape[1] == 13 and 50 < frames.shape[0] < 1000
    write_mfc(tmp_path / "b.mfc", frames)
    assert (tmp_path / "b.mfc").read_bytes() == src.read_bytes()


def write_wav(path, samples: np.ndarray, rate: int, width: int = 2) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        if width == 2:
            w.writeframes((samples * 32767).astype("<i2").tobytes())
        else:
            w.writeframes((samples * 127 + 128).astype(np.uint8).tobytes())


def tone(freq: float, rate: int, seconds: float = 0.5) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)


@pytest.mark.parametrize("width", [1, 2])
def test_wav_files_read_as_floats_at_their_rate(tmp_path, width):
    write_wav(tmp_path / "t.wav", tone(440, 8000), 8000, width)
    x, rate = read_wav(tmp_path / "t.wav")
    assert rate == 8000 and x.shape == (4000,)
    np.testing.assert_allclose(x, tone(440, 8000), atol=0.02 if width == 1 else 1e-4)


def test_resampling_keeps_a_tone_and_removes_what_the_new_rate_cannot_hold():
    x = torch.from_numpy(tone(1000, 16000) + tone(6000, 16000)).float()
    y = resample(x, 16000, 8000)  # 6 kHz is above the new Nyquist frequency (4 kHz): it must not fold back to 2 kHz
    assert y.shape == (4000,)
    spectrum = torch.fft.rfft(y).abs()
    freqs = torch.fft.rfftfreq(4000, 1 / 8000)
    assert abs(freqs[spectrum.argmax()].item() - 1000) < 5
    assert spectrum[(freqs - 2000).abs() < 50].max() < 0.01 * spectrum.max()


def test_a_tone_lights_the_mel_band_around_its_frequency():
    fb = mel_filterbank(40, 512, 16000)  # (257, 40)
    assert fb.shape == (257, 40) and torch.all(fb >= 0) and abs(fb.max().item() - 1) < 0.05
    spec = FeatureSpec("logmel", 16000, 40)
    feats = spec.features(tone(1000, 16000), 16000)  # (T, 40)
    assert feats.shape == (51, 40)  # centred frames every 10 ms over 0.5 s
    peak = int(feats[10:40].mean(0).argmax())
    centres = (fb * torch.linspace(0, 8000, 257)[:, None]).sum(0) / fb.sum(0)
    assert abs(centres[peak].item() - 1000) < 120
    mfcc = FeatureSpec("mfcc", 16000, 40, 13).features(tone(1000, 8000), 8000)  # resampled from 8 kHz
    assert mfcc.shape == (51, 13) and np.isfinite(mfcc).all()


# -- streaming ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("frontend, pyramid", [("none", 0), ("stack", 2)])
def test_streaming_chunk_by_chunk_equals_the_whole_utterance(frontend, pyramid):
    """A unidirectional stack (a fused LSTM, a GRU, a zoneout LSTM through the engine) reads an utterance in
    chunks of a multiple of the frames one output frame stands for, its state carried: the outputs are the
    whole utterance's, for any chunk size and an odd last chunk."""
    torch.manual_seed(0)
    model = SpeechRecognizer(F, 5, [LSTM(8), GRU(8), LSTM(8, zoneout=0.1)], frontend=frontend, stack_frames=3,
                             pyramid=pyramid).eval()
    x = torch.randn(41, 1, F)
    with torch.no_grad():
        whole, _ = model(x, torch.tensor([41]))
        for chunks in (1, 2, 5):
            size = chunks * model.chunk_frames
            state, parts = None, []
            for start in range(0, 41, size):
                out, state = model.stream(x[start:start + size], state)
                parts.append(out)
            torch.testing.assert_close(torch.cat(parts), whole, atol=1e-5, rtol=1e-5)


def test_a_bidirectional_model_refuses_to_stream():
    model = SpeechRecognizer(F, 5, [LSTM(8, bidirectional=True)])
    assert not model.streamable
    with pytest.raises(ValueError, match="bidirectional layer or the conv front end reads the future"):
        model.stream(torch.randn(4, 1, F))


def test_tokens_read_characters_or_symbols_and_transcripts_trim_spaces():
    from stackrnn.data.speech import Tokens

    chars = Tokens.fit(["GO UP", "NO"])
    assert chars.symbols == [" ", "G", "N", "O", "P", "U"] and len(chars) == 7  # the blank is id 0
    ids = chars.encode("GO  UP", "here")  # two spaces read as one
    assert ids == [2, 4, 1, 6, 5] and chars.decode(ids) == "GO UP"
    assert chars.decode([1, 2, 4, 1, 1, 6, 1]) == "GO U"  # spaces at the ends and twice in a row
    digits = Tokens([str(d) for d in range(10)])
    assert digits.encode("4 2", "here") == [5, 3] and digits.decode([5, 3]) == "42"  # no space symbol: none kept
    words = Tokens(["sil", "ah", "b"])
    assert words.encode("ah b sil", "here") == [2, 3, 1] and words.decode([2, 3]) == "ah b"
    with pytest.raises(InputError, match=r"here: transcript 'GOX' has 'X', which is not among the run's symbols"):
        chars.encode("GOX", "here")
