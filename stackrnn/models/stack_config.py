"""StackConfig: a model's recurrent stack as a config, declared once for every task.

Every model config nests one (a language model's and a classifier's [model.stack]) or two (a translation
model's [model.encoder] and [model.decoder]); its fields are also the command line's options (--hidden-size,
--encoder-hidden-size). The stack is either the same layer `num_layers` times (cell, hidden_size, bidirectional)
or explicit `layers` tables, bottom first:

    [model.stack]
    layers = [{cell = "lstm", hidden_size = 256, zoneout = 0.1}, {cell = "gru", hidden_size = 128}]
    residual = true

A setting of every layer (zoneout, weight_drop, proj_size, ...) is the default of each table's own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..cells import CELLS
from ..config import check_bounds, option
from ..errors import InputError
from ..layers import LayerOptions, LayerSpec
from ..stack import StackedRNN

#: what a `layers` table may set, besides cell and hidden_size: the direction, the biases and every layer option
_TABLE_KEYS = ("bidirectional", "bias", *(f.name for f in dataclasses.fields(LayerOptions)))
#: a table's own direction and biases when it does not say (the stack's bidirectional is for the uniform form)
_TABLE_DEFAULTS = {"bidirectional": False, "bias": True}


@dataclass(frozen=True)
class StackConfig(LayerOptions):
    """The recurrent layers of a model and the stack's options (see StackedRNN), with every layer option
    (LayerOptions: weight_drop, zoneout, ...) as the setting of every layer."""

    cell: str = option("lstm", "cell of every layer", choices=tuple(CELLS))
    hidden_size: int = option(256, "hidden units of every layer (per direction)", within="[1, inf)")
    num_layers: int = option(2, "number of stacked layers", within="[1, inf)")
    bidirectional: bool = option(False, "every layer reads the sequence both ways")
    layers: list | None = option(None, "explicit layers, bottom first, e.g. [{cell = 'lstm', hidden_size = 256}, {cell = "
                                 "'gru', hidden_size = 128}]; replaces cell, hidden_size, num_layers and bidirectional",
                                 cli=False)
    dropout: float = option(0.0, "dropout between the recurrent layers", within="[0, 1)")
    variational: bool = option(False, "dropout uses one mask per sequence for all steps (Gal & Ghahramani)")
    residual: bool | int = option(False, "residual connections: true from layer 2 up, or a layer number k from k up")
    highway: bool = option(False, "gate the residual connections (highway: g * h + (1 - g) * x, g learned per unit)")

    def specs(self, where: str = "model.stack", *, causal: bool = False) -> list[LayerSpec]:
        """The layers, bottom first. `causal` stacks (a language model, a decoder) read left to right and may not
        be bidirectional. A bad setting is an InputError naming it as `where`.key (`where`.layers[i].key for a
        table)."""
        check_bounds(self, where)  # (again: a StackConfig built in Python has not been through check_value)
        if causal and self.bidirectional:
            raise InputError(f"{where}.bidirectional: this stack reads left to right (it must not see the future); "
                             "set it to false")
        keys = {"cell", "hidden_size", *_TABLE_KEYS} - ({"bidirectional"} if causal else set())
        if self.layers is None:  # (here the LSTM-only options are every layer's own: another cell with them is an error)
            layer = {"cell": self.cell, "hidden_size": self.hidden_size,
                     **{key: getattr(self, key) for key in LayerOptions.LSTM_ONLY}}
            raw = [layer if causal else {**layer, "bidirectional": self.bidirectional}] * self.num_layers
        else:
            raw = self.layers
        if not raw:
            raise InputError(f"{where}.layers: expected at least one layer, got an empty list")
        given = [key for key in LayerOptions.LSTM_ONLY if getattr(self, key)]
        if self.layers is not None and given and not any(isinstance(t, dict) and t.get("cell", "lstm") == "lstm" for t in raw):
            raise InputError(f"{where}.{given[0]}: applies to LSTM layers, but {where}.layers has none; got "
                             f"{given[0]}={getattr(self, given[0])}")
        return [self._spec(i, layer, keys, where) for i, layer in enumerate(raw)]

    def _spec(self, i: int, layer, keys: set[str], where: str) -> LayerSpec:
        if not isinstance(layer, dict) or set(layer) - keys or "hidden_size" not in layer:
            raise InputError(f"{where}.layers[{i}]: expected a table with cell, hidden_size (and optionally "
                             f"{', '.join(sorted(keys - {'cell', 'hidden_size'}))}), got {layer!r}")
        cell = layer.get("cell", "lstm")
        # a table's own setting wins; the stack's setting of every layer is its default (of an LSTM-only option:
        # the LSTM layers' default)
        defaults = {**_TABLE_DEFAULTS, **({} if cell == "lstm" else {k: 0 for k in LayerOptions.LSTM_ONLY})}
        own = {key: layer.get(key, defaults[key] if key in defaults else getattr(self, key)) for key in _TABLE_KEYS}
        try:
            return LayerSpec(cell, layer["hidden_size"], **own)
        except ValueError as e:
            # a setting of every layer is named as the user wrote it: model.stack.zoneout, not ...layers[0].zoneout
            raise InputError(f"{where}.{e}" if self.layers is None else f"{where}.layers[{i}].{e}") from None

    def options(self) -> dict:
        """StackedRNN's keyword options other than the layers."""
        return {"dropout": self.dropout, "variational": self.variational, "residual": self.residual,
                "highway": self.highway}

    def check(self, input_size: int, where: str = "model.stack", *, causal: bool = False) -> list[LayerSpec]:
        """The layers, checked as a stack (residual connections against the layers' number and sizes)."""
        specs = self.specs(where, causal=causal)
        try:
            StackedRNN(input_size, layers=specs, **self.options())
        except ValueError as e:
            raise InputError(f"{where}.{e}") from None
        return specs
