"""The private torch APIs stackrnn relies on (stackrnn/torch_private.py): each still there, each behaving as used.
A failure here names the API a torch release changed; see torch_private.py for who uses it and why."""

import torch
from torch.autograd import forward_ad

from stackrnn import torch_private


def test_the_fused_rnn_kernels_are_torch_nns():
    """torch._VF.lstm & co: the kernels torch.nn's modules call, with their weights as a flat list."""
    torch.manual_seed(0)
    for name, module in (("lstm", torch.nn.LSTM(3, 4)), ("gru", torch.nn.GRU(3, 4)),
                         ("rnn_tanh", torch.nn.RNN(3, 4)), ("rnn_relu", torch.nn.RNN(3, 4, nonlinearity="relu"))):
        kernel = torch_private.RNN_KERNELS[name]
        x = torch.randn(5, 2, 3)
        h0 = torch.zeros(1, 2, 4)
        hx = (h0, h0) if name == "lstm" else h0
        got = kernel(x, hx, module._flat_weights, True, 1, 0.0, False, False, False)[0]
        torch.testing.assert_close(got, module(x)[0], atol=0, rtol=0, msg=f"torch._VF.{name} changed")


def test_the_storage_use_count_counts_references():
    """torch._C._storage_Use_Count: 2 for a lone tensor (its storage object counted), more while a view holds it."""
    assert torch_private.HAS_USE_COUNT, "torch._C._storage_Use_Count is gone: scratch.reusable hands out fresh memory"
    t = torch.empty(8)
    assert torch_private.storage_use_count(t) == 2, "torch._C._storage_Use_Count counts otherwise"
    view = t[2:]
    assert torch_private.storage_use_count(t) == 3, "torch._C._storage_Use_Count does not count views"
    del view
    assert torch_private.storage_use_count(t) == 2


def test_transforms_are_seen():
    """torch._C._are_functorch_transforms_active and forward_ad._current_level."""
    assert not torch_private.transforms_active()
    seen = []
    torch.func.grad(lambda x: seen.append(torch_private.transforms_active()) or x.sum())(torch.ones(2))
    assert seen == [True], "torch._C._are_functorch_transforms_active no longer sees torch.func.grad"
    with forward_ad.dual_level():
        assert torch_private.transforms_active(), "forward_ad._current_level no longer tells forward-mode AD"


def test_the_layer_norm_backward_gives_the_input_gradient():
    """torch.ops.aten.native_layer_norm_backward from torch.native_layer_norm's saved mean and 1 / std."""
    g = torch.Generator().manual_seed(2)
    x, dy = torch.randn(4, 6, dtype=torch.float64, generator=g), torch.randn(4, 6, dtype=torch.float64, generator=g)
    _, mean, rstd = torch.native_layer_norm(x, (6,), None, None, 1e-5)
    got = torch_private.layer_norm_backward(dy, x, (6,), mean, rstd, None, None, (True, False, False))[0]
    xr = x.clone().requires_grad_(True)
    want = torch.autograd.grad(torch.nn.functional.layer_norm(xr, (6,), eps=1e-5), xr, dy)[0]
    torch.testing.assert_close(got, want, msg="torch.ops.aten.native_layer_norm_backward changed")


def test_scan_is_a_loop_over_the_first_dimension_both_ways():
    """torch._higher_order_ops.scan: graphs.py's loop over time, carry first, forward and with reverse=True."""
    assert torch_private.scan is not None, "torch._higher_order_ops.scan is gone: stackrnn export cannot keep T dynamic"
    xs = torch.arange(1.0, 5.0).unsqueeze(-1)  # (4, 1)

    def step(carry, x):
        new = carry + x
        return new, new.clone()

    for reverse, want in ((False, [1.0, 3.0, 6.0, 10.0]), (True, [10.0, 9.0, 7.0, 4.0])):
        final, ys = torch_private.scan(step, torch.zeros(1), xs, reverse=reverse)
        assert ys.squeeze(-1).tolist() == want and final.item() == 10.0, "torch._higher_order_ops.scan changed"
