"""StackConfig: one declaration of the stack's options, nested in every task's model config, with the layout from
before the nesting (flat keys in [model]) still loading."""

import dataclasses

import pytest

from stackrnn.config import from_dict, options, to_dict
from stackrnn.errors import InputError
from stackrnn.models.classifier import ClassifierConfig
from stackrnn.models.lm import ModelConfig
from stackrnn.models.seq2seq import Seq2SeqConfig
from stackrnn.models.stack_config import StackConfig
from stackrnn.train import RunConfig


def test_every_model_config_nests_the_one_stack_config():
    nested = {cls.__name__: [f.name for f in dataclasses.fields(cls) if f.metadata.get("nested") is StackConfig]
              for cls in (ModelConfig, ClassifierConfig, Seq2SeqConfig)}
    assert nested == {"ModelConfig": ["stack"], "ClassifierConfig": ["stack"], "Seq2SeqConfig": ["encoder", "decoder"]}
    stack_fields = {f.name for f in dataclasses.fields(StackConfig)}
    for cls in (ModelConfig, ClassifierConfig, Seq2SeqConfig):  # no stack option is declared a second time
        own = {f.name for f in dataclasses.fields(cls)} - {"stack", "encoder", "decoder"}
        assert not own & (stack_fields - {"dropout"}) and ("dropout" not in own or cls is Seq2SeqConfig)


def test_owners_keep_their_own_defaults():
    assert ModelConfig().stack.hidden_size == 256 and ClassifierConfig().stack.hidden_size == 128
    cfg = Seq2SeqConfig()
    assert cfg.encoder.bidirectional and not cfg.decoder.bidirectional and cfg.decoder.num_layers == 4


@pytest.mark.parametrize("cls, names", [
    (ModelConfig, {"hidden_size", "num_layers", "zoneout", "residual", "embedding_size", "tie_weights"}),
    (ClassifierConfig, {"hidden_size", "bidirectional", "pooling", "proj_size"}),
    (Seq2SeqConfig, {"encoder_hidden_size", "encoder_bidirectional", "decoder_residual", "decoder_layers", "dropout",
                     "encoder_dropout", "attention"}),
])
def test_command_line_names_are_the_flat_names_users_know(cls, names):
    known = [o.name for o in options(cls)]
    assert names <= set(known) and len(known) == len(set(known))
    assert "bidirectional" not in known or cls is not ModelConfig
    assert "decoder_bidirectional" not in known


@pytest.mark.parametrize("cls, flat, nested", [
    (ModelConfig, {"hidden_size": 64, "num_layers": 3, "residual": 2, "zoneout": [0.1, 0.05], "embedding_size": 8},
     {"stack": {"hidden_size": 64, "num_layers": 3, "residual": 2, "zoneout": [0.1, 0.05]}, "embedding_size": 8}),
    (ClassifierConfig, {"layers": [{"cell": "gru", "hidden_size": 8, "bidirectional": True}], "pooling": "max"},
     {"stack": {"layers": [{"cell": "gru", "hidden_size": 8, "bidirectional": True}]}, "pooling": "max"}),
    (Seq2SeqConfig, {"encoder_hidden_size": 32, "decoder_num_layers": 2, "decoder_residual": 2, "dropout": 0.3},
     {"encoder": {"hidden_size": 32, "dropout": 0.3}, "decoder": {"num_layers": 2, "residual": 2, "dropout": 0.3},
      "dropout": 0.3}),
])
def test_the_flat_layout_of_earlier_configs_and_runs_loads_as_the_nested_one(cls, flat, nested):
    old, new = from_dict(cls, flat, "model"), from_dict(cls, nested, "model")
    assert old == new
    assert from_dict(cls, to_dict(new), "model") == new  # what a run writes reads back the same


def test_a_translation_model_s_dropout_is_its_stacks_unless_they_set_their_own():
    cfg = from_dict(Seq2SeqConfig, {"dropout": 0.4, "decoder": {"dropout": 0.1}}, "model")
    assert (cfg.dropout, cfg.encoder.dropout, cfg.decoder.dropout) == (0.4, 0.4, 0.1)
    assert Seq2SeqConfig().encoder.dropout == Seq2SeqConfig().dropout == 0.2


def test_a_key_in_both_layouts_is_refused_naming_both():
    with pytest.raises(InputError, match="both hidden_size and stack.hidden_size"):
        from_dict(ModelConfig, {"hidden_size": 8, "stack": {"hidden_size": 16}}, "model")


def test_a_saved_run_config_of_the_flat_layout_loads():
    tables = {"task": "translate", "model": {"encoder_hidden_size": 16, "decoder_hidden_size": 32, "encoder_num_layers": 1},
              "data": {"data": "pairs.txt"}, "train": {"epochs": 1}}
    cfg = RunConfig.from_tables(tables, "runs/old/config.toml")
    assert (cfg.model.encoder.hidden_size, cfg.model.encoder.num_layers, cfg.model.decoder.hidden_size) == (16, 1, 32)


def test_a_saved_run_keeps_how_it_was_trained_when_an_option_s_default_changes(tmp_path):
    """Translation runs saved before scaled attention existed computed unscaled scores: loaded from their run
    directory they still do (`saved=False`), in the flat layout too; a new config, or a run saved since, gets
    what it says."""
    from stackrnn.config import dumps_toml
    from stackrnn.run import RunDir

    old = {"task": "translate", "model": {"encoder_hidden_size": 16, "attention": "general"}, "data": {"data": "p.txt"},
           "train": {"epochs": 1}}
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.toml").write_text(dumps_toml(old))
    assert RunConfig.of_run(RunDir.open(tmp_path / "old", need=("config.toml",))).model.scaled_attention is False
    assert RunConfig.of_run(RunDir.open(tmp_path / "old", need=("config.toml",))).model.encoder.hidden_size == 16
    assert RunConfig.from_tables(old, "a new config").model.scaled_attention is True
    (tmp_path / "new").mkdir()
    new = RunConfig.from_tables(old, "a new config")
    (tmp_path / "new" / "config.toml").write_text(new.to_toml())
    assert RunConfig.of_run(RunDir.open(tmp_path / "new", need=("config.toml",))) == new


def test_stack_errors_name_the_nested_key():
    with pytest.raises(InputError, match=r"^model\.stack\.num_layers: expected an integer >= 1"):
        from_dict(ModelConfig, {"stack": {"num_layers": 0}}, "model")
    with pytest.raises(InputError, match=r"^model\.stack\.bidirectional: this stack reads left to right"):
        from_dict(ModelConfig, {"stack": {"bidirectional": True}}, "model")
    with pytest.raises(InputError, match=r"^model\.decoder\.layers\[0\]"):
        from_dict(Seq2SeqConfig, {"decoder": {"layers": [{"hidden_size": 8, "bidirectional": True}]}}, "model")
    with pytest.raises(InputError, match=r"model\.stack: expected a table"):
        from_dict(ModelConfig, {"stack": 3}, "model")
