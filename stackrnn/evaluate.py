"""Scoring a language model on a split: mean cross-entropy per token, perplexity, bits per character."""

from __future__ import annotations

import math

import torch

from .data.batching import SequentialBatches
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
