"""Instruments to look inside a trained stack: every layer's states (StackedRNN(..., return_states=True)), text
features to relate units to, interactive activation pages, gradient diagnostics and linear probes."""
