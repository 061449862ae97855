"""Linear probes: which layer of a trained stack holds a property of the text, read off by a linear classifier.

A unit-by-unit look (page.py) finds properties that one unit tracks; a property spread over many units is
missed. A probe (Alain & Bengio 2016; Hupkes et al. 2018 on bracket nesting; Belinkov & Glass 2019 for a
survey) freezes the model, reads a text through it once, and fits a multinomial logistic regression from each
layer's states h_t^(l) to a property of position t: the held-out accuracy per layer says how linearly
decodable the property is at that depth. The input embedding (or one-hot vector) is probed as layer 0: what it
decodes needs no recurrence at all, the baseline every layer is read against; the majority class's accuracy is
the floor.

Properties of each position t (labellers below; each returns one int label per token and the class names):

    char_class        letter, digit, space or other (of the token's last character)
    position_in_word  characters since the last non-letter, 0..5 and "5+" (0 on a non-letter)
    bracket_depth     open brackets, 0..3 and "3+" (on a synthetic nested language: nested_text)
    token_back_N      the token N positions back, among the text's most frequent tokens, else "other"

The held-out split is by contiguous blocks, not random positions: adjacent positions share most of what the
model has read (and position_in_word at t and t + 1 are nearly the same example), so a random split would put
near-copies of each test example into the training set and flatter every probe.

Dimension key: N positions (tokens), D features of one layer's states (K directions x H units), C classes,
L layers.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import torch
from torch import Tensor

from ..errors import InputError
from ..files import atomic_write, atomic_write_text
from ..run import BEST
from .features import CHAR_CLASSES, char_class, text_features

#: the properties probe_run fits by default
PROPERTIES = ("char_class", "position_in_word", "bracket_depth", "token_back_1", "token_back_3")
#: probe_run refuses texts shorter than this: too few held-out positions to tell layers apart
MIN_TOKENS = 100
#: the held-out split: the text cut into BLOCKS contiguous blocks, TRAIN_FRACTION of them to train on
BLOCKS, TRAIN_FRACTION = 10, 0.8


# ---------------------------------------------------------------------------------------------- labellers
def char_class_labels(tokens: list[str]) -> tuple[list[int], list[str]]:
    """features.char_class of each token's last character."""
    return [char_class(t[-1] if t else " ") for t in tokens], list(CHAR_CLASSES)


def _clipped(values: list[float], top: int) -> tuple[list[int], list[str]]:
    return [min(int(v), top) for v in values], [str(i) for i in range(top)] + [f"{top}+"]


def position_in_word_labels(tokens: list[str], max_position: int = 5) -> tuple[list[int], list[str]]:
    """Characters since the last non-letter (features.text_features), max_position and beyond as one class."""
    return _clipped(text_features(tokens)["position_in_word"], max_position)


def bracket_depth_labels(tokens: list[str], max_depth: int = 3) -> tuple[list[int], list[str]]:
    """Open brackets at each token (an opening bracket counts itself, a closing one still counts its pair;
    features.text_features), max_depth and beyond as one class."""
    return _clipped(text_features(tokens)["bracket_depth"], max_depth)


def token_back_labels(tokens: list[str], n: int, top: int = 20) -> tuple[list[int], list[str]]:
    """The token n positions back (n >= 1): one class per token among the text's `top` most frequent (ties by
    first appearance), one "other" class for the rest, and -1 (not scored) for the first n positions."""
    if n < 1:
        raise InputError(f"token_back_{n}: expected n >= 1 positions back")
    frequent = [tok for tok, _ in Counter(tokens).most_common(top)]  # (Counter keeps first-seen order in ties)
    index = {tok: i for i, tok in enumerate(frequent)}
    other = len(frequent)
    labels = [-1] * min(n, len(tokens)) + [index.get(tok, other) for tok in tokens[:-n]]
    return labels, frequent + ["other"]


def property_labels(name: str, tokens: list[str]) -> tuple[Tensor, list[str]]:
    """Labels (N,) int64 (-1: not scored) and class names of the property `name` (see PROPERTIES)."""
    back = re.fullmatch(r"token_back_([0-9]+)", name)  # (not \d: int() refuses some of its digits)
    if back and len(back.group(1)) > 9:  # int() refuses more than 4,300 digits; no text has a billion tokens
        raise InputError(f"{name[:20]}...: more positions back than a text has tokens: use token_back_N with a small N")
    if back:
        labels, classes = token_back_labels(tokens, int(back.group(1)))
    elif name in LABELLERS:
        labels, classes = LABELLERS[name](tokens)
    else:
        raise InputError(f"unknown probe property {name!r}: use {', '.join(LABELLERS)} or token_back_N (N >= 1)")
    return torch.tensor(labels, dtype=torch.long), classes


LABELLERS = {"char_class": char_class_labels, "position_in_word": position_in_word_labels,
             "bracket_depth": bracket_depth_labels}


def nested_text(length: int = 4000, *, max_depth: int = 4, letters: str = "abcd", seed: int = 0) -> str:
    """A random string of about `length` characters of a Dyck-like language: balanced "(" and ")" nested at most
    max_depth deep, with letters between them, each depth about equally common. Bracket depth on it is a
    property only a counter can know: nothing local tells depth 2 from depth 3."""
    if length < 1 or max_depth < 1 or not letters:
        raise InputError(f"nested text: expected length >= 1, max_depth >= 1 and some letters, got {length}, {max_depth} and {letters!r}")
    rng = random.Random(seed)
    out, depth = [], 0
    while len(out) + depth < length:
        r = rng.random()  # open and close alike likely, a letter where the bound forbids them: depth walks evenly
        if r < 0.3 and depth < max_depth:
            out.append("(")
            depth += 1
        elif 0.3 <= r < 0.6 and depth > 0:
            out.append(")")
            depth -= 1
        else:
            out.append(rng.choice(letters))
    return "".join(out) + ")" * depth


# -------------------------------------------------------------------------------------------------- probes
def held_out(n: int, train_fraction: float = TRAIN_FRACTION, blocks: int = BLOCKS, seed: int = 0) -> Tensor:
    """Which of n positions are held out (N,) bool: the positions are cut into `blocks` contiguous blocks and a
    seeded random choice of round(blocks * (1 - train_fraction)) of them (at least one) is held out."""
    if not 0 < train_fraction < 1:
        raise InputError(f"train_fraction: expected a number in (0, 1), got {train_fraction}")
    if blocks < 2 or n < blocks:
        raise InputError(f"blocks: expected 2 <= blocks <= positions ({n}), got {blocks}: give more text or fewer blocks")
    chosen = torch.randperm(blocks, generator=torch.Generator().manual_seed(seed))
    parts = torch.tensor_split(torch.arange(n), blocks)
    test = torch.zeros(n, dtype=torch.bool)
    for b in chosen[: held_out_blocks(train_fraction, blocks)].tolist():
        test[parts[b]] = True
    return test


def held_out_blocks(train_fraction: float = TRAIN_FRACTION, blocks: int = BLOCKS) -> int:
    return max(1, round(blocks * (1 - train_fraction)))


def fit_probe(features: Tensor, labels: Tensor, *, train_fraction: float = TRAIN_FRACTION, blocks: int = BLOCKS, seed: int = 0,
              l2: float = 1e-3, iterations: int = 100) -> dict:
    """Fit a multinomial logistic regression from features (N, D) to labels (N,) and score it on held-out
    contiguous blocks (held_out). Positions labelled -1 are left out of both sides.

    The inputs are standardised with the training side's mean and deviation; the weights W (D, C) and b (C)
    start at zero and L-BFGS minimises the mean cross-entropy plus l2/2 ||W||^2 for at most `iterations`
    iterations, in float64: the result depends on the seed (the split) only.

    Returns accuracy (held out), train_accuracy, majority (the held-out accuracy of always answering the
    training side's most common class), n_train and n_test.
    """
    if features.dim() != 2 or labels.shape != (features.shape[0],):
        raise InputError(f"features and labels: expected (N, D) and (N,), got {tuple(features.shape)} and {tuple(labels.shape)}")
    test = held_out(features.shape[0], train_fraction, blocks, seed)
    scored = labels >= 0
    train, test = scored & ~test, scored & test
    n_train, n_test = int(train.sum()), int(test.sum())
    if n_train == 0 or n_test == 0:
        raise InputError(f"too few labelled positions to fit and test a probe ({n_train} to train, {n_test} to test): give more text")
    x = features.detach().to("cpu", torch.float64)
    y = labels.to("cpu", torch.long)
    mean, std = x[train].mean(0), x[train].std(0, unbiased=False)
    x = (x - mean) / torch.where(std > 1e-8, std, torch.ones_like(std))  # a constant feature stays ~0
    classes = int(y.max()) + 1
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)  # (D, C)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)  # (C,)
    optimizer = torch.optim.LBFGS([w, b], lr=1, max_iter=iterations, history_size=10, line_search_fn="strong_wolfe")
    x_train, y_train = x[train], y[train]  # (n_train, D), (n_train,)

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(x_train @ w + b, y_train) + 0.5 * l2 * w.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (x @ w + b).argmax(1)  # (N,)
    majority = int(torch.bincount(y[train], minlength=classes).argmax())
    return {"accuracy": _fraction(predicted[test] == y[test]), "train_accuracy": _fraction(predicted[train] == y[train]),
            "majority": _fraction(y[test] == majority), "n_train": n_train, "n_test": n_test}


def _fraction(hits: Tensor) -> float:
    return round(float(hits.double().mean()), 6)


def probe_layers(states: list[Tensor], labels: dict[str, Tensor], **fit) -> dict[str, list[dict]]:
    """fit_probe for every layer's states (each (N, D_l)) and every property's labels (N,): per property, the
    result of each layer in order. The split is the same for every layer (it depends on N and the seed only)."""
    return {name: [fit_probe(s, y, **fit) for s in states] for name, y in labels.items()}


# ------------------------------------------------------------------------------------------------- the run
def format_probes(result: dict, out: str | Path) -> str:
    """What `stackrnn probe` prints: held-out accuracy per layer and property, beside the majority baseline."""
    names = list(result["properties"])
    width = max(12, *(len(n) for n in names))
    lines = [f"{'layer':<12}" + "".join(f"{n:>{width + 2}}" for n in names),
             f"{'(majority)':<12}" + "".join(f"{result['properties'][n]['majority']:>{width + 2}.3f}" for n in names)]
    lines += [f"{layer['name']:<12}" + "".join(f"{layer['accuracy'][n]:>{width + 2}.3f}" for n in names)
              for layer in result["layers"]]
    lines.append(f"held-out accuracy over {result['tokens']} tokens; plot and table in {out}")
    return "\n".join(lines)


def probe_run(run: str | Path, text: str, *, properties: tuple[str, ...] | list[str] = PROPERTIES,
              out: str | Path | None = None, weights: str = BEST, max_tokens: int = 20_000, seed: int = 0,
              plots: bool = True, device: str | torch.device = "cpu") -> dict:
    """Read `text` through the language model of `run` once (batch 1, from zero state) and fit a probe per
    (layer, property): layer 0 is the input embedding (or one-hot vector), layers 1..L the stack's h at every
    step (all directions concatenated; the cell's own state, before any residual connection adds the layer's
    input to what it passes up).

    Args:
        run: a language-model run directory.
        text: the text to read, at least MIN_TOKENS tokens, every one in the run's vocabulary (nested_text()
            makes one for bracket_depth).
        properties: names from PROPERTIES (and token_back_N for any N >= 1).
        out: a new (or empty) folder for probes.json (the returned dict) and probes.png (accuracy per layer,
            needs matplotlib); never a folder with files in it. None: write nothing.
        weights: the checkpoint file of the run (model.safetensors, the best; or last.safetensors).
        max_tokens: a longer text is cut to its first max_tokens tokens (with a warning).
        seed: picks the held-out blocks.

    Returns a dict: run, tokens, truncated, split (in words), properties ({name: classes, majority, n_train,
    n_test, best_layer}), layers (one entry per layer, 0 first: layer, name, size, accuracy and train_accuracy
    per property) and files (the paths written).
    """
    from ..train import open_run  # (train imports this package: import it late)
    from .page import check_new_folder, read_text

    if not isinstance(text, str) or not text:
        raise InputError("--text is empty: give the text to read through the model")
    properties = [properties] if isinstance(properties, str) else list(properties)
    if not properties:
        raise InputError("properties: expected at least one property to probe, got none")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < MIN_TOKENS:
        raise InputError(f"--max-tokens: expected an integer >= {MIN_TOKENS} (probes need that many positions), "
                         f"got {max_tokens!r}")
    if out is not None:
        check_new_folder(Path(out))  # before the (slower) reading and fitting
    if out is not None and plots:
        from ..plot import check_matplotlib

        check_matplotlib()
    _, task, model = open_run(run, weights, device, task="lm")
    tokens, truncated = read_text(task.tokenizer, text, max_tokens)
    if len(tokens) < MIN_TOKENS:
        raise InputError(f"--text has {len(tokens)} tokens, too few to fit and test probes: give at least {MIN_TOKENS}")
    labels = {name: property_labels(name, tokens) for name in dict.fromkeys(properties)}

    ids = torch.tensor([task.tokenizer.stoi[t] for t in tokens], device=device)[:, None]  # (T, 1)
    with torch.no_grad():
        states = [model.embed(ids)[:, 0]]  # (T, E or V)
        states += [trace.h[:, 0].flatten(1) for trace in model.states(ids)]  # (T, K * H) per layer
    fits = probe_layers(states, {name: y for name, (y, _) in labels.items()}, seed=seed)

    names = ["embedding"] + [f"layer {l + 1} ({spec.cell})" for l, spec in enumerate(model.rnn.specs)]
    result = {"run": str(Path(run)), "tokens": len(tokens), "truncated": truncated,
              "split": f"contiguous blocks: the text cut into {BLOCKS}, {held_out_blocks()} held out (seed {seed})",
              "properties": {name: {"classes": classes, "majority": fits[name][0]["majority"],
                                    "n_train": fits[name][0]["n_train"], "n_test": fits[name][0]["n_test"],
                                    "best_layer": max(range(len(states)), key=lambda l: (fits[name][l]["accuracy"], -l))}
                             for name, (_, classes) in labels.items()},
              "layers": [{"layer": l, "name": names[l], "size": int(s.shape[1]),
                          "accuracy": {name: fits[name][l]["accuracy"] for name in labels},
                          "train_accuracy": {name: fits[name][l]["train_accuracy"] for name in labels}}
                         for l, s in enumerate(states)],
              "files": []}
    if out is not None:
        _write_outputs(result, Path(out), plots)
    return result


def _write_outputs(result: dict, out: Path, plots: bool) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            result["files"].append(str(out / "probes.png"))
            plot_probes(result, out / "probes.png")
        result["files"].append(str(out / "probes.json"))  # last, so that it lists every file
        atomic_write_text(out / "probes.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    except OSError as e:
        raise InputError(f"cannot write into {out} ({e.strerror}): pick another --out folder") from None


def plot_probes(result: dict, path: Path) -> None:
    """Held-out accuracy by layer (0 = embedding), one colour per property, its majority baseline dashed."""
    from ..plot import _pyplot

    plt = _pyplot()
    layers = result["layers"]
    x = [entry["layer"] for entry in layers]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(x) + 3.5), 4.5), dpi=110)
    for i, (name, prop) in enumerate(result["properties"].items()):
        colour = f"C{i % 10}"
        ax.plot(x, [entry["accuracy"][name] for entry in layers], "-o", color=colour, label=name)
        ax.axhline(prop["majority"], color=colour, linestyle="--", linewidth=1, label=f"{name}: majority class")
    ax.set_xticks(x, ["embedding" if l == 0 else str(l) for l in x])
    ax.set_xlabel("layer (1 = bottom of the stack)")
    ax.set_ylabel("held-out accuracy of a linear probe")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"linear probes by layer ({result['tokens']} tokens; dashed: majority-class baseline)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
