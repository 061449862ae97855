"""The engine's products by the compiled gemm (stackrnn/matmul.py, stackrnn/csrc/gemm.h): torch.mm's results for
every shape around the register block's edges, any strides, with and without a sum added, bit for bit the same
on one thread and two, and the linear layer's hand-written backward gradchecked in float64. Skipped where the C
kernels cannot be built here (matmul then hands every product to torch, which test_engine covers)."""

import warnings

import pytest
import torch

from stackrnn import kernels, matmul, settings


@pytest.fixture(autouse=True)
def built(monkeypatch):
    """The kernels built, and every product here chosen for the compiled gemm (on Intel it leaves the big ones
    to torch.mm by default)."""
    monkeypatch.setattr(settings, "matmul", "compiled")
    if kernels._compiler() is None:
        pytest.skip("no C compiler here")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if kernels.steps() is None:
            pytest.skip(f"the C kernels could not be built here with {kernels._compiler()}")


@pytest.fixture
def compiled_only(monkeypatch):
    """torch.mm and torch.addmm fail from here on: proof that matmul's products ran the compiled gemm."""
    def refuse(*args, **kwargs):
        raise AssertionError("torch's product was called")
    monkeypatch.setattr(matmul.torch, "mm", refuse)
    monkeypatch.setattr(matmul.torch, "addmm", refuse)


def _reference(a, b, add=None):
    """a @ b (+ add) in float64, the values to compare with."""
    out = a.double() @ b.double()
    return out if add is None else out + add.double()


def _layouts(rows, cols, dtype, generator):
    """The same kind of matrix laid out four ways: row-major, column-major (a transposed view), every other
    column of a wider one, and one row broadcast over all rows (stride 0)."""
    make = lambda *shape: torch.randn(*shape, dtype=dtype, generator=generator)  # noqa: E731
    return {"rows": make(rows, cols), "columns": make(cols, rows).t(), "strided": make(rows, 2 * cols)[:, ::2],
            "broadcast": make(1, cols).expand(rows, cols)}


# Sizes on both sides of every register block the kernel may be built with (rows per tile: 4, 6 or 8; columns per
# panel: 8 to 48), and beyond one block of rows (gemm.h's BLOCK_VALUES over K)
SHAPES = [(1, 1, 1), (1, 7, 1), (3, 5, 2), (5, 9, 17), (7, 3, 47), (8, 16, 48), (9, 33, 49), (13, 2, 95),
          (17, 64, 97), (32, 20, 128), (50, 1, 200), (300, 1000, 30)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("M, K, N", SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in SHAPES])
def test_products_equal_torchs_for_every_shape_and_layout(M, K, N, dtype, compiled_only):
    generator = torch.Generator().manual_seed(M * 1000 + K * 10 + N)
    tolerance = 1e-12 if dtype == torch.float64 else 2e-6
    for a_name, a in _layouts(M, K, dtype, generator).items():
        for b_name, b in _layouts(K, N, dtype, generator).items():
            got, want = matmul.mm(a, b), _reference(a, b)
            scale = (a.double().abs() @ b.double().abs()).max().item()  # the sums' size, without cancellation
            assert got.dtype == dtype and got.shape == (M, N)
            assert (got.double() - want).abs().max().item() <= tolerance * scale, (a_name, b_name)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_a_sum_added_in_the_product_a_matrix_a_bias_row_and_a_transposed_one(dtype, compiled_only):
    generator = torch.Generator().manual_seed(1)
    tolerance = 1e-12 if dtype == torch.float64 else 2e-6
    a, b = torch.randn(19, 23, dtype=dtype, generator=generator), torch.randn(23, 61, dtype=dtype, generator=generator)
    for add in (torch.randn(19, 61, dtype=dtype, generator=generator),  # a whole matrix
                torch.randn(61, dtype=dtype, generator=generator),  # a bias, for every row
                torch.randn(61, 19, dtype=dtype, generator=generator).t()):  # columns along memory: copied first
        got = matmul.mm(a, b, add)
        torch.testing.assert_close(got.double(), _reference(a, b, add), atol=tolerance * 30, rtol=tolerance)


def test_a_packed_weight_serves_every_step_and_its_room_is_kept(compiled_only):
    """The recurrence's use: one packing, many products (of different row counts too), into a given output."""
    lib = matmul.library(torch.empty(1))
    generator = torch.Generator().manual_seed(2)
    w = torch.randn(40, 24, generator=generator)  # (N, K): the product is x w^T
    packed = matmul.Packed(lib, w.t())
    out = torch.empty(5, 40)
    for rows in (5, 5, 3, 1):
        x = torch.randn(rows, 24, generator=generator)
        got = packed(x, out=out[:rows]) if rows == 5 else packed(x)
        torch.testing.assert_close(got, x @ w.t())
    assert packed(torch.randn(5, 24), out=out) is out
    assert sorted(packed._tiles) == [(1, True), (3, True), (5, True)]


def test_an_empty_sum_gives_the_added_values_and_empty_products_run(compiled_only):
    lib = matmul.library(torch.empty(1))
    a, b, add = torch.empty(4, 0), torch.empty(0, 6), torch.randn(4, 6)
    assert torch.equal(matmul.Packed(lib, b)(a, add), add)
    assert torch.equal(matmul.Packed(lib, b)(a), torch.zeros(4, 6))
    assert matmul.Packed(lib, torch.randn(3, 5))(torch.empty(0, 3)).shape == (0, 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_the_result_is_bit_for_bit_the_same_on_one_thread_and_two(dtype, two_threads):
    """Every output is one tile's sum over all of K in order, whoever computes it: a product big enough for two
    threads, in several blocks of rows (the weight gradient's shape: a transposed, from a tall gradient, whose
    1200 rows make K; gemm.h's blocks hold about 2**17 / K rows, so its 300 rows take three), and a per-step one."""
    generator = torch.Generator().manual_seed(3)
    d, h = torch.randn(1200, 300, dtype=dtype, generator=generator), torch.randn(1200, 90, dtype=dtype,
                                                                                   generator=generator)
    lib = kernels.steps(dtype)
    assert lib.tile_space(300, 1200, 1200) < 300 * 1200  # more than one block of packed rows
    x, w = torch.randn(32, 256, dtype=dtype, generator=generator), torch.randn(1024, 256, dtype=dtype,
                                                                               generator=generator)
    shared = [matmul.mm(d.t(), h), matmul.mm(x, w.t())]
    assert kernels.steps(dtype).set_threads(2) == 2
    torch.set_num_threads(1)
    alone = [matmul.mm(d.t(), h), matmul.mm(x, w.t())]
    for a, b in zip(shared, alone):
        assert torch.equal(a, b)
    scale = (d.t().double().abs() @ h.double().abs()).max().item()  # the sums' size, without cancellation
    assert (shared[0].double() - _reference(d.t(), h)).abs().max().item() <= 2e-6 * scale


def test_other_dtypes_devices_and_mixed_inputs_go_to_torch():
    a = torch.randn(3, 4)
    for args in ((a.bfloat16(), a.t().bfloat16()), (a.half(), a.t().half())):
        torch.testing.assert_close(matmul.mm(*args).float(), (args[0].float() @ args[1].float()), atol=0.05, rtol=0.02)
    assert matmul.library(a.long()) is None and matmul.library(a, a.double()) is None


def _linear_case(dtype, bias=True, generator=None):
    x = torch.randn(5, 3, 7, dtype=dtype, generator=generator, requires_grad=True)
    w = torch.randn(11, 7, dtype=dtype, generator=generator, requires_grad=True)
    b = torch.randn(11, dtype=dtype, generator=generator, requires_grad=True) if bias else None
    return x, w, b


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no bias"])
def test_linear_gradcheck_in_float64(bias):
    x, w, b = _linear_case(torch.float64, bias, torch.Generator().manual_seed(4))
    assert "Linear" in type(matmul.linear(x, w, b).grad_fn).__name__  # the hand-written backward, not torch's
    assert torch.autograd.gradcheck(matmul.linear, (x, w, b) if bias else (x, w))


def test_linear_equals_torchs_forward_and_backward_in_float32_and_with_a_broadcast_gradient(compiled_only):
    """The upstream gradient of a sum is a broadcast (stride 0) tensor: the gemm reads it as it is."""
    x, w, b = _linear_case(torch.float32, generator=torch.Generator().manual_seed(5))
    got, want = matmul.linear(x, w, b), torch.nn.functional.linear(x, w, b)
    assert "Linear" in type(got.grad_fn).__name__  # matmul's Function, not torch's
    torch.testing.assert_close(got, want)
    for g, t in zip(torch.autograd.grad(got.sum(), (x, w, b)), torch.autograd.grad(want.sum(), (x, w, b))):
        torch.testing.assert_close(g, t)


def test_linear_under_autocast_and_without_kernels_is_torchs(monkeypatch):
    x, w, b = _linear_case(torch.float32, generator=torch.Generator().manual_seed(6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert matmul.linear(x, w, b).dtype == torch.bfloat16  # autocast's precision, as torch's linear gives
    monkeypatch.setattr(settings, "kernels", "off")
    assert "Linear" not in type(matmul.linear(x, w, b).grad_fn).__name__


@pytest.mark.parametrize("G, D", [(1024, 28), (40, 40), (12, 200), (97, 5)])
def test_a_weights_gradient_either_way_round_equals_torchs(G, D, compiled_only):
    """weight_grad computes dy^T x as (x^T dy)^T, written transposed, where G is the longer side, else as it is."""
    generator = torch.Generator().manual_seed(G + D)
    dy, x = torch.randn(70, G, generator=generator), torch.randn(70, D, generator=generator)
    for a, b in ((dy, x), (dy[::2], x[::2]), (dy.t().contiguous().t(), x)):
        got = matmul.weight_grad(a, b)
        assert got.shape == (G, D) and got.is_contiguous()
        torch.testing.assert_close(got.double(), _reference(a.t(), b), atol=1e-5, rtol=1e-5)


def test_a_transposed_output_is_written_as_such(compiled_only):
    lib = matmul.library(torch.empty(1))
    generator = torch.Generator().manual_seed(8)
    a, b = torch.randn(9, 30, generator=generator), torch.randn(30, 50, generator=generator)
    out = torch.full((50, 9), float("nan"))
    matmul.Packed(lib, b)(a, out=out.t())
    torch.testing.assert_close(out.t().double(), _reference(a, b), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="columns along memory"):
        matmul.Packed(lib, b)(a, add=torch.zeros(50), out=out.t())


def test_inputs_that_do_not_fit_are_refused_and_broadcast_sums_are_added_as_torch_adds_them():
    lib = matmul.library(torch.empty(1))
    generator = torch.Generator().manual_seed(9)
    a, b = torch.randn(3, 4, generator=generator), torch.randn(4, 6, generator=generator)
    packed = matmul.Packed(lib, b)
    for bad in (dict(a=torch.randn(3, 5)), dict(a=a.double()), dict(a=a, add=torch.randn(5)),
                dict(a=a, out=torch.empty(3, 5)), dict(a=a, add=torch.randn(6).double())):
        with pytest.raises(ValueError, match="matmul"):
            packed(bad.pop("a"), **bad)
    with pytest.raises(ValueError, match="matmul"):
        matmul.mm(torch.randn(3, 4), torch.randn(5, 6))
    with pytest.raises(ValueError, match="matmul"):
        matmul.linear(torch.randn(2, 3), torch.randn(4, 5))
    for add in (torch.randn(3, 1, generator=generator), torch.tensor(2.0), torch.randn(1, 6, generator=generator)):
        torch.testing.assert_close(matmul.mm(a, b, add), torch.addmm(add, a, b))


def test_the_big_products_go_to_torch_where_chosen_and_the_recurrences_stay_compiled(monkeypatch):
    """STACKRNN_MATMUL=torch: mm, weight_grad and linear call torch's product (with equal results); a Packed weight
    (the recurrence's) still runs the compiled gemm. auto follows the processor (Intel with MKL: torch)."""
    calls = []
    real_mm = torch.mm
    monkeypatch.setattr(matmul.torch, "mm", lambda *args: calls.append("mm") or real_mm(*args))
    a, b = torch.randn(40, 12), torch.randn(12, 9)
    for choice, by_torch in (("torch", True), ("compiled", False), ("auto", True), ("", False)):
        # "" ($STACKRNN_MATMUL set empty) is auto too, here as on a processor where torch.mm is not chosen
        monkeypatch.setattr(settings, "matmul", settings.from_environment({"STACKRNN_MATMUL": choice})["matmul"])
        monkeypatch.setattr(matmul, "_intel_with_mkl", lambda: choice == "auto")
        calls.clear()
        torch.testing.assert_close(matmul.mm(a, b), a @ b)
        torch.testing.assert_close(matmul.weight_grad(a, a), a.t() @ a)
        torch.testing.assert_close(matmul.Packed(matmul.library(b), b)(a), a @ b)
        assert calls == (["mm", "mm"] if by_torch else []), choice
        x, w, _ = _linear_case(torch.float32, generator=torch.Generator().manual_seed(6))
        assert ("Linear" in type(matmul.linear(x, w).grad_fn).__name__) is not by_torch, choice


def test_an_unknown_product_choice_is_refused_with_the_ones_there_are(monkeypatch):
    with pytest.raises(ValueError, match=r"stackrnn.settings.matmul is 'mkl': use one of auto, compiled, torch"):
        settings.matmul = "mkl"
    # from the environment it is kept as given (importing stackrnn never fails for it) and refused where it is read
    monkeypatch.setitem(vars(settings), "matmul", settings.from_environment({"STACKRNN_MATMUL": "MKL"})["matmul"])
    with pytest.raises(ValueError, match=r"STACKRNN_MATMUL is 'mkl': use one of auto, compiled, torch"):
        matmul.mm(torch.randn(2, 3), torch.randn(3, 4))


def test_auto_picks_torch_on_intel_processors_with_mkl_only(monkeypatch):
    def maker(text, mkl=True):
        monkeypatch.setattr(matmul.Path, "read_text", lambda self, errors=None: text)
        monkeypatch.setattr(matmul.torch.backends.mkl, "is_available", lambda: mkl)
        matmul._intel_with_mkl.cache_clear()
        return matmul._intel_with_mkl()
    try:
        assert not maker("vendor_id\t: AuthenticAMD\n")
        assert maker("vendor_id\t: GenuineIntel\n")
        assert not maker("vendor_id\t: GenuineIntel\n", mkl=False)
    finally:
        matmul._intel_with_mkl.cache_clear()  # this machine's own answer next time
