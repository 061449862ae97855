"""The kept buffers for transient work (stackrnn/scratch.py): the same memory from call to call where it fits,
per name, dtype and thread, fresh tensors above the size limit and off the CPU; and the products and the
layer-normalised recurrence that use them give the same results as with fresh memory every time."""

import threading

import pytest
import torch

from stackrnn import LSTM, StackedRNN, scratch, settings


@pytest.fixture(autouse=True)
def clean():
    scratch.release()
    yield
    scratch.release()


def test_same_memory_for_the_same_name_and_a_smaller_or_equal_size():
    like = torch.empty(0)
    a = scratch.buffer("x", like, 100)
    b = scratch.buffer("x", like, 60)
    assert a.shape == (100,) and b.shape == (60,)
    assert a.data_ptr() == b.data_ptr()


def test_grows_to_the_largest_size_asked_for():
    like = torch.empty(0)
    small = scratch.buffer("x", like, 10)
    big = scratch.buffer("x", like, 1000)
    assert big.numel() == 1000 and big.data_ptr() != small.data_ptr()
    assert scratch.buffer("x", like, 500).data_ptr() == big.data_ptr()


def test_names_and_dtypes_are_kept_apart():
    a = scratch.buffer("x", torch.empty(0), 100)
    b = scratch.buffer("y", torch.empty(0), 100)
    c = scratch.buffer("x", torch.empty(0, dtype=torch.float64), 100)
    assert len({a.data_ptr(), b.data_ptr(), c.data_ptr()}) == 3
    assert c.dtype == torch.float64 and a.dtype == torch.float32


def test_above_the_limit_a_fresh_tensor_that_is_not_kept(monkeypatch):
    monkeypatch.setattr(scratch, "MAX_BYTES", 400)
    like = torch.empty(0)
    kept = scratch.buffer("x", like, 100)  # 400 bytes: kept
    first, second = scratch.buffer("x", like, 101), scratch.buffer("x", like, 101)
    assert first.data_ptr() != second.data_ptr()
    assert scratch.buffer("x", like, 100).data_ptr() == kept.data_ptr()


def test_each_thread_has_its_own():
    like = torch.empty(0)
    mine = scratch.buffer("x", like, 100).data_ptr()
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(scratch.buffer("x", like, 100).data_ptr()))
    thread.start()
    thread.join()
    assert theirs[0] != mine
    assert scratch.buffer("x", like, 100).data_ptr() == mine


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_tensors_are_always_fresh():
    like = torch.empty(0, device="cuda")
    a, b = scratch.buffer("x", like, 100), scratch.buffer("x", like, 100)
    assert a.device.type == "cuda" and a.data_ptr() != b.data_ptr()


def test_training_steps_with_kept_buffers_match_fresh_memory(monkeypatch):
    """A layer-normalised stack (its gradient of h W_hh^T kept) over two backward passes, whose products' packed
    operands are kept too, against the same with fresh memory for every buffer: the same gradients, bit for bit
    (a buffer that a computation still read when the next one wrote it would show here). The big products by the
    compiled gemm, whose packed operands are the kept ones (on Intel they would go to torch.mm)."""
    monkeypatch.setattr(settings, "matmul", "compiled")
    torch.manual_seed(0)
    stack = StackedRNN(5, layers=[LSTM(8, layer_norm=True), LSTM(6, layer_norm=True)])
    x = torch.randn(7, 3, 5)

    def grads():
        out = []
        for _ in range(2):
            stack.zero_grad()
            stack(x)[0].square().sum().backward()
            out.append([p.grad.clone() for p in stack.parameters()])
        return out

    kept = grads()
    monkeypatch.setattr(scratch, "buffer", lambda name, like, numel: torch.full((numel,), float("nan")))
    fresh = grads()
    for a, b in zip(kept, fresh):
        for ga, gb in zip(a, b):
            assert torch.equal(ga, gb)


def test_buffers_are_on_the_cpu_whatever_torchs_default_device():
    like = torch.empty(0)
    torch.set_default_device("meta")
    try:
        buf = scratch.buffer("x", like, 10)
    finally:
        torch.set_default_device(None)
    assert buf.device.type == "cpu"


def test_reusable_memory_comes_back_once_nothing_holds_it():
    owner, like = torch.empty(3), torch.empty(4, 5)
    first = scratch.reusable(owner, like)
    where = first.data_ptr()
    assert first.shape == (4, 5) and first.is_contiguous() and first.dtype == like.dtype
    second = scratch.reusable(owner, like)  # the first is alive: other memory, kept too (POOL is 2)
    assert second.data_ptr() != where
    third = scratch.reusable(owner, like)  # both kept ones in use: fresh memory, not kept
    assert third.data_ptr() not in (where, second.data_ptr())
    view = first.t()
    del first
    assert scratch.reusable(owner, like).data_ptr() not in (where, second.data_ptr())  # a view still holds it
    del view
    again = scratch.reusable(owner, like)
    kept = scratch._pools[id(owner)][0]
    assert again.data_ptr() == where and again is not kept and again._base is None  # a new tensor, not a view
    again.add_(1)  # its own version counter: autograd's checks on it say nothing about the kept one
    assert again._version != kept._version


def test_reusable_memory_is_held_by_a_graph_until_its_backward_has_run():
    owner, like = torch.empty(3), torch.empty(6)
    x = torch.randn(6, requires_grad=True)
    out = scratch.reusable(owner, like).copy_(torch.arange(6.0))
    where = out.data_ptr()
    loss = (x * out).sum()  # the graph saves out for x's gradient
    del out
    assert scratch.reusable(owner, like).data_ptr() != where
    loss.backward()
    assert torch.equal(x.grad, torch.arange(6.0))
    del loss
    assert scratch.reusable(owner, like).data_ptr() == where


def test_reusable_memory_of_another_shape_is_replaced_and_dropped_with_its_owner():
    owner = torch.empty(3)
    where = scratch.reusable(owner, torch.empty(8)).data_ptr()
    other = scratch.reusable(owner, torch.empty(2, 8, dtype=torch.float64))
    assert other.shape == (2, 8) and other.dtype == torch.float64
    assert len(scratch._pools[id(owner)]) == 1 and other.data_ptr() != where  # the free float32 one replaced
    key = id(owner)
    del owner
    assert key not in scratch._pools


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_reusable_on_the_gpu_is_fresh():
    like = torch.empty(10, device="cuda")
    assert scratch.reusable(like, like).device.type == "cuda" and not scratch._pools
