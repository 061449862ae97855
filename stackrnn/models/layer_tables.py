"""The stack's layers from a [model] config: either one cell, size and count for every layer, or an explicit
`layers = [{cell = "lstm", hidden_size = 256}, ...]` list of tables, bottom first. Shared by every model's config."""

from __future__ import annotations

from ..errors import InputError
from ..layers import LayerSpec
from ..stack import StackedRNN


def layer_specs(cfg, *, bidirectional: bool, key: str = "layers") -> list[LayerSpec]:
    """LayerSpecs from a model config with cell, hidden_size, num_layers, layers and weight_drop fields (and
    bidirectional when `bidirectional` is allowed: a language model may not look ahead, a classifier may).
    A bad table is an InputError naming model.<key>[i] (`key`: the config field holding the tables); a bad
    setting of every layer names the setting (model.zoneout; model.encoder_proj_size for key "encoder_layers").

    The config's proj_size projects every LSTM layer: all layers in the cell/hidden_size/num_layers form (where
    another cell is an error), the LSTM tables without a proj_size of their own in the explicit form."""
    keys = ({"cell", "hidden_size", "bias", "weight_drop", "recurrent_dropout", "zoneout", "layer_norm", "proj_size"}
            | ({"bidirectional"} if bidirectional else set()))
    prefix = key.removesuffix("layers")  # "encoder_" names a seq2seq stack's settings: model.encoder_proj_size
    proj_size = getattr(cfg, "proj_size", 0)
    if cfg.layers is None:
        layer = {"cell": cfg.cell, "hidden_size": cfg.hidden_size, "proj_size": proj_size}
        if bidirectional:
            layer["bidirectional"] = cfg.bidirectional
        raw = [layer] * cfg.num_layers
    else:
        raw = cfg.layers
    if not raw:
        raise InputError(f"model.{key}: expected at least one layer, got an empty list")
    if cfg.layers is not None and proj_size and not any(isinstance(t, dict) and t.get("cell", "lstm") == "lstm" for t in raw):
        raise InputError(f"model.{prefix}proj_size: projects LSTM layers, but model.{key} has none; got "
                         f"proj_size={proj_size}")
    specs = []
    for i, layer in enumerate(raw):
        if not isinstance(layer, dict) or set(layer) - keys or "hidden_size" not in layer:
            raise InputError(f"model.{key}[{i}]: expected a table with cell, hidden_size (and optionally "
                             f"{', '.join(sorted(keys - {'cell', 'hidden_size'}))}), got {layer!r}")
        cell = layer.get("cell", "lstm")
        try:
            specs.append(LayerSpec(cell, layer["hidden_size"], layer.get("bidirectional", False),
                                   layer.get("bias", True), layer.get("weight_drop", cfg.weight_drop),
                                   layer.get("recurrent_dropout", cfg.recurrent_dropout), layer.get("zoneout", cfg.zoneout),
                                   layer.get("layer_norm", getattr(cfg, "layer_norm", False)),
                                   layer.get("proj_size", proj_size if cell == "lstm" else 0)))
        except ValueError as e:
            # a setting of every layer is named as the user wrote it: model.zoneout, not model.layers[0].zoneout
            raise InputError(f"model.{prefix}{e}" if cfg.layers is None else f"model.{key}[{i}].{e}") from None
    return specs


def check_stack(cfg, input_size: int, *, bidirectional: bool) -> list[LayerSpec]:
    """The config's layers, checked as a stack (residual connections against the layers' number and sizes):
    the model configs' validate() ends here. InputErrors name model.<key>."""
    specs = layer_specs(cfg, bidirectional=bidirectional)
    try:
        StackedRNN(input_size, layers=specs, residual=cfg.residual, highway=getattr(cfg, "highway", False))
    except ValueError as e:
        raise InputError(f"model.{e}") from None
    return specs
