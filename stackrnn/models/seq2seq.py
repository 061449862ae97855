"""Seq2Seq: a stacked encoder, a bridge, and a stacked decoder with global attention (Luong et al. 2015).

Dimension key: S source steps, T target steps, B batch, E embedding size, M encoder output features (K * H of
its top layer), H_d the decoder's top-layer size, A the attentional vector's size (= H_d), V target vocabulary.

    encoder   source ids (S, B) -> embeddings -> StackedRNN (any depth, bidirectional layers, residual, ...)
              -> memory (S, B, M) and every layer's final state
    bridge    "linear": the encoder's final states (every layer and direction, h and c, concatenated) -> one
              linear map per decoder state -> tanh for h, none for c. It joins stacks of any depths and sizes
              (a 2-layer bidirectional encoder to a 4-layer decoder; a projected LSTM's h of P features beside its
              c of H). "zero" (the default): the decoder starts from zeros.
    decoder   at step t, input [embedding of y_{t-1}; h~_{t-1}] ("input feeding": the last attentional vector,
              so the decoder knows what it already attended to), or just the embedding without input feeding;
              a unidirectional StackedRNN (any depth, residual from layer k) -> top output h_t (B, H_d)
    attention context c_t from h_t over the memory (attention.py), h~_t = tanh(W_c [c_t; h_t]) (B, A), and
              logits = W_out dropout(h~_t) (B, V). With attention "none", h~_t = h_t.

Training is teacher-forced: the decoder reads the reference's previous token. With input feeding each step needs
the previous step's h~, so the decoder runs step by step (each step still a fused kernel call for the whole
stack); without it the decoder runs over all T steps in one call and attention is one batched product.

Why the decoder starts from zeros by default: on Tatoeba English-French (2x256 bidirectional encoder, 4x256
decoder), a decoder handed the whole sentence by the linear bridge did not need its attention, which within 100
training steps rested entirely on the source's final punctuation (mean weight 1.0, scaled scores or not) and never
left it, as the softmax there passes no gradient to other words. Started from zeros, the decoder learns the
sentence only through attention; with scaled scores (attention.py) its weight on the final word fell to 0.43 by
step 200, and by step 800 it aligned word with word (target step and most-attended source word correlate 0.83
over 300 validation pairs).
Input feeding makes a teacher-forced step take 1.55x the time (benchmarks/bench_translate.py) and made no difference
in validation BLEU at the same step count in the first 800 steps, so examples/fra-eng.toml turns it off.

Padding: the encoder gets the source lengths, so padded source steps reach no state and no memory vector, and
attention gives them weight zero. A sentence is encoded and translated the same alone or in a padded batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..config import nested, option
from ..errors import InputError
from ..layers import LayerSpec, LayerState, map_state
from ..stack import StackedRNN
from .attention import ATTENTIONS, Attention
from .stack_config import StackConfig

BRIDGES = ("linear", "zero")


@dataclass
class Seq2SeqConfig:
    """[model]: the translation model's encoder, decoder and attention."""

    embedding_size: int = option(256, "embedding size of source and target words", within="[1, inf)")
    encoder: StackConfig = nested(StackConfig, "the encoder's stack ([model.encoder])", prefix="encoder_",
                                  flows=("dropout",), bidirectional=True, dropout=0.2)
    decoder: StackConfig = nested(StackConfig, "the decoder's stack ([model.decoder]; never bidirectional)",
                                  prefix="decoder_", hidden=("bidirectional",), flows=("dropout",), num_layers=4,
                                  dropout=0.2)
    attention: str = option("general", "attention score: Luong's dot or general, Bahdanau's additive, or none",
                            choices=ATTENTIONS)
    scaled_attention: bool = option(True, "divide dot and general attention scores by sqrt(size), so the softmax "
                                    "does not saturate before the attention has learnt to align", saved=False)
    input_feed: bool = option(True, "feed the last attentional vector into the next decoder step (Luong)")
    bridge: str = option("zero", "decoder's initial state: zeros (the decoder must attend to learn the sentence), "
                         "or a linear map of the encoder's final states", choices=BRIDGES, saved="linear")
    dropout: float = option(0.2, "dropout on the embeddings and the attentional vector, and between the layers of a "
                            "stack that sets no dropout of its own", within="[0, 1)")
    label_smoothing: float = option(0.0, "label smoothing of the training loss (0: plain cross-entropy)",
                                    within="[0, 1)")

    def encoder_specs(self) -> list[LayerSpec]:
        return self.encoder.specs("model.encoder")

    def decoder_specs(self) -> list[LayerSpec]:
        return self.decoder.specs("model.decoder", causal=True)

    def validate(self) -> None:
        try:
            Seq2Seq.from_config(self, 4, 5)  # every structural check (sizes, residuals, attention) in one place
        except InputError:
            raise  # the stacks' errors already name their key: model.encoder.proj_size
        except ValueError as e:
            raise InputError(f"model.{e}") from None


class Memory(NamedTuple):
    """What the decoder reads of an encoded source batch (every tensor's batch dimension can be reordered
    together, as beam search does, with `select`).

    memory: (S, B, M) encoder outputs. keys: the attention's precomputed keys (S, B, *), or None without
    attention. mask: (S, B) bool, True at valid source steps.
    """

    memory: Tensor
    keys: Tensor | None
    mask: Tensor

    def select(self, index: Tensor) -> Memory:
        """The rows `index` (N,) of the batch: (S, B, ...) -> (S, N, ...)."""
        return Memory(*(None if t is None else t.index_select(1, index) for t in self))


class Seq2Seq(nn.Module):
    """An attentional encoder-decoder over two StackedRNNs.

    Args:
        source_vocab, target_vocab: vocabulary sizes.
        encoder: the encoder's layers, bottom first; any may be bidirectional.
        decoder: the decoder's layers, bottom first; none bidirectional.
        embedding_size: E, of both embeddings.
        attention: "dot", "general", "additive" or "none" (see attention.py).
        scaled_attention: divide dot and general scores by sqrt(H_d) (see attention.py).
        input_feed: feed h~_{t-1} into decoder step t (needs attention).
        bridge: "linear" or "zero" (see the module docstring).
        dropout: on embeddings, between layers of both stacks, and on h~ before the output layer.
        encoder_residual, decoder_residual: the stacks' residual connections (StackedRNN's `residual`).
        encoder_options, decoder_options: StackedRNN's keyword options for each stack (dropout, variational,
            residual, highway), in place of `dropout` and the residual arguments.
        label_smoothing: of the training loss.
        source_pad, target_pad: padding ids; their embedding rows start at zero and get no gradient, and padded
            target steps score nothing.

    Inputs: source, source_lengths, target_in, target_out=None
        source: (S, B) ids, right-padded; source_lengths (B,) valid steps, >= 1.
        target_in: (T, B) the decoder's inputs (<bos> y_1 ... y_n, padded); target_out: (T, B) what each step
            must predict (y_1 ... y_n <eos>, padded), or None.

    Outputs: logits (T, B, V), and the mean token cross-entropy over non-pad targets (None without target_out).

    Incremental use (decoding): `encode` once, then `start` and `step` per token (decode.py).
    """

    def __init__(
        self,
        source_vocab: int,
        target_vocab: int,
        encoder: list[LayerSpec],
        decoder: list[LayerSpec],
        embedding_size: int = 256,
        *,
        attention: str = "general",
        scaled_attention: bool = True,
        input_feed: bool = True,
        bridge: str = "linear",
        dropout: float = 0.0,
        encoder_residual: bool | int = False,
        decoder_residual: bool | int = False,
        encoder_options: dict | None = None,
        decoder_options: dict | None = None,
        label_smoothing: float = 0.0,
        source_pad: int = 0,
        target_pad: int = 0,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {', '.join(ATTENTIONS)}, got {attention!r}")
        if bridge not in BRIDGES:
            raise ValueError(f"bridge: expected one of {', '.join(BRIDGES)}, got {bridge!r}")
        if input_feed and attention == "none":
            raise ValueError("input_feed: feeds the attentional vector, so it needs attention; set input_feed = false "
                             "or choose an attention")
        for i, spec in enumerate(decoder):
            if spec.bidirectional:
                raise ValueError(f"decoder.layers[{i}]: a decoder reads left to right; it cannot be bidirectional")
            if input_feed and (spec.weight_drop or spec.recurrent_dropout):
                # with input feeding the decoder runs one step per call, and these masks are drawn per call: they
                # would change every step instead of once per sequence
                raise ValueError(f"decoder.layers[{i}]: weight_drop and recurrent_dropout need whole sequences, but "
                                 "with input feeding the decoder runs step by step; set input_feed = false or drop them")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: expected a number in [0, 1), got {label_smoothing!r}")
        self.attention_kind, self.input_feed, self.bridge_kind = attention, bool(input_feed), bridge
        self.label_smoothing, self.target_pad, self.target_vocab = float(label_smoothing), target_pad, target_vocab
        self.source_embedding = nn.Embedding(source_vocab, embedding_size, padding_idx=source_pad)
        self.target_embedding = nn.Embedding(target_vocab, embedding_size, padding_idx=target_pad)
        self.drop = nn.Dropout(dropout)
        try:
            self.encoder = StackedRNN(embedding_size, layers=encoder,
                                      **(encoder_options or {"dropout": dropout, "residual": encoder_residual}))
        except ValueError as e:
            raise ValueError(f"encoder.{e}") from None
        memory_size = self.encoder.output_size
        query_size = decoder[-1].output_size
        self.feed_size = query_size if input_feed else 0
        try:
            self.decoder = StackedRNN(embedding_size + self.feed_size, layers=decoder,
                                      **(decoder_options or {"dropout": dropout, "residual": decoder_residual}))
        except ValueError as e:
            raise ValueError(f"decoder.{e}") from None
        self.attention = None if attention == "none" else Attention(attention, query_size, memory_size,
                                                                           scaled=scaled_attention)
        # Luong's attentional layer h~ = tanh(W_c [c; h]); its size is the decoder's, so input feeding adds A = H_d
        self.combine = None if attention == "none" else nn.Linear(memory_size + query_size, query_size, bias=False)
        self.output = nn.Linear(query_size, target_vocab)
        # features of each decoder layer's state parts: (h,) or (h, c); h has P when projected, c H
        self._decoder_shapes = [s.state_sizes for s in decoder]
        if bridge == "linear":
            encoded = sum(s.num_directions * sum(s.state_sizes) for s in encoder)
            produced = sum(sum(sizes) for sizes in self._decoder_shapes)
            self.bridge = nn.Linear(encoded, produced)
        else:
            self.bridge = None

    @classmethod
    def from_config(cls, cfg: Seq2SeqConfig, source_vocab: int, target_vocab: int, *, source_pad: int = 0,
                    target_pad: int = 0) -> Seq2Seq:
        return cls(source_vocab, target_vocab, cfg.encoder_specs(), cfg.decoder_specs(), cfg.embedding_size,
                   attention=cfg.attention, scaled_attention=cfg.scaled_attention, input_feed=cfg.input_feed, bridge=cfg.bridge, dropout=cfg.dropout,
                   encoder_options=cfg.encoder.options(), decoder_options=cfg.decoder.options(),
                   label_smoothing=cfg.label_smoothing, source_pad=source_pad, target_pad=target_pad)

    # -- encoder and bridge -----------------------------------------------------------------------------------
    def encode(self, source: Tensor, lengths: Tensor) -> tuple[Memory, list[LayerState], Tensor]:
        """source (S, B), lengths (B,) -> the memory, the decoder's initial state, and the initial feed (B, A)
        (zeros; width 0 without input feeding)."""
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        x = self.drop(self.source_embedding(source))  # (S, B, E)
        memory, finals = self.encoder(x, lengths=lengths)  # (S, B, M)
        mask = torch.arange(source.shape[0])[:, None] < lengths[None, :]  # (S, B)
        keys = None if self.attention is None else self.attention.keys(memory)
        batch = source.shape[1]
        feed = memory.new_zeros(batch, self.feed_size)
        return Memory(memory, keys, mask.to(source.device)), self._bridge(finals, batch, memory), feed

    def _bridge(self, finals: list[LayerState], batch: int, like: Tensor) -> list[LayerState]:
        """The decoder's initial state from the encoder's final states: a list of (1, B, H) or ((1, B, H), (1, B, H))
        (h (1, B, P) for a projected LSTM layer)."""
        if self.bridge is None:
            return self.decoder.zero_state(batch, dtype=like.dtype, device=like.device)
        # every encoder layer's final h (and c), all directions: (K, B, H) -> (B, K * H), concatenated
        parts = [t.transpose(0, 1).reshape(batch, -1) for s in finals for t in (s if isinstance(s, tuple) else (s,))]
        out = self.bridge(torch.cat(parts, dim=1))  # (B, sum of decoder state sizes)
        state, at = [], 0
        for sizes in self._decoder_shapes:
            layer = []
            for size in sizes:  # h, then an LSTM's c
                part = out[:, at : at + size].unsqueeze(0)  # (1, B, size)
                at += size
                # h through tanh, like the cell's own output range; c is unbounded in an LSTM too
                layer.append(torch.tanh(part) if not layer else part)
            state.append(tuple(layer) if len(layer) == 2 else layer[0])
        return state

    # -- decoder ----------------------------------------------------------------------------------------------
    def _attend(self, top: Tensor, mem: Memory) -> tuple[Tensor, Tensor | None]:
        """Decoder top outputs (B, H_d) or (T, B, H_d) -> attentional vectors h~ of the same shape, and the
        attention weights (S, B) or (T, S, B) (None without attention)."""
        if self.attention is None:
            return top, None
        context, weights = self.attention(top, mem.keys, mem.memory, mem.mask)
        return torch.tanh(self.combine(torch.cat([context, top], dim=-1))), weights

    def _advance(self, tokens: Tensor, mem: Memory, state: list[LayerState], feed: Tensor
                 ) -> tuple[Tensor, list[LayerState], Tensor | None]:
        """One decoder step up to the attentional vector h~ (B, A), with the new state and the weights."""
        x = self.drop(self.target_embedding(tokens))  # (B, E)
        if self.input_feed:
            x = torch.cat([x, feed], dim=-1)
        top, state = self.decoder(x.unsqueeze(0), state)  # (1, B, H_d)
        attentional, weights = self._attend(top.squeeze(0), mem)
        return attentional, state, weights

    def step(self, tokens: Tensor, mem: Memory, state: list[LayerState], feed: Tensor
             ) -> tuple[Tensor, list[LayerState], Tensor, Tensor | None]:
        """One decoder step: tokens (B,) (the previous target tokens) -> logits (B, V), the new state, the new
        feed (B, A), and the attention weights (S, B) (None without attention)."""
        attentional, state, weights = self._advance(tokens, mem, state, feed)
        return self.output(self.drop(attentional)), state, (attentional if self.input_feed else feed), weights

    def forward(self, source: Tensor, source_lengths: Tensor, target_in: Tensor, target_out: Tensor | None = None,
                return_attention: bool = False):
        mem, state, feed = self.encode(source, source_lengths)
        if self.input_feed:
            vectors, weights = [], []
            for t in range(target_in.shape[0]):
                feed, state, w = self._advance(target_in[t], mem, state, feed)
                vectors.append(feed)
                weights.append(w)
            attentional = torch.stack(vectors)  # (T, B, A)
            attention = torch.stack(weights)  # (T, S, B)
        else:
            # no step depends on the previous one's attention: the whole decoder and attention at once
            top, _ = self.decoder(self.drop(self.target_embedding(target_in)), state)  # (T, B, H_d)
            attentional, attention = self._attend(top, mem)
        # the output layer once for all steps: one large product instead of T small ones
        logits = self.output(self.drop(attentional))  # (T, B, V)
        loss = None
        if target_out is not None:
            loss = nn.functional.cross_entropy(logits.reshape(-1, self.target_vocab), target_out.reshape(-1),
                                               ignore_index=self.target_pad, label_smoothing=self.label_smoothing)
        return (logits, loss, attention) if return_attention else (logits, loss)

    @staticmethod
    def select_state(state: list[LayerState], index: Tensor) -> list[LayerState]:
        """The batch rows `index` (N,) of a decoder state (for beam search's reordering)."""
        return map_state(lambda t: t.index_select(1, index), state)
