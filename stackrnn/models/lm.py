"""LanguageModel: tokens -> embedding (or one-hot) -> StackedRNN -> dropout -> linear decoder -> next-token logits.

Dimension key: T time, B batch, V vocabulary, E embedding size, H top layer's output size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import nested, option
from ..errors import InputError
from ..layers import LayerSpec, LayerState
from ..regularizers import check_probability, embedding_dropout, sequence_dropout
from ..stack import StackedRNN
from .stack_config import StackConfig


@dataclass
class ModelConfig:
    """[model]: the language model's architecture."""

    stack: StackConfig = nested(StackConfig, "the recurrent stack ([model.stack])", hidden=("bidirectional",))
    embedding_size: int = option(0, "embedding size; 0 feeds one-hot vectors (d2l's character models)",
                                 within="[0, inf)")
    output_dropout: float = option(0.0, "dropout on the top layer's output, before the decoder", within="[0, 1)")
    input_dropout: float = option(0.0, "dropout on the embeddings, before the first layer (AWD-LSTM's dropouti)",
                                  within="[0, 1)")
    embedding_dropout: float = option(0.0, "drop whole words from the embedding matrix (AWD-LSTM's dropoute)",
                                      within="[0, 1)")
    ar: float = option(0.0, "activation regularisation: ar * mean(dropped top output^2) added to the training loss (AWD: 2)",
                       within="[0, inf)")
    tar: float = option(0.0, "temporal activation regularisation: tar * mean((h_t - h_{t-1})^2) of the top output (AWD: 1)",
                        within="[0, inf)")
    tie_weights: bool = option(False, "share the embedding matrix with the decoder (needs embedding_size >= 1)")
    init_range: float | None = option(None, "draw every weight from U(-r, r) (Zaremba et al. use 0.1); default: torch's init",
                                      within="(0, inf)")

    def layer_specs(self) -> list[LayerSpec]:
        """The stack's layers; a language model reads left to right, so no layer may be bidirectional."""
        return self.stack.specs("model.stack", causal=True)

    def validate(self) -> None:
        if self.tie_weights and self.embedding_size == 0:
            raise InputError("model.tie_weights: needs an embedding to tie to; set model.embedding_size >= 1")
        self.stack.check(self.embedding_size or 1, "model.stack", causal=True)


class LanguageModel(nn.Module):
    """A recurrent language model over a stack of recurrent layers.

    Args:
        vocab_size: V.
        layers: the stack's layer specifications, bottom first.
        embedding_size: E; 0 feeds one-hot vectors of size V instead (d2l's character models).
        output_dropout: dropout on the top layer's output, before the decoder (Zaremba et al.).
        input_dropout: dropout on the embeddings before the first layer (AWD-LSTM's dropouti).
        embedding_dropout: drop whole words from the embedding matrix for a forward pass (AWD-LSTM's dropoute).
        ar, tar: AWD-LSTM's activation regularisation of the top output; see `penalty()`.
        tie_weights: share the embedding matrix with the decoder (Press & Wolf; Inan et al.). When the top
            layer's size differs from E, a linear projection H -> E comes before the decoder.
        init_range: when set, every weight is drawn from U(-r, r) (Zaremba et al.: 0.1); else torch's defaults.
        **stack_options: StackedRNN's own keywords (dropout between layers, variational, residual, highway); with
            variational, the input and output dropout share one mask over all steps of a sequence too.

    Inputs: inputs, targets=None, state=None, lengths=None
        inputs: (T, B) token ids.
        targets: (T, B) next-token ids, or None.
        state: the stack's state from the previous window (carried for truncated BPTT), or None for zeros.
        lengths: (B,) valid steps of right-padded inputs, or None.

    Outputs: logits, loss, state
        logits: (T, B, V).
        loss: mean cross-entropy per target token (a scalar), or None without targets. It is what perplexity is
            computed from; the training objective adds `penalty()`.
        state: the stack's final state.
    """

    def __init__(
        self,
        vocab_size: int,
        layers: list[LayerSpec],
        embedding_size: int = 0,
        output_dropout: float = 0.0,
        tie_weights: bool = False,
        init_range: float | None = None,
        *,
        input_dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        ar: float = 0.0,
        tar: float = 0.0,
        **stack_options,
    ) -> None:
        super().__init__()
        if tie_weights and embedding_size == 0:
            raise ValueError("tie_weights: expected an embedding (embedding_size >= 1) to tie to, got embedding_size=0 (one-hot input)")
        self.output_p = check_probability("output_dropout", output_dropout)
        self.input_p = check_probability("input_dropout", input_dropout)
        self.embedding_p = check_probability("embedding_dropout", embedding_dropout)
        self.ar, self.tar = ar, tar
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.embedding = nn.Embedding(vocab_size, embedding_size) if embedding_size else None
        self.rnn = StackedRNN(embedding_size or vocab_size, layers=layers, **stack_options)
        self._penalty: Tensor | None = None
        top = self.rnn.output_size
        # weight tying needs the decoder's input to have the embedding's size
        self.projection = nn.Linear(top, embedding_size) if tie_weights and top != embedding_size else None
        self.decoder = nn.Linear(embedding_size if tie_weights else top, vocab_size)
        if init_range is not None:
            for p in self.parameters():
                nn.init.uniform_(p, -init_range, init_range)
        if tie_weights:
            self.decoder.weight = self.embedding.weight

    @classmethod
    def from_config(cls, cfg: ModelConfig, vocab_size: int) -> LanguageModel:
        return cls(vocab_size, cfg.layer_specs(), cfg.embedding_size, output_dropout=cfg.output_dropout,
                   tie_weights=cfg.tie_weights, init_range=cfg.init_range, input_dropout=cfg.input_dropout,
                   embedding_dropout=cfg.embedding_dropout, ar=cfg.ar, tar=cfg.tar, **cfg.stack.options())

    def embed(self, inputs: Tensor) -> Tensor:
        """(T, B) ids -> (T, B, E) embeddings, or (T, B, V) one-hot vectors; with input dropout in training."""
        if self.embedding is not None:
            weight = embedding_dropout(self.embedding.weight, self.embedding_p, self.training)  # (V, E)
            x = nn.functional.embedding(inputs, weight)
        else:
            x = nn.functional.one_hot(inputs, self.vocab_size).to(self.decoder.weight.dtype)
        return sequence_dropout(x, self.input_p, self.training, self.rnn.variational)

    def decode(self, hidden: Tensor) -> Tensor:
        """(T, B, H) top-layer outputs -> (T, B, V) logits."""
        hidden = sequence_dropout(hidden, self.output_p, self.training, self.rnn.variational)
        if self.training and self.ar:
            self._penalty = self._penalty_add(self.ar * hidden.pow(2).mean())  # AR: on the dropped output
        if self.projection is not None:
            hidden = self.projection(hidden)
        return self.decoder(hidden)

    def _penalty_add(self, term: Tensor) -> Tensor:
        return term if self._penalty is None else self._penalty + term

    def penalty(self) -> Tensor | float:
        """The activation regularisation (AR + TAR) of the last training forward pass; 0 when there is none.
        The trainer adds it to the loss it backpropagates."""
        return 0.0 if self._penalty is None else self._penalty

    def states(self, inputs: Tensor, state: list[LayerState] | None = None) -> list:
        """Every layer's hidden (and cell) states and gate values at every step, for inputs (T, B) ids: a list of
        layers.LayerTrace, bottom first (inspection and probes; the model's mode decides dropout, so call it in
        eval mode)."""
        _, _, traces = self.rnn(self.embed(inputs), state, return_states=True)
        return traces

    def forward(
        self,
        inputs: Tensor,
        targets: Tensor | None = None,
        state: list[LayerState] | None = None,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None, list[LayerState]]:
        self._penalty = None
        hidden, state = self.rnn(self.embed(inputs), state, lengths)  # (T, B, H)
        if self.training and self.tar and hidden.shape[0] > 1:
            # TAR: on the top output before dropout, penalising large changes from step to step
            self._penalty = self._penalty_add(self.tar * (hidden[1:] - hidden[:-1]).pow(2).mean())
        logits = self.decode(hidden)  # (T, B, V)
        loss = None
        if targets is not None:
            if lengths is not None:  # padded steps score nothing
                valid = torch.arange(targets.shape[0], device=targets.device)[:, None] < lengths.to(targets.device)[None, :]
                targets = targets.masked_fill(~valid, -100)  # cross_entropy's ignore_index
            loss = nn.functional.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))
        return logits, loss, state
