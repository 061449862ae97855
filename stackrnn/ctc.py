"""Decoding CTC outputs into token sequences, and the error rates transcripts are judged by.

Dimension key: T output frames of one utterance, V tokens + the blank (id 0).

Best path (greedy): the most probable token at every frame, then repeats merged and blanks dropped. Quick, and
on a confident model nearly as good as a search.

Prefix beam search (Hannun et al. 2014, "First-pass large vocabulary continuous speech recognition using
bi-directional recurrent DNNs"): CTC gives many frame paths to one transcript ("aa-a", "a-aa", ... are "aa" and
"a"), so the search keeps the `beam` most probable transcript prefixes, each with two probabilities summed over
all its paths so far, ending in a blank (p_b) or in its last token (p_nb): a repeat after a blank extends the
prefix, a repeat without one does not. Its answer is the prefix of the highest p_b + p_nb after the last frame.
A beam as wide as every prefix makes it exact: the most probable transcript (tested against enumeration).

With beam = 1 the search is best path by definition: a one-prefix search is not the same approximation (the
single prefix's probability is summed over paths, so it can keep a prefix the best path leaves, and the other
way round), and one-prefix searches are what users mean by greedy.

Error rates come from jiwer (an optional extra, `pip install 'stackrnn[speech]'`), the implementation speech
toolkits cite: word error rate over words, character error rate over characters.
"""

from __future__ import annotations

import math
from collections import defaultdict

from torch import Tensor

from .errors import require

_NEG = -math.inf


def best_path(log_probs: Tensor) -> tuple[list[int], list[int], list[float]]:
    """(tokens, the frame each starts at, each one's highest probability over its frames) of (T, V) log-probs."""
    best = log_probs.argmax(-1).tolist()  # (T,)
    peak = log_probs.max(-1).values.exp().tolist()
    tokens, frames, probs, last = [], [], [], 0
    for t, k in enumerate(best):
        if k != 0 and k != last:
            tokens.append(k)
            frames.append(t)
            probs.append(peak[t])
        elif k != 0 and k == last:
            probs[-1] = max(probs[-1], peak[t])
        last = k
    return tokens, frames, probs


def _add(a: float, b: float) -> float:
    """log(e^a + e^b)."""
    if a == _NEG:
        return b
    if b == _NEG:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def prefix_beam_search(log_probs: Tensor, beam: int) -> tuple[list[int], float]:
    """(tokens, log-probability summed over all its paths) of the best prefix that a search of width `beam`
    finds in (T, V) log-probs (see the module docstring)."""
    if beam < 1:
        raise ValueError(f"beam: expected an integer >= 1, got {beam}")
    lp = log_probs.double().tolist()
    V = len(lp[0]) if lp else 0
    prefixes: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, _NEG)}  # prefix -> (log p_b, log p_nb)
    for frame in lp:
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [_NEG, _NEG])
        for prefix, (pb, pnb) in prefixes.items():
            total = _add(pb, pnb)
            stay = nxt[prefix]
            stay[0] = _add(stay[0], total + frame[0])  # a blank: the same prefix, now ending in a blank
            last = prefix[-1] if prefix else None
            if last is not None:  # the last token again without a blank: still the same prefix
                stay[1] = _add(stay[1], pnb + frame[last])
            for k in range(1, V):
                ext = nxt[prefix + (k,)]
                # a repeated token only starts a new one after a blank
                ext[1] = _add(ext[1], (pb if k == last else total) + frame[k])
        ranked = sorted(nxt.items(), key=lambda kv: _add(*kv[1]), reverse=True)[:beam]
        prefixes = {p: (v[0], v[1]) for p, v in ranked}
    best, (pb, pnb) = max(prefixes.items(), key=lambda kv: _add(*kv[1]))
    return list(best), _add(pb, pnb)


def decode(log_probs: Tensor, beam: int = 1) -> list[int]:
    """The tokens of (T, V) log-probs: best path for beam 1, prefix beam search otherwise."""
    return best_path(log_probs)[0] if beam == 1 else prefix_beam_search(log_probs, beam)[0]


def check_jiwer() -> None:
    """Speech runs score WER and CER with jiwer, an optional extra: fail before training, not after an epoch."""
    require("jiwer", message="speech runs score word and character error rates with jiwer: pip install "
                             "'stackrnn[speech]' (or pip install jiwer)")


def error_rates(references: list[str], hypotheses: list[str]) -> dict:
    """{"wer", "cer", "accuracy"}: word and character error rates over the whole set (jiwer; errors over
    reference words or characters, so they can pass 1), and the fraction of transcripts exactly right."""
    check_jiwer()
    import jiwer

    words = jiwer.process_words(references, hypotheses)  # an empty transcript: every reference word deleted
    chars = jiwer.process_characters(references, hypotheses)
    exact = sum(r == h for r, h in zip(references, hypotheses)) / max(1, len(references))
    return {"wer": words.wer, "cer": chars.cer, "accuracy": exact}
