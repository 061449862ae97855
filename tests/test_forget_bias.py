"""forget_bias: a constant on every LSTM forget gate, equal on every path to the same stack with its b_hf shifted by
hand, and a setting of every task's stack (config key, flag, fit keyword)."""

import pytest
import torch

from stackrnn import GRU, LSTM, StackedRNN
from stackrnn.cli import make_parser
from stackrnn.config import from_options
from stackrnn.models.lm import ModelConfig
from stackrnn.models.seq2seq import Seq2SeqConfig


def _pair(fused: bool, **options):
    """A stack with forget_bias 1.5 and the same stack without it whose b_hh carries +1.5 on the forget quarter."""
    torch.manual_seed(0)
    biased = StackedRNN(3, layers=[LSTM(5, forget_bias=1.5, **options), LSTM(4, forget_bias=1.5, **options)],
                        fused=fused).double()
    shifted = StackedRNN(3, layers=[LSTM(5, **options), LSTM(4, **options)], fused=fused).double()
    shifted.load_state_dict(biased.state_dict())  # the constant is in no parameter and no buffer that is saved
    with torch.no_grad():
        for layer in shifted.layers:
            H = layer.spec.hidden_size
            layer.cell.bias_hh[H:2 * H] += 1.5
    return biased, shifted


@pytest.mark.parametrize("fused, options", [(True, {}), (False, {}), (True, {"layer_norm": True}),
                                            (True, {"zoneout": 0.2})], ids=["fused", "loop", "engine-ln", "engine-zo"])
def test_equals_the_stack_with_its_forget_bias_shifted_by_hand(fused, options):
    biased, shifted = _pair(fused, **options)
    biased.eval(), shifted.eval()  # (zoneout's expectation: the same on both sides)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    out_b, state_b = biased(x, lengths=[6, 4])
    out_s, state_s = shifted(x, lengths=[6, 4])
    torch.testing.assert_close(out_b, out_s)
    torch.testing.assert_close(state_b[-1][1], state_s[-1][1])
    (out_b.sum() + state_b[-1][1].sum()).backward()
    (out_s.sum() + state_s[-1][1].sum()).backward()
    for (name, p), q in zip(biased.named_parameters(), shifted.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_it_changes_the_gates_and_only_lstm_layers_with_biases_take_it():
    biased, shifted = _pair(True)
    plain = StackedRNN(3, layers=[LSTM(5), LSTM(4)]).double()
    plain.load_state_dict(biased.state_dict())
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    assert not torch.allclose(biased(x)[0], plain(x)[0])
    assert set(biased.state_dict()) == set(plain.state_dict())
    for bad in (lambda: GRU(4, forget_bias=1.0), lambda: LSTM(4, bias=False, forget_bias=1.0),
                lambda: LSTM(4, forget_bias=float("nan"))):
        with pytest.raises(ValueError, match="forget_bias"):
            bad()
    with pytest.raises(ValueError, match="torch.nn has no forget_bias"):
        StackedRNN(3, layers=[LSTM(4, forget_bias=1.0)] * 2).to_torch()


def test_every_task_s_stack_takes_it_from_its_config_and_its_flags():
    assert [s.forget_bias for s in from_options(ModelConfig, forget_bias=1.0).layer_specs()] == [1.0, 1.0]
    cfg = from_options(Seq2SeqConfig, encoder_forget_bias=2.0)
    assert cfg.encoder_specs()[0].forget_bias == 2.0 and cfg.decoder_specs()[0].forget_bias == 0.0
    table = from_options(ModelConfig, layers=[{"cell": "lstm", "hidden_size": 4, "forget_bias": 0.5}]).layer_specs()
    assert table[0].forget_bias == 0.5
    train_help = make_parser("translate")._subparsers._group_actions[0].choices["train"].format_help()
    assert "--encoder-forget-bias" in train_help and "--decoder-forget-bias" in train_help
