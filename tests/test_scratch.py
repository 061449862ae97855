"""The memory kept for weight drop's dropped W_hh (stackrnn/scratch.py, reusable): the same memory from call to
call once nothing holds it, fresh memory off the CPU."""

import pytest
import torch

from stackrnn import scratch


@pytest.fixture(autouse=True)
def clean():
    scratch.release()
    yield
    scratch.release()


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
