"""Text generation: incremental decoding that carries the state, with greedy, temperature, top-k and top-p sampling.

Dimension key: B prompts, T prompt length, V vocabulary, G gate width of the first layer.

The prompts run once through the stack as one padded batch (the fused kernel, lengths marking each prompt's
end); after that each new token costs one cell step per layer, never a re-run of the prefix. At batch sizes
this small the fused kernel's per-call set-up costs more than the step itself, so decoding steps the cells
directly (the same `recur` the reference loop uses), with the first layer's input projection looked up from a
(V, G) table instead of computed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .data.tokenizers import Tokenizer
from .errors import InputError
from .models.lm import LanguageModel
from .regularizers import zoneout


class IncrementalDecoder:
    """Steps a LanguageModel one token at a time, carrying every layer's state.

    Usage: logits, state = dec.prime(prompt_ids, lengths); then logits, state = dec.step(tokens, state).
    States here are per layer in cell form: h (B, H), or (h, c) for an LSTM.
    """

    def __init__(self, model: LanguageModel) -> None:
        if any(spec.bidirectional for spec in model.rnn.specs):
            raise ValueError("model: a bidirectional layer sees the future, so it cannot generate text")
        self.model = model
        self.cells = [layer.cell for layer in model.rnn.layers]
        with torch.no_grad():
            inputs = model.embedding.weight if model.embedding is not None else torch.eye(
                model.vocab_size, dtype=model.decoder.weight.dtype, device=model.decoder.weight.device)
            self.table = self.cells[0].project_input(inputs)  # (V, G): x W_ih^T + b_ih for every token x
        # in eval mode the dropouts are the identity: decode with the linear layers alone, sparing the
        # dispatches per token
        projection, decoder = model.projection, model.decoder
        if projection is None:
            self.decode = lambda h: nn.functional.linear(h, decoder.weight, decoder.bias)
        else:
            self.decode = lambda h: nn.functional.linear(nn.functional.linear(h, projection.weight, projection.bias),
                                                         decoder.weight, decoder.bias)

    @torch.inference_mode()
    def prime(self, prompts: Tensor, lengths: Tensor) -> tuple[Tensor, list]:
        """prompts (T, B) right-padded ids, lengths (B,) -> logits after each prompt's last token (B, V), state."""
        logits, _, state = self.model(prompts, state=None, lengths=lengths)  # (T, B, V)
        last = logits[lengths.to(logits.device) - 1, torch.arange(prompts.shape[1], device=logits.device)]  # (B, V)
        # the stack's state is (K=1, B, H) per layer; the cells want (B, H)
        return last, [tuple(t[0] for t in s) if isinstance(s, tuple) else s[0] for s in state]

    @torch.inference_mode()
    def step(self, tokens: Tensor, state: list) -> tuple[Tensor, list]:
        """tokens (B,) -> logits (B, V) for the token after them, and the new state."""
        gi = self.table.index_select(0, tokens)  # (B, G)
        rnn, new_state, x = self.model.rnn, [], None
        for l, cell in enumerate(self.cells):
            s = cell.recur(gi, state[l])
            zh, zc = rnn.specs[l].zoneout_rates
            if zh or zc:  # eval-mode zoneout, as the stack's loop does it: the expectation
                s = (zoneout(s[0], state[l][0], zh), zoneout(s[1], state[l][1], zc)) \
                    if isinstance(s, tuple) else zoneout(s, state[l], zh)
            new_state.append(s)
            h = cell.output(s)  # (B, H)
            if rnn.is_residual(l):  # never layer 0, so x is the layer below's output
                h = rnn.connect(l, x, h)
            x = h
            if l + 1 < len(self.cells):
                gi = self.cells[l + 1].project_input(h)
        return self.decode(h), new_state


def sample(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
           generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row of logits (B, V) -> (B,). temperature 0 is greedy (argmax)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    if temperature != 1.0:
        logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens before it already reach top_p; the most likely token always stays
        drop = cumulative - sorted_logits.softmax(dim=-1) >= top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    # inverse-CDF sampling: one uniform draw per row located in the cumulative distribution. The same draw as
    # torch.multinomial, at a fraction of its per-call cost, which dominates decoding at batch 1.
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]
    # right: a draw of exactly 0 must not land on a leading token of probability 0
    return torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1).squeeze(-1)


def check_sampling(length: int, temperature: float, top_k: int, top_p: float) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise InputError(f"--length: expected an integer >= 1, got {length!r}")
    if not all(math.isfinite(v) for v in (temperature, top_p)):
        raise InputError(f"--temperature and --top-p: expected finite numbers, got {temperature} and {top_p}")
    if temperature < 0:
        raise InputError(f"--temperature: expected a number >= 0 (0 is greedy), got {temperature}")
    if top_k < 0:
        raise InputError(f"--top-k: expected an integer >= 0 (0 keeps every token), got {top_k}")
    if not 0 < top_p <= 1:
        raise InputError(f"--top-p: expected a number in (0, 1], got {top_p}")


def encode_prompts(tokenizer: Tokenizer, prefixes: list[str]) -> tuple[Tensor, Tensor]:
    """Prompts -> right-padded ids (T, B) and lengths (B,); a prompt the vocabulary cannot spell is an InputError."""
    if not prefixes:
        raise InputError("--prefix: give at least one prefix to continue")
    encoded = []
    for prefix in prefixes:
        unknown = tokenizer.unknown_tokens(prefix)
        if unknown:
            shown = ", ".join(repr(t) for t in unknown[:10])
            raise InputError(f"--prefix {prefix!r}: {len(unknown)} token(s) not in the model's vocabulary ({shown}): use only tokens seen in training")
        ids = tokenizer.encode(prefix)
        if not ids:
            raise InputError(f"--prefix {prefix!r}: is empty after tokenization: give at least one token")
        encoded.append(ids)
    lengths = torch.tensor([len(ids) for ids in encoded])
    prompts = torch.zeros(int(lengths.max()), len(encoded), dtype=torch.long)  # (T, B), right-padded
    for b, ids in enumerate(encoded):
        prompts[: len(ids), b] = torch.tensor(ids)
    return prompts, lengths


@torch.inference_mode()
def generate(model: LanguageModel, tokenizer: Tokenizer, prefixes: list[str], length: int = 200, *,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int | None = None) -> list[str]:
    """Continue each prefix by `length` tokens; returns prefix + continuation for each. All prefixes run as one
    batch. The same seed gives the same text. temperature 0 is greedy decoding."""
    check_sampling(length, temperature, top_k, top_p)
    prompts, lengths = encode_prompts(tokenizer, prefixes)
    device = model.decoder.weight.device
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()  # fresh entropy for this generator only; torch's global RNG is left alone
    was_training = model.training
    model.eval()
    try:
        decoder = IncrementalDecoder(model)
        logits, state = decoder.prime(prompts.to(device), lengths)
        new: list[Tensor] = []
        for t in range(length):
            tokens = sample(logits, temperature, top_k, top_p, generator)  # (B,)
            new.append(tokens)
            if t + 1 < length:
                logits, state = decoder.step(tokens, state)
    finally:
        model.train(was_training)
    out = torch.stack(new).cpu()  # (length, B)
    joiner = "" if tokenizer.level == "char" else " "
    return [prefix + joiner + tokenizer.decode(out[:, b].tolist()) for b, prefix in enumerate(prefixes)]
