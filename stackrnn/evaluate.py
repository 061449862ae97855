"""Scoring a run on a split: a language model by mean cross-entropy per token, perplexity and bits per character;
a classifier by accuracy, per-class precision, recall and F1, macro F1 and the confusion matrix; translations by
corpus BLEU (sacrebleu) and exact-match rate."""

from __future__ import annotations

import math

import torch

from .data.batching import SequentialBatches
from .errors import require
from .models.lm import LanguageModel


@torch.no_grad()
def evaluate_lm(model: LanguageModel, batches: SequentialBatches, device: torch.device | str = "cpu") -> float:
    """Mean cross-entropy (nats) per token over every window of `batches`, the state carried across windows so
    each token is scored with all the context before it in its stream."""
    was_training = model.training
    model.eval()
    total, count, state = 0.0, 0, None
    for x, y in batches:
        _, loss, state = model(x.to(device), y.to(device), state)  # (T, B) windows
        total += loss.item() * y.numel()
        count += y.numel()
    model.train(was_training)
    return total / count


def lm_metrics(loss: float, level: str) -> dict:
    """loss (nats per token) -> the figures users quote: perplexity, and bits per character for char models."""
    metrics = {"loss": loss, "perplexity": math.exp(min(loss, 50))}
    if level == "char":
        metrics["bits_per_char"] = loss / math.log(2)
    return metrics


def classification_metrics(predicted: torch.Tensor, gold: torch.Tensor, labels: list[str]) -> dict:
    """Accuracy, precision/recall/F1 per class, macro F1 and the confusion matrix of (N,) class ids.

    confusion_matrix[i][j] counts examples of true class i predicted as j. A class never predicted has
    precision 0 (and never present, recall 0), the convention of scikit-learn's zero_division=0. Macro F1
    averages over all of `labels`, the classes the run was trained on, including any absent from this split
    (scikit-learn's f1_score(average="macro", labels=labels) does the same).
    """
    c = len(labels)
    confusion = torch.bincount(gold.long() * c + predicted.long(), minlength=c * c).reshape(c, c)
    tp = confusion.diag().double()
    predicted_n, true_n = confusion.sum(0).double(), confusion.sum(1).double()
    precision = torch.where(predicted_n > 0, tp / predicted_n.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(true_n > 0, tp / true_n.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12), torch.zeros_like(tp))
    return {
        "examples": int(gold.numel()),
        "accuracy": float(tp.sum() / max(1, gold.numel())),
        "macro_f1": float(f1.mean()),
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                              "support": int(true_n[i])} for i, label in enumerate(labels)},
        "labels": list(labels),
        "confusion_matrix": confusion.tolist(),
    }


def format_metrics(metrics: dict, keys: tuple[str, ...] | None = None) -> str:
    """'split test  tokens 3034  loss 1.2345 ...': figures on one line, as `stackrnn eval` prints them."""
    return "  ".join(f"{k} {metrics[k]:.4f}" if isinstance(metrics[k], float) else f"{k} {metrics[k]}"
                     for k in (keys or metrics) if k in metrics)


def format_classification(metrics: dict) -> str:
    """`classification_metrics` (plus split and loss) as the table `stackrnn eval` prints."""
    labels = metrics["labels"]
    width = max(8, *(len(label) for label in labels))
    head = format_metrics(metrics, ("split", "examples", "loss", "accuracy", "macro_f1"))
    lines = [head, "", f"{'class':<{width}}  precision  recall     f1  support"]
    for label in labels:
        m = metrics["per_class"][label]
        lines.append(f"{label:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {m['support']:7d}")
    lines += ["", "confusion matrix (rows: true class, columns: predicted)",
              " " * width + "  " + "  ".join(f"{label:>{width}}" for label in labels)]
    for label, row in zip(labels, metrics["confusion_matrix"]):
        lines.append(f"{label:<{width}}  " + "  ".join(f"{n:>{width}d}" for n in row))
    return "\n".join(lines)


def format_translation(metrics: dict) -> str:
    """A translation run's `stackrnn eval` figures, its BLEU signature and its example translations."""
    lines = [format_metrics(metrics, ("split", "pairs", "beam", "bleu", "exact_match", "loss")),
             f"BLEU signature: {metrics['bleu_signature']}"]
    for e in metrics["examples"]:
        lines += ["", f"source:      {e['source']}", f"translation: {e['translation']}", f"reference:   {e['reference']}"]
    return "\n".join(lines)


def format_forecast(metrics: dict) -> str:
    """A forecasting run's `stackrnn eval` figures: the model's line, then a table of it beside every baseline."""
    head = format_metrics(metrics, ("split", "series", "horizon", "smape", "mase", "owa", "mae", "rmse", "quantile_loss",
                                    "crps", "coverage_80", "coverage_95"))
    rows = {"model": metrics, **metrics["baselines"]}
    width = max(len(name) for name in rows)
    lines = [head, "", f"{'':<{width}}  {'sMAPE':>8}  {'MASE':>7}  {'OWA':>6}  {'MAE':>10}  {'RMSE':>10}"]
    for name, m in rows.items():
        lines.append(f"{name:<{width}}  {m['smape']:8.3f}  {m['mase']:7.3f}  {m['owa']:6.3f}  {m['mae']:10.4g}  {m['rmse']:10.4g}")
    return "\n".join(lines)


def format_speech(metrics: dict) -> str:
    """A speech run's `stackrnn eval` figures, then its example transcripts beside their references."""
    lines = [f"{metrics['split']}: {metrics['utterances']} utterances, beam {metrics['beam']}: WER {metrics['wer']:.4f}  "
             f"CER {metrics['cer']:.4f}  accuracy {metrics['accuracy']:.4f}  loss {metrics['loss']:.4f}"]
    for e in metrics["examples"]:
        lines += ["", f"  reference:  {e['reference']}", f"  transcript: {e['transcript']}"]
    return "\n".join(lines)


def check_bleu_available() -> None:
    """Translation runs score BLEU with sacrebleu, an optional extra: fail before training, not after an epoch."""
    require("sacrebleu", message="translation runs score BLEU with sacrebleu: pip install 'stackrnn[translate]' "
                                 "(or pip install sacrebleu)")


def translation_metrics(hypotheses: list[str], references: list[str]) -> dict:
    """Corpus BLEU (sacrebleu's defaults: 13a tokenisation, 4-grams, one reference per sentence) on a 0-100
    scale, its signature (to quote with the score), and the fraction of translations equal to their reference."""
    check_bleu_available()
    from sacrebleu.metrics import BLEU

    # force: the sentences are already cut into words (d2l's normalisation spaces out punctuation), which
    # sacrebleu would otherwise warn about; its 13a tokeniser then leaves them as they are
    metric = BLEU(force=True)
    score = metric.corpus_score(hypotheses, [references])
    exact = sum(h == r for h, r in zip(hypotheses, references)) / max(1, len(references))
    return {"bleu": score.score, "exact_match": exact, "bleu_signature": str(metric.get_signature())}
