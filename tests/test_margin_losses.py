"""The classification margin losses (rows of C classes: multi_margin_loss,
multilabel_margin_loss, multilabel_soft_margin_loss): the compiled row kernels against the
reference twins on every SIMD path, against torch (values and gradients, every option and
reduction, torch's edge cases), finite differences, grad_output / grad_out, errors, thread
counts and the torch bridge."""

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss._losses import losses

from _helpers import assert_close

MARGIN = [s.name for s in losses("margin")]
REDUCTIONS = ("none", "mean", "sum")


def _targets(name, shape, rng):
    C = shape[-1]
    if name == "multi_margin_loss":
        return rng.integers(0, C, shape[:-1])
    if name == "multilabel_soft_margin_loss":
        t = (rng.random(shape) < 0.4).astype(np.float64)
        return t
    # index lists ended by -1, duplicates, rows listing none or every class, entries after -1
    t = rng.integers(-1, C, shape)
    if len(shape) == 2 and shape[0] >= 4 and C >= 3:
        t[0] = -1  # no target
        t[1] = rng.permutation(C)  # every class listed
        t[2, :3] = [1, 1, -1]  # a duplicate
        t[3, :2] = [-1, 0]  # an entry after the -1
    return t


def _cases(name):
    """(shape, options): defaults, options, weights, unbatched, odd widths, many classes."""
    out = [((23, 37), {}), ((37,), {}), ((5, 1), {}), ((3, 300), {}), ((0, 4), {})]
    if name == "multi_margin_loss":
        out += [((23, 37), {"p": 2}), ((23, 37), {"margin": 0.3, "p": 2, "weight": True})]
        out += [((23, 37), {"margin": -0.5}), ((37,), {"p": 2, "weight": True})]
    if name == "multilabel_soft_margin_loss":
        out += [((23, 37), {"weight": True}), ((37,), {"weight": True})]
    return out


def _problem(name, shape, opts, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    t = _targets(name, shape, rng)
    if name == "multilabel_soft_margin_loss":
        t = t.astype(dtype)
    opts = dict(opts)
    if opts.get("weight") is True:
        opts["weight"] = rng.uniform(0.2, 2.0, shape[-1]).astype(dtype)
    return x, t, opts


@pytest.mark.parametrize("name", MARGIN)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_compiled_matches_reference_on_every_simd_path(simd, name, dtype):
    fn, ref = getattr(fastloss, name), getattr(REF, name)
    for shape, opts in _cases(name):
        x, t, kw0 = _problem(name, shape, opts, dtype)
        for reduction in REDUCTIONS:
            go = np.random.default_rng(1).random(shape[:-1]) if reduction == "none" else 0.75
            kw = dict(reduction=reduction, return_grad=True, grad_output=go, **kw0)
            got, exp = fn(x, t, **kw), ref(x, t, **kw)
            msg = f"{shape} {opts} {reduction}"
            assert_close(got[0], exp[0], dtype, err_msg=msg)
            assert got[1].shape == x.shape and got[1].dtype == dtype, msg
            assert_close(got[1], exp[1], dtype, err_msg=msg)


def _torch_call(name, x, t, reduction, opts):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor(x, requires_grad=True)
    kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in opts.items()}
    loss = getattr(F, name)(xt, torch.tensor(t), reduction=reduction, **kw)
    (g,) = torch.autograd.grad(loss.sum(), [xt])
    return loss.detach().numpy(), g.numpy()


@pytest.mark.parametrize("name", MARGIN)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_matches_torch(name, reduction, dtype):
    for shape, opts in _cases(name):
        if 0 in shape:
            continue  # torch's "mean" of no rows is uninitialised memory
        x, t, kw = _problem(name, shape, opts, dtype, seed=2)
        loss, grad = getattr(fastloss, name)(x, t, reduction=reduction, return_grad=True, **kw)
        tl, tg = _torch_call(name, x, t, reduction, kw)
        assert_close(loss, tl, dtype, err_msg=str(opts))
        assert_close(grad, tg, dtype, rtol=1e-3 if dtype == np.float32 else None, err_msg=str(opts))


def test_torch_edge_cases():
    """Duplicates count twice, entries after -1 are ignored, rows listing none or all; exact
    hinge ties (z = 0: strict subgradient 0); saturated soft margin stays finite."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.array([[0.0, 1.0, 0.5, -0.5], [0.2, 0.2, 0.2, 0.2], [3.0, -2.0, 0.0, 1.0]])
    t = np.array([[1, 1, -1, 2], [-1, 0, 1, 2], [0, 1, 2, 3]])
    for dtype in (np.float32, np.float64):
        xd = x.astype(dtype)
        loss, grad = fastloss.multilabel_margin_loss(xd, t, reduction="none", return_grad=True)
        tl, tg = _torch_call("multilabel_margin_loss", xd, t, "none", {})
        assert_close(loss, tl, dtype)
        assert_close(grad, tg, dtype)
        assert loss[1] == 0 and loss[2] == 0  # no target listed / every class listed
        y = np.array([1, 0, 3])  # x[0]: margin - x_y + x_i = 0 at i = 0 (a tie)
        for p in (1, 2):
            loss, grad = fastloss.multi_margin_loss(xd, y, p=p, return_grad=True)
            tl, tg = _torch_call("multi_margin_loss", xd, y, "mean", {"p": p})
            assert_close(loss, tl, dtype)
            assert_close(grad, tg, dtype)
    big = np.array([[80.0, -80.0, 1e4, -1e4]], dtype=np.float32)
    lab = np.array([[0.0, 1.0, 0.0, 1.0]], dtype=np.float32)
    loss = fastloss.multilabel_soft_margin_loss(big, lab)
    assert np.isfinite(loss)
    expect = F.multilabel_soft_margin_loss(
        torch.tensor(big, dtype=torch.float64), torch.tensor(lab)
    )
    np.testing.assert_allclose(loss, expect.item(), rtol=1e-5)


@pytest.mark.parametrize("name", MARGIN)
def test_gradient_matches_finite_differences(name):
    for _, opts in _cases(name)[:1] + _cases(name)[5:]:
        x, t, kw = _problem(name, (4, 6), opts, np.float64, seed=3)
        fn = getattr(fastloss, name)
        _, g = fn(x, t, reduction="mean", return_grad=True, **kw)
        num = np.empty_like(x)
        h = 1e-6
        for i in np.ndindex(x.shape):
            vals = []
            for step in (h, -h):
                xs = x.copy()
                xs[i] += step
                vals.append(float(fn(xs, t, reduction="mean", **kw)))
            num[i] = (vals[0] - vals[1]) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-7, err_msg=str(opts))


@pytest.mark.parametrize("name", MARGIN)
def test_grad_output_grad_out_and_errors(name):
    x, t, _ = _problem(name, (10, 7), {}, np.float32)
    fn = getattr(fastloss, name)
    buf = np.empty_like(x)
    loss, g = fn(x, t, return_grad=True, grad_out=buf, grad_output=2.0, reduction="sum")
    assert g is buf
    _, g1 = fn(x, t, return_grad=True, reduction="sum")
    np.testing.assert_allclose(buf, 2 * g1, rtol=1e-6)
    go = np.arange(10.0)
    _, gn = fn(x, t, return_grad=True, reduction="none", grad_output=go)
    np.testing.assert_allclose(gn, g1 * go[:, None], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="grad_output"):
        fn(x, t, grad_output=2.0)
    with pytest.raises(ValueError, match=r"input must be \(N, C\)"):
        fn(x[None], t[None])
    with pytest.raises(ValueError, match="target must have (the input.s )?shape"):
        fn(x, t[:5])
    if name == "multi_margin_loss":
        with pytest.raises(ValueError, match="p must be 1 or 2"):
            fn(x, t, p=3)
        with pytest.raises(ValueError, match=r"weight must have shape \(7,\)"):
            fn(x, t, weight=np.ones(6))
        with pytest.raises(TypeError, match="integer class indices"):
            fn(x, t.astype(np.float32))
        for bad in (7, -1):
            tb = t.copy()
            tb[4] = bad
            for backend in ("compiled", "reference"):
                with fastloss.use_backend(backend), pytest.raises(IndexError, match="out of range"):
                    fn(x, tb)
    if name == "multilabel_margin_loss":
        for bad in (7, -2):
            tb = t.copy()
            tb[3] = -1
            tb[3, 5] = bad  # after the -1: still checked, as torch
            for backend in ("compiled", "reference"):
                with fastloss.use_backend(backend), pytest.raises(IndexError, match="out of range"):
                    fn(x, tb)


def test_out_of_range_target_is_an_error_in_torch_too():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    with pytest.raises(RuntimeError, match="out of range"):
        F.multi_margin_loss(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(RuntimeError):
        F.multilabel_margin_loss(torch.zeros(1, 3), torch.tensor([[0, -1, 3]]))


@pytest.mark.parametrize("name", MARGIN)
def test_bit_identical_for_any_thread_count(restore_threads, name):
    from fastloss import _kernels

    x, t, kw = _problem(name, (20001, 33), {}, np.float32, seed=4)
    runs = []
    _kernels.thread_guard("off")
    try:
        for n in (1, 2, 3):
            fastloss.set_num_threads(n)
            loss, grad = getattr(fastloss, name)(x, t, return_grad=True, **kw)
            runs.append(np.asarray(loss).tobytes() + grad.tobytes())
    finally:
        _kernels.thread_guard("reset")
    assert runs[0] == runs[1] == runs[2]


def test_torch_bridge_functions_and_modules():
    torch = pytest.importorskip("torch")
    import fastloss.torch as FL

    torch.manual_seed(0)
    for reduction in REDUCTIONS:
        for dt in (torch.float32, torch.float64):
            x = torch.randn(30, 9, dtype=dt, requires_grad=True)
            y = torch.randint(0, 9, (30,))
            lists = torch.randint(-1, 9, (30, 9))
            labels = (torch.rand(30, 9) < 0.3).to(dt)
            w = torch.rand(9, dtype=dt) + 0.5
            cases = [
                (FL.MultiMarginLoss, torch.nn.MultiMarginLoss, {}, y),
                (FL.MultiMarginLoss, torch.nn.MultiMarginLoss, {"p": 2, "weight": w}, y),
                (FL.MultiLabelMarginLoss, torch.nn.MultiLabelMarginLoss, {}, lists),
                (FL.MultiLabelSoftMarginLoss, torch.nn.MultiLabelSoftMarginLoss, {}, labels),
                (
                    FL.MultiLabelSoftMarginLoss,
                    torch.nn.MultiLabelSoftMarginLoss,
                    {"weight": w},
                    labels,
                ),
            ]
            for ours_cls, theirs_cls, kw, target in cases:
                ours = ours_cls(reduction=reduction, **kw)(x, target)
                theirs = theirs_cls(reduction=reduction, **kw)(x, target)
                go = torch.rand_like(ours)
                assert torch.allclose(ours, theirs, atol=1e-6), ours_cls
                (u,) = torch.autograd.grad(ours, [x], go)
                (v,) = torch.autograd.grad(theirs, [x], go)
                assert torch.allclose(u, v, atol=1e-5), ours_cls
    with pytest.warns(UserWarning, match="deprecated"):
        out = FL.multi_margin_loss(x, y, size_average=False)
    assert torch.allclose(out, torch.nn.functional.multi_margin_loss(x, y, reduction="sum"))
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda u: FL.multi_margin_loss(u, torch.tensor([0, 1, 2, 3, 0]), p=2, margin=3.0), (x,)
    )
    lab = (torch.rand(5, 4) < 0.5).double()
    assert torch.autograd.gradcheck(lambda u: FL.multilabel_soft_margin_loss(u, lab), (x,))


# multi_margin_loss on rows of few classes: tiles of L rows transposed (margin_tiles-inl.h),
# taken for C <= 48 when a row ends in a partial vector or is one or two vectors of >= 8 lanes;
# the widths below hit both loops on every path (L = 2 .. 16) and partial tiles.
SMALL_C = (1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 15, 16, 17, 24, 31, 32, 33, 40, 48)
MM_OPTIONS = (
    {},
    {"p": 2},
    {"margin": 0.5, "weight": True},
    {"p": 2, "margin": 2.0, "weight": True},
)


def _mm_small_problem(N, C, dtype, opts, rng):
    # integers: exact hinge ties (z = 0, strict subgradient 0) in many rows
    x = rng.integers(-2, 3, (N, C)).astype(dtype) + (
        rng.random((N, C)) < 0.5
    ) * rng.standard_normal((N, C)).astype(dtype)
    t = rng.integers(0, C, N)
    kw = dict(opts)
    if kw.get("weight") is True:
        kw["weight"] = rng.uniform(0.2, 2.0, C).astype(dtype)
    return x.astype(dtype), t, kw


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_multi_margin_small_c_matches_reference_on_every_simd_path(simd, dtype):
    rng = np.random.default_rng(7)
    for C in SMALL_C:
        for N in (1, 5, 37, 131):  # below, around and above a tile of L rows, partial tiles
            for opts in MM_OPTIONS:
                x, t, kw = _mm_small_problem(N, C, dtype, opts, rng)
                for reduction in REDUCTIONS:
                    go = rng.random(N) if reduction == "none" else 0.75
                    args = dict(reduction=reduction, return_grad=True, grad_output=go, **kw)
                    got = fastloss.multi_margin_loss(x, t, **args)
                    exp = REF.multi_margin_loss(x, t, **args)
                    msg = f"C={C} N={N} {opts} {reduction}"
                    assert_close(got[0], exp[0], dtype, err_msg=msg)
                    assert_close(got[1], exp[1], dtype, err_msg=msg)
                    loss = fastloss.multi_margin_loss(x, t, reduction=reduction, **kw)
                    assert_close(loss, exp[0], dtype, err_msg=msg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_multi_margin_small_c_many_chunks_in_place_and_non_finite(simd, dtype):
    """Many chunks (each ends in a partial tile), the gradient written over the input, NaN and
    inf rows (only theirs NaN / inf, as the reference), and a target out of range inside a
    tile."""
    rng = np.random.default_rng(8)
    for C, p in ((3, 2), (10, 1), (17, 2)):
        x, t, kw = _mm_small_problem(30011, C, dtype, {"p": p, "weight": True}, rng)
        x[5, 1] = np.nan
        x[40, t[40]] = np.nan
        x[77, (t[77] + 1) % C] = np.inf
        x[78, t[78]] = np.inf  # every z = -inf: loss 0, gradient 0 (torch's; see below)
        x[79, t[79]] = -np.inf
        exp = REF.multi_margin_loss(x, t, reduction="none", return_grad=True, **kw)
        buf = x.copy()
        got = fastloss.multi_margin_loss(
            buf, t, reduction="none", return_grad=True, grad_out=buf, **kw
        )
        assert got[1] is buf
        assert_close(got[0], exp[0], dtype, err_msg=f"C={C}")
        keep = np.arange(len(t)) != 78  # the reference's 2 z step(z) is NaN at z = -inf
        assert_close(got[1][keep], exp[1][keep], dtype, err_msg=f"C={C}")
        assert got[0][78] == 0 and not np.any(got[1][78]), got[1][78]
        total = fastloss.multi_margin_loss(x, t, reduction="sum", **kw)
        assert np.isnan(total)
        tb = t.copy()
        tb[20000] = C
        with pytest.raises(IndexError, match="out of range"):
            fastloss.multi_margin_loss(x, tb, return_grad=True, **kw)


@pytest.mark.parametrize("C", [1, 3, 10, 16, 33])
@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin_small_c_matches_torch(C, p):
    """Also torch's value where x_y = +inf: loss 0, gradient 0."""
    rng = np.random.default_rng(9)
    for dtype in (np.float32, np.float64):
        x, t, kw = _mm_small_problem(203, C, dtype, {"p": p, "margin": 0.7, "weight": True}, rng)
        for reduction in REDUCTIONS:
            loss, grad = fastloss.multi_margin_loss(
                x, t, reduction=reduction, return_grad=True, **kw
            )
            tl, tg = _torch_call("multi_margin_loss", x, t, reduction, kw)
            assert_close(loss, tl, dtype, err_msg=f"{reduction}")
            assert_close(grad, tg, dtype, rtol=1e-3 if dtype == np.float32 else None)
        x[3, t[3]] = np.inf
        loss, grad = fastloss.multi_margin_loss(x, t, reduction="none", return_grad=True, **kw)
        tl, tg = _torch_call("multi_margin_loss", x, t, "none", kw)
        assert_close(loss, tl, dtype)
        assert_close(grad, tg, dtype, rtol=1e-3 if dtype == np.float32 else None)
