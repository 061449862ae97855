"""SequenceClassifier: tokens -> embedding -> StackedRNN -> pooling over time -> dropout -> dense head -> class logits.

Dimension key: T time, B batch, V vocabulary, E embedding size, K directions of the top layer, H its output
size per direction (its proj_size when projected), D = K * H the top layer's output size, C classes.

Pooling turns the top layer's outputs (T, B, D) over each sequence's valid steps into one vector (B, D):

    last       the last state of each direction: forward output at step length-1, reverse output at step 0
    mean       the average over valid steps
    max        the elementwise maximum over valid steps
    attention  a_t = softmax_t(u · tanh(W h_t + b)) over valid steps, pooled = sum_t a_t h_t,
               with u a learned query (Yang et al. 2016, hierarchical attention networks)

Padding never counts: the stack is given the lengths, so no padded step reaches a state or a valid output,
and every pooling masks the padded steps, so a sentence gets the same prediction alone or in any batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import nested, option
from ..errors import InputError
from ..layers import LayerSpec
from ..regularizers import check_probability, embedding_dropout, sequence_dropout
from ..stack import StackedRNN
from .stack_config import StackConfig

POOLINGS = ("last", "mean", "max", "attention")
OUTPUTS = ("auto", "sigmoid", "softmax")


@dataclass
class ClassifierConfig:
    """[model]: the sequence classifier's architecture."""

    embedding_size: int = option(128, "embedding size", within="[1, inf)")
    stack: StackConfig = nested(StackConfig, "the recurrent stack ([model.stack])", hidden_size=128)
    input_dropout: float = option(0.0, "dropout on the embeddings, before the first layer", within="[0, 1)")
    embedding_dropout: float = option(0.0, "drop whole words from the embedding matrix", within="[0, 1)")
    pooling: str = option("last", "how the top layer's outputs become one vector per sequence", choices=POOLINGS)
    head_dropout: float = option(0.0, "dropout on the pooled vector, before the dense head", within="[0, 1)")
    head_hidden: int = option(0, "0: the head is one linear layer; N: a ReLU layer of N units comes first",
                              within="[0, inf)")
    output: str = option("auto", "auto: sigmoid with one unit for 2 classes, softmax otherwise", choices=OUTPUTS)
    pretrained_vectors: str | None = option(None, "GloVe or word2vec text file to initialise the embedding from")
    freeze_embeddings: bool = option(False, "keep the pretrained embedding fixed during training")
    vectors_encoding: str = option("utf-8", "text encoding of the pretrained vectors file")

    def layer_specs(self) -> list[LayerSpec]:
        """The stack's layers, bottom first; a classifier sees the whole sequence, so layers may be bidirectional."""
        return self.stack.specs("model.stack")

    def validate(self) -> None:
        if self.pretrained_vectors is not None and not self.pretrained_vectors.strip():
            raise InputError("model.pretrained_vectors: expected the path of a GloVe or word2vec text file, "
                             "got an empty string")
        if self.freeze_embeddings and self.pretrained_vectors is None:
            raise InputError("model.freeze_embeddings: there are no pretrained vectors to freeze; "
                             "set model.pretrained_vectors to a GloVe or word2vec text file")
        self.stack.check(self.embedding_size, "model.stack")


class SequenceClassifier(nn.Module):
    """A classifier of whole sequences over a stack of recurrent layers.

    Args:
        vocab_size: V.
        num_classes: C >= 2.
        layers: the stack's layer specifications, bottom first; any may be bidirectional.
        embedding_size: E.
        input_dropout: dropout on the embeddings before the first layer (variational when the stack's is).
        embedding_dropout: drop whole words from the embedding matrix for a forward pass.
        pooling: "last", "mean", "max" or "attention" (see the module docstring).
        head_dropout: dropout on the pooled vector, before the head.
        head_hidden: 0 for a linear head; N for Linear(D, N) -> ReLU -> Linear(N, outputs).
        output: "sigmoid" (one output unit, binary cross-entropy; needs C = 2, as Keras's Dense(1, sigmoid)),
            "softmax" (C units, cross-entropy), or "auto": sigmoid for 2 classes, softmax otherwise.
        pad_id: the padding token's id; its embedding row starts at zero and gets no gradient.
        **stack_options: StackedRNN's own keywords (dropout between layers, variational, residual, highway).

    Inputs: inputs, lengths=None, targets=None, return_attention=False
        inputs: (T, B) token ids, time-major, right-padded.
        lengths: (B,) valid steps of each sequence, 1 <= lengths <= T; None when none is padded.
        targets: (B,) class ids in [0, C), or None.
        return_attention: also return the attention weights (pooling="attention" only).

    Outputs: logits, loss (and attention)
        logits: (B, 1) for sigmoid output (the log-odds of class 1), (B, C) for softmax.
        loss: mean binary cross-entropy or cross-entropy over the batch (a scalar); None without targets.
        attention: (T, B) weights over the steps of each sequence, summing to 1; zero at padded steps.

    Attributes:
        embedding: nn.Embedding (V, E). rnn: the StackedRNN. attention: the pooling's scorer (or None).
        head: nn.Sequential, the dense head. output: "sigmoid" or "softmax", after resolving "auto".
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        layers: list[LayerSpec],
        embedding_size: int = 128,
        *,
        input_dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        pooling: str = "last",
        head_dropout: float = 0.0,
        head_hidden: int = 0,
        output: str = "auto",
        pad_id: int = 0,
        **stack_options,
    ) -> None:
        super().__init__()
        for name, value, low in (("vocab_size", vocab_size, 1), ("num_classes", num_classes, 2),
                                 ("embedding_size", embedding_size, 1), ("head_hidden", head_hidden, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {OUTPUTS}, got {output!r}")
        if output == "sigmoid" and num_classes != 2:
            raise ValueError(f"output: 'sigmoid' has one unit and needs num_classes=2, got num_classes={num_classes}")
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id < vocab_size:
            raise ValueError(f"pad_id: expected a token id in [0, {vocab_size}), got {pad_id!r}")
        self.input_p = check_probability("input_dropout", input_dropout)
        self.embedding_p = check_probability("embedding_dropout", embedding_dropout)
        self.head_p = check_probability("head_dropout", head_dropout)
        self.num_classes, self.pooling, self.pad_id = num_classes, pooling, pad_id
        self.output = output if output != "auto" else ("sigmoid" if num_classes == 2 else "softmax")

        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_id)
        self.rnn = StackedRNN(embedding_size, layers=layers, **stack_options)
        size = self.rnn.output_size  # D; every pooling keeps it (last: H forward + H reverse)
        self.attention = AdditiveAttention(size) if pooling == "attention" else None
        head: list[nn.Module] = []
        if head_hidden:
            head += [nn.Linear(size, head_hidden), nn.ReLU()]
            size = head_hidden
        head.append(nn.Linear(size, 1 if self.output == "sigmoid" else num_classes))
        self.head = nn.Sequential(*head)

    @classmethod
    def from_config(cls, cfg: ClassifierConfig, vocab_size: int, num_classes: int, pad_id: int = 0) -> SequenceClassifier:
        if cfg.output == "sigmoid" and num_classes != 2:
            raise InputError(f"model.output: 'sigmoid' has one output unit for 2 classes, but the data has {num_classes}: "
                             "set output = 'softmax' (or 'auto')")
        model = cls(vocab_size, num_classes, cfg.layer_specs(), cfg.embedding_size, input_dropout=cfg.input_dropout,
                    embedding_dropout=cfg.embedding_dropout, **cfg.stack.options(), pooling=cfg.pooling, head_dropout=cfg.head_dropout,
                    head_hidden=cfg.head_hidden, output=cfg.output, pad_id=pad_id)
        # frozen from the start, so a model resumed from a checkpoint (weights loaded, no set_pretrained) stays frozen
        model.embedding.weight.requires_grad_(not cfg.freeze_embeddings)
        return model

    # -- embedding --------------------------------------------------------------------------------------------
    def set_pretrained(self, matrix: Tensor, freeze: bool = False, source: str = "the pretrained file") -> None:
        """Copy a (V, E) matrix (from data.vectors.load_vectors) into the embedding; `freeze` stops its training.

        `source` names the vectors' file in the error raised when their size is not model.embedding_size."""
        vocab_size, size = self.embedding.weight.shape
        if matrix.dim() != 2 or matrix.shape[0] != vocab_size:
            raise ValueError(f"matrix: expected shape (V, E) with V = {vocab_size} (one row per word of the vocabulary), "
                             f"got {tuple(matrix.shape)}")
        if matrix.shape[1] != size:
            raise InputError(f"model.embedding_size is {size} but the vectors in {source} have {matrix.shape[1]} "
                             f"dimensions: set embedding_size = {matrix.shape[1]}")
        with torch.no_grad():
            self.embedding.weight.copy_(matrix)
        self.embedding.weight.requires_grad_(not freeze)

    def embed(self, inputs: Tensor) -> Tensor:
        """(T, B) ids -> (T, B, E) embeddings, with embedding and input dropout in training."""
        weight = embedding_dropout(self.embedding.weight, self.embedding_p, self.training)  # (V, E)
        x = nn.functional.embedding(inputs, weight, self.pad_id)
        return sequence_dropout(x, self.input_p, self.training, self.rnn.variational)

    # -- pooling ----------------------------------------------------------------------------------------------
    def pool(self, hidden: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor | None]:
        """Top-layer outputs (T, B, D) -> (B, D) over each sequence's valid steps; and the attention (T, B) or None."""
        steps, batch = hidden.shape[:2]
        valid = torch.arange(steps, device=hidden.device)[:, None] < lengths[None, :]  # (T, B)
        if self.pooling == "last":
            top = self.rnn.specs[-1]
            size = top.output_size // top.num_directions  # H, or P for a projected LSTM
            forward = hidden[lengths - 1, torch.arange(batch, device=hidden.device), :size]  # (B, H)
            if not top.bidirectional:
                return forward, None
            # the reverse direction reads from the last valid step back to step 0: its last state is at step 0
            return torch.cat([forward, hidden[0, :, size:]], dim=-1), None  # (B, 2H)
        if self.pooling == "mean":
            return hidden.masked_fill(~valid[..., None], 0.0).sum(0) / lengths[:, None].to(hidden.dtype), None
        if self.pooling == "max":
            # -inf, not 0: a zero at a padded step would win over a valid step whose values are all negative
            return hidden.masked_fill(~valid[..., None], float("-inf")).amax(0), None
        weights = self.attention(hidden, valid)  # (T, B)
        return (weights[..., None] * hidden).sum(0), weights

    # -- running ----------------------------------------------------------------------------------------------
    def forward(self, inputs: Tensor, lengths: Tensor | None = None, targets: Tensor | None = None,
                return_attention: bool = False):
        if not isinstance(inputs, Tensor) or inputs.dim() != 2:
            got = f"shape {tuple(inputs.shape)}" if isinstance(inputs, Tensor) else type(inputs).__name__
            raise ValueError(f"inputs: expected a 2-d tensor (T, B) of token ids, got {got}")
        if return_attention and self.attention is None:
            raise ValueError(f"return_attention: only pooling='attention' has attention weights, got pooling={self.pooling!r}")
        steps, batch = inputs.shape
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long)
        hidden, _ = self.rnn(self.embed(inputs), lengths=lengths)  # (T, B, D); checks the lengths
        lengths = torch.as_tensor(lengths, dtype=torch.long).to(hidden.device)
        pooled, weights = self.pool(hidden, lengths)  # (B, D)
        logits = self.head(nn.functional.dropout(pooled, self.head_p, self.training))  # (B, 1) or (B, C)
        loss = None if targets is None else self.loss(logits, targets)
        return (logits, loss, weights) if return_attention else (logits, loss)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean binary cross-entropy (sigmoid output) or cross-entropy (softmax) of logits against class ids (B,)."""
        targets = targets.to(logits.device)
        if self.output == "sigmoid":
            return nn.functional.binary_cross_entropy_with_logits(logits[:, 0], targets.to(logits.dtype))
        return nn.functional.cross_entropy(logits, targets)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Logits -> (B, C) probabilities of every class; for sigmoid output [1 - p, p] with p = sigmoid(logit)."""
        if self.output == "sigmoid":
            p = torch.sigmoid(logits[:, 0])  # (B,)
            return torch.stack([1 - p, p], dim=-1)
        return torch.softmax(logits, dim=-1)

    @torch.no_grad()
    def predict(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B,) the most probable class of each sequence. Runs in the current mode: call .eval() first."""
        return self.probabilities(self(inputs, lengths)[0]).argmax(dim=-1)

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}, output={self.output!r}, num_classes={self.num_classes}"


class AdditiveAttention(nn.Module):
    """Attention pooling with a learned query u: a_t = softmax over valid t of u · tanh(W h_t + b).

    Inputs: hidden (T, B, D), valid (T, B) bool. Output: weights (T, B), summing to 1 over each sequence's
    valid steps and exactly 0 at its padded ones.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(size, size)  # W, b
        self.query = nn.Linear(size, 1, bias=False)  # u

    def forward(self, hidden: Tensor, valid: Tensor) -> Tensor:
        scores = self.query(torch.tanh(self.proj(hidden))).squeeze(-1)  # (T, B)
        scores = scores.masked_fill(~valid, float("-inf"))  # every sequence has a valid step: no row is all -inf
        return torch.softmax(scores, dim=0)
