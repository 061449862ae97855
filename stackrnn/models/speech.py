"""SpeechRecognizer: acoustic features -> front end -> StackedRNN (bidirectional by default) -> linear ->
log-softmax over the token set and CTC's blank, trained with CTC (Graves et al. 2006; Deep Speech 2).

Dimension key: T frames, B batch, F features per frame, S frames stacked by the front end, D a layer's output
size, V tokens + the blank (id 0), U the longest transcript of a batch (tokens).

Two ways to make long audio cheaper, both counted in the lengths so padding never changes a transcript:

    front end "stack":  every S consecutive frames become one input step of S * F features (the frame rate / S)
    pyramid = k:        layers k, k+1, ... each read pairs of neighbouring outputs of the layer below,
                        concatenated: the frame rate halves at each (Listen, Attend and Spell's pyramid)

An utterance of n frames has ceil(n / S) steps after the front end and ceil(m / 2) after each pyramid layer of
m. The missing frame of an odd count is a zero, exactly as padding is, and the stack reads each sequence only
to its length and outputs zeros after it, so an utterance gets the same outputs alone and in a padded batch.

With a pyramid the stack is cut in blocks: the layers below k as one StackedRNN (their residual connections,
if any, act among them), then one StackedRNN per pyramid layer; the stack's dropout (plain or variational) acts
between every two layers as usual.

A model whose layers all read left to right streams (`stream`): chunk by chunk, every layer's state carried
from one chunk to the next, giving the same outputs as the whole utterance at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..config import nested, option
from ..errors import InputError
from ..layers import LayerSpec
from ..regularizers import sequence_dropout
from ..stack import StackedRNN
from .stack_config import StackConfig

FRONT_ENDS = ("none", "stack", "conv")


@dataclass
class SpeechConfig:
    """[model]: the speech recogniser's architecture."""

    stack: StackConfig = nested(StackConfig, "the recurrent stack ([model.stack])", hidden_size=128, num_layers=3,
                                bidirectional=True)
    frontend: str = option("none", "before the stack: none; stack (every stack_frames frames become one step); or conv "
                           "(Deep Speech 2's two 2-D convolutions over time and frequency, halving the frame rate)",
                           choices=FRONT_ENDS)
    stack_frames: int = option(3, "front end stack: frames joined into one step (the frame rate is divided by it)",
                               within="[1, inf)")
    conv_channels: int = option(32, "front end conv: channels of each convolution", within="[1, inf)")
    pyramid: int = option(0, "0: none; k >= 2: layers k and up each read pairs of neighbouring outputs of the layer "
                          "below, halving the frame rate (Listen, Attend and Spell)")
    input_dropout: float = option(0.0, "dropout on the features, before the front end", within="[0, 1)")

    def validate(self) -> None:
        specs = self.stack.specs("model.stack")
        if self.pyramid and not 2 <= self.pyramid <= len(specs):
            raise InputError(f"model.pyramid: expected 0 or a layer number in [2, {len(specs)}] (the first layer reads "
                             f"the features; to join input frames use frontend = 'stack'), got {self.pyramid}")
        SpeechRecognizer.from_config(self, 13, 3)  # the stack's residual settings against the blocks


class SpeechRecognizer(nn.Module):
    """CTC speech recognition over a stack of recurrent layers (see the module docstring).

    Args:
        input_size: F, features per frame.
        vocab_size: V, the token set's size with the blank (id 0).
        layers: the stack's layer specifications, bottom first; any may be bidirectional.
        frontend: "none", "stack" or "conv"; stack_frames: S for "stack"; conv_channels: for "conv".
        pyramid: 0, or k >= 2: layers from k up halve the frame rate.
        input_dropout: dropout on the features.
        **stack_options: StackedRNN's own keywords (dropout between layers, variational, residual, highway); with
            a pyramid, residual connections act among the layers below k, and the dropout is also between those above.

    Inputs: features, lengths, targets=None, target_lengths=None
        features: (T, B, F) right-padded with zeros.
        lengths: (B,) frames of each utterance, 1 <= lengths <= T.
        targets: (B, U) token ids >= 1, right-padded; target_lengths: (B,) tokens of each.

    Outputs: log_probs, loss
        log_probs: (T', B, V) log-probabilities per output frame (T' after the front end and the pyramid;
            `output_lengths(lengths)` gives each utterance's).
        loss: CTC's negative log-likelihood, each utterance's over its transcript length, averaged over the
            batch (torch's reduction "mean"); an impossible alignment (too few frames) counts 0 (zero_infinity).
            None without targets.

    Attributes:
        blocks: nn.ModuleList of StackedRNN (one without a pyramid). head: nn.Linear(D, V).
    """

    def __init__(self, input_size: int, vocab_size: int, layers: list[LayerSpec], *, frontend: str = "none",
                 stack_frames: int = 3, conv_channels: int = 32, pyramid: int = 0, input_dropout: float = 0.0,
                 **stack_options) -> None:
        super().__init__()
        if frontend not in FRONT_ENDS:
            raise ValueError(f"frontend: expected one of {FRONT_ENDS}, got {frontend!r}")
        if pyramid and not 2 <= pyramid <= len(layers):
            raise ValueError(f"pyramid: expected 0 or a layer number in [2, {len(layers)}], got {pyramid}")
        self.frontend = frontend
        self.stride = {"none": 1, "stack": stack_frames, "conv": 2}[frontend]
        self.pyramid, self.input_dropout = pyramid, input_dropout
        self.ctc = nn.CTCLoss(blank=0, zero_infinity=True)
        cut = pyramid - 1 if pyramid else len(layers)
        residual = stack_options.get("residual", False)
        if (residual or stack_options.get("highway")) and cut < 2:
            raise InputError(f"model.stack.residual: with pyramid = {pyramid} the layers below the pyramid ({cut}) are too "
                             "few for a residual connection (a pyramid layer's input is two frames, not its output's "
                             "size); leave residual out or raise model.pyramid")
        if not isinstance(residual, bool) and residual > cut:
            raise InputError(f"model.stack.residual: residual connections act among the layers below the pyramid "
                             f"(1 to {cut}); got layer {residual}")
        self.conv = ConvFrontEnd(input_size, conv_channels) if frontend == "conv" else None
        size = self.conv.output_size if self.conv is not None else input_size * self.stride
        self.blocks = nn.ModuleList([StackedRNN(size, layers=layers[:cut], **stack_options)])
        size = self.blocks[0].output_size
        for spec in layers[cut:]:  # each pyramid layer reads two frames of the layer below
            self.blocks.append(StackedRNN(2 * size, layers=[spec]))
            size = self.blocks[-1].output_size
        self.head = nn.Linear(size, vocab_size)

    @classmethod
    def from_config(cls, cfg: SpeechConfig, input_size: int, vocab_size: int) -> SpeechRecognizer:
        try:
            return cls(input_size, vocab_size, cfg.stack.specs("model.stack"), frontend=cfg.frontend,
                       stack_frames=cfg.stack_frames, conv_channels=cfg.conv_channels, pyramid=cfg.pyramid, input_dropout=cfg.input_dropout,
                       **cfg.stack.options())
        except ValueError as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"model.stack.{e}") from None

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """(B,) output frames of utterances of `lengths` frames: ceil by the front end's stride, then halved
        (rounding up) at every pyramid layer."""
        out = torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")
        for _ in self.blocks[1:]:
            out = torch.div(out + 1, 2, rounding_mode="floor")
        return out

    def forward(self, features: Tensor, lengths: Tensor, targets: Tensor | None = None,
                target_lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        log_probs, out_lengths, _ = self._run(features, lengths)
        if targets is None:
            return log_probs, None
        loss = self.ctc(log_probs, targets, out_lengths, torch.as_tensor(target_lengths, dtype=torch.long).cpu())
        return log_probs, loss

    @property
    def streamable(self) -> bool:
        """Whether every layer reads left to right, so that audio can be transcribed as it comes."""
        return self.conv is None and not any(spec.bidirectional for block in self.blocks for spec in block.specs)

    @property
    def chunk_frames(self) -> int:
        """The input frames one output frame stands for (the front end's stride times 2 per pyramid layer):
        streamed chunks are a multiple of it, but for the last."""
        return self.stride * 2 ** (len(self.blocks) - 1)

    def stream(self, features: Tensor, state: list | None = None) -> tuple[Tensor, list]:
        """One chunk of a unidirectional model's input, carrying every block's state from the chunk before.

        Inputs: features (T_c, B, F), a chunk of frames, T_c a multiple of `chunk_frames` unless it is the last
        chunk; state: what the previous chunk returned (None for the first).
        Outputs: log_probs (T_c', B, V) of the chunk's output frames; state for the next chunk.

        The chunks' outputs, joined, are the whole input's (`forward` without lengths): every layer reads left
        to right, carries its state over, and the frames stacked or paired never straddle two chunks."""
        if not self.streamable:
            raise ValueError("stream: a bidirectional layer or the conv front end reads the future, so this model "
                             "cannot stream; train one with bidirectional = false and no conv front end")
        states = state or [None] * len(self.blocks)
        x = join_frames(features, self.stride)
        new = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = join_frames(x, 2)
            x, s = block(x, states[i])
            new.append(s)
        return torch.log_softmax(self.head(x).float(), dim=-1), new

    def _run(self, features: Tensor, lengths: Tensor, all_layers: bool = False) -> tuple[Tensor, Tensor, list[Tensor]]:
        """(log_probs (T', B, V), output lengths (B,), every layer's output when `all_layers`)."""
        lengths = torch.as_tensor(lengths, dtype=torch.long).cpu()
        x = self._drop(features, self.input_dropout)
        out_lengths = torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")
        x = join_frames(x, self.stride) if self.conv is None else self.conv(x, lengths)  # (T / S, B, S * F or C * F')
        layers: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if i > 0:  # a pyramid layer: dropout as between any two layers, then pairs of frames
                x = join_frames(self._drop(x, self.blocks[0].dropout), 2)  # (T / 2, B, 2 * D)
                out_lengths = torch.div(out_lengths + 1, 2, rounding_mode="floor")
            x, _, *outputs = block(x, lengths=out_lengths, return_all_layers=all_layers)
            layers += outputs[0] if all_layers else []
        return torch.log_softmax(self.head(x).float(), dim=-1), out_lengths, layers  # (T', B, V)

    def layer_outputs(self, features: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """Every recurrent layer's output (T_l, B, D_l), bottom first (T_l halved at every pyramid layer), and the
        log-probabilities (T', B, V): what `stackrnn inspect` draws."""
        log_probs, _, layers = self._run(features, lengths, all_layers=True)
        return layers, log_probs

    def _drop(self, x: Tensor, p: float) -> Tensor:
        """Dropout as the stack's: variational or standard (the pyramid layers' own stacks take no options)."""
        return sequence_dropout(x, p, self.training, self.blocks[0].variational)


class ConvFrontEnd(nn.Module):
    """Deep Speech 2's front end, sized for small data: two 2-D convolutions over (time, frequency), each with
    Deep Speech 2's clipped ReLU min(max(x, 0), 20); the first strides 2 in time and both 2 in frequency, so
    T frames of F features become ceil(T / 2) steps of C * F'' features (F' = ceil(F / 2), F'' = ceil(F' / 2)).

    Padding: the outputs past each utterance's own steps are zeroed after every convolution, so a kernel that
    reaches past the end reads zeros, in a padded batch as alone (where it reads the convolution's zero padding).

    Inputs: x (T, B, F), lengths (B,). Outputs: (ceil(T / 2), B, C * F'').
    """

    def __init__(self, input_size: int, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, kernel_size=(11, 5), stride=(2, 2), padding=(5, 2))
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=(11, 5), stride=(1, 2), padding=(5, 2))
        f1 = (input_size - 1) // 2 + 1
        self.output_size = channels * ((f1 - 1) // 2 + 1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        T, B, F = x.shape
        steps = torch.div(lengths + 1, 2, rounding_mode="floor").to(x.device)  # (B,) ceil(n / 2)
        y = x.permute(1, 0, 2).unsqueeze(1)  # (B, 1, T, F)
        for conv in (self.conv1, self.conv2):
            y = torch.clamp(conv(y), 0, 20)  # (B, C, ceil(T / 2), F')
            valid = torch.arange(y.shape[2], device=x.device)[None, :] < steps[:, None]  # (B, T')
            y = y * valid[:, None, :, None]
        B, C, T2, F2 = y.shape
        return y.permute(2, 0, 1, 3).reshape(T2, B, C * F2)


def join_frames(x: Tensor, k: int) -> Tensor:
    """(T, B, F) -> (ceil(T / k), B, k * F): every k consecutive frames side by side, the last group padded with
    zero frames."""
    if k == 1:
        return x
    T, B, F = x.shape
    extra = -T % k
    if extra:
        x = torch.cat([x, x.new_zeros(extra, B, F)])
    return x.view((T + extra) // k, k, B, F).transpose(1, 2).reshape((T + extra) // k, B, k * F)
