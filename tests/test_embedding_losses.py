"""The embedding family (rows of D features: cosine_embedding_loss, triplet_margin_loss,
triplet_margin_with_distance_loss): the compiled row kernels against the reference twins on
every SIMD path, against torch (values and every gradient), finite differences, the gradient
buffers, errors, thread counts and the torch bridge."""

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss._losses import LOSSES, losses

from _helpers import assert_close

EMB = [s.name for s in losses("embedding")]
REDUCTIONS = ("none", "mean", "sum")


def _arrays(name, shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape).astype(dtype)
    if name == "cosine_embedding_loss":
        b = rng.standard_normal(shape).astype(dtype)
        y = rng.choice([-1.0, 1.0], shape[:-1]).astype(dtype)
        return a, b, y
    b = (a + 0.7 * rng.standard_normal(shape)).astype(dtype)
    return a, b, rng.standard_normal(shape).astype(dtype)


def _cases(name):
    """(shape, options): defaults, the row's examples, unbatched, odd widths, many rows."""
    spec = LOSSES[name]
    out = [((23, 37), {})] + [((23, 37), dict(e)) for e in spec.examples]
    if name == "triplet_margin_loss":
        out += [((23, 37), {"p": np.inf}), ((23, 37), {"p": 0.5, "swap": True})]
    out += [((37,), {}), ((3, 300), {}), ((0, 4), {}), ((4, 0), {})]
    # one feature: cos is +-1 and its gradient rounding noise around 0
    return out + ([((5, 1), {})] if name != "cosine_embedding_loss" else [])


def _grads_of(name, arrays):
    return arrays[:2] if name == "cosine_embedding_loss" else arrays


@pytest.mark.parametrize("name", EMB)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_compiled_matches_reference_on_every_simd_path(simd, name, dtype):
    fn, ref = getattr(fastloss, name), getattr(REF, name)
    for shape, opts in _cases(name):
        arrays = _arrays(name, shape, dtype)
        for reduction in REDUCTIONS:
            rows = shape[:-1]
            go = np.random.default_rng(1).random(rows) if reduction == "none" else 0.75
            kw = dict(reduction=reduction, return_grad=True, grad_output=go, **opts)
            got, exp = fn(*arrays, **kw), ref(*arrays, **kw)
            msg = f"{shape} {opts} {reduction}"
            assert_close(got[0], exp[0], dtype, err_msg=msg)
            for g, e, arr in zip(got[1], exp[1], _grads_of(name, arrays)):
                assert g.shape == arr.shape and g.dtype == dtype, msg
                assert_close(g, e, dtype, err_msg=msg)


def _torch_call(name, arrays, reduction, opts):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    ts = [torch.tensor(a) for a in arrays]
    wrt = ts[:2] if name == "cosine_embedding_loss" else ts
    for t in wrt:
        t.requires_grad_(True)
    kw = dict(opts)
    if kw.get("distance_function") == "cosine":
        kw["distance_function"] = lambda u, v: 1 - F.cosine_similarity(u, v)
    loss = getattr(F, name)(*ts, reduction=reduction, **kw)
    grads = torch.autograd.grad(loss.sum(), wrt)
    return loss.detach().numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("name", EMB)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_matches_torch(name, reduction, dtype):
    for shape, opts in _cases(name):
        if 0 in shape:
            continue
        arrays = _arrays(name, shape, dtype, seed=2)
        if name == "cosine_embedding_loss" and len(shape) == 2 and shape[0] > 4:
            arrays[2][:4] = [0.0, 2.0, 1.0, -1.0]  # torch: other targets give 0
            arrays[0][3] = 0.0  # a zero row
        loss, grads = getattr(fastloss, name)(
            *arrays, reduction=reduction, return_grad=True, **opts
        )
        tl, tg = _torch_call(name, arrays, reduction, opts)
        assert_close(loss, tl, dtype, err_msg=str(opts))
        for g, t in zip(grads, tg):
            assert_close(g, t, dtype, rtol=1e-3 if dtype == np.float32 else None, err_msg=str(opts))


@pytest.mark.parametrize("name", EMB)
def test_every_gradient_matches_finite_differences(name):
    for _, opts in _cases(name)[:3]:
        arrays = [np.array(a) for a in _arrays(name, (4, 6), np.float64, seed=3)]
        fn = getattr(fastloss, name)
        _, grads = fn(*arrays, reduction="mean", return_grad=True, **opts)
        for k, g in enumerate(grads):
            num = np.empty_like(arrays[k])
            h = 1e-6
            for i in np.ndindex(arrays[k].shape):
                vals = []
                for step in (h, -h):
                    args = [x.copy() for x in arrays]
                    args[k][i] += step
                    vals.append(float(fn(*args, reduction="mean", **opts)))
                num[i] = (vals[0] - vals[1]) / (2 * h)
            np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8, err_msg=str(opts))


@pytest.mark.parametrize("name", EMB)
def test_grad_out_and_errors(name):
    arrays = _arrays(name, (10, 7), np.float32)
    fn = getattr(fastloss, name)
    k = len(LOSSES[name].differentiable)
    bufs = tuple(np.empty_like(a) for a in arrays[:k])
    _, grads = fn(*arrays, return_grad=True, grad_out=bufs)
    assert all(g is b for g, b in zip(grads, bufs))
    with pytest.raises(TypeError, match=f"tuple of {k} arrays"):
        fn(*arrays, return_grad=True, grad_out=bufs[:1])
    with pytest.raises(ValueError, match="must all be 1-d"):
        fn(arrays[0], arrays[1][0], arrays[2])  # torch: same number of dimensions
    with pytest.raises(ValueError, match="grad_output"):
        fn(*arrays, grad_output=2.0)
    if name == "cosine_embedding_loss":
        with pytest.raises(ValueError, match=r"target must have shape \(10,\)"):
            fn(arrays[0], arrays[1], np.ones(9))
    if name == "triplet_margin_with_distance_loss":
        with pytest.raises(ValueError, match="distance_function"):
            fn(*arrays, distance_function="manhattan")


@pytest.mark.parametrize("name", EMB)
def test_bit_identical_for_any_thread_count(restore_threads, name):
    from fastloss import _kernels

    arrays = _arrays(name, (20001, 33), np.float32, seed=4)
    runs = []
    _kernels.thread_guard("off")
    try:
        for n in (1, 2, 3):
            fastloss.set_num_threads(n)
            loss, grads = getattr(fastloss, name)(*arrays, return_grad=True)
            runs.append(np.asarray(loss).tobytes() + b"".join(g.tobytes() for g in grads))
    finally:
        _kernels.thread_guard("reset")
    assert runs[0] == runs[1] == runs[2]


def test_torch_bridge_functions_and_modules():
    torch = pytest.importorskip("torch")
    import fastloss.torch as FL

    F = torch.nn.functional
    torch.manual_seed(0)
    for reduction in REDUCTIONS:
        for dt in (torch.float32, torch.float64):
            x1, x2 = (torch.randn(30, 9, dtype=dt, requires_grad=True) for _ in range(2))
            y = torch.sign(torch.randn(30, dtype=dt))
            cases = [
                (
                    FL.CosineEmbeddingLoss(margin=0.2, reduction=reduction)(x1, x2, y),
                    torch.nn.CosineEmbeddingLoss(margin=0.2, reduction=reduction)(x1, x2, y),
                    (x1, x2),
                )
            ]
            a, p, n = (torch.randn(30, 9, dtype=dt, requires_grad=True) for _ in range(3))
            for kw in ({}, {"swap": True}, {"p": 1.0}):
                cases.append(
                    (
                        FL.TripletMarginLoss(reduction=reduction, **kw)(a, p, n),
                        torch.nn.TripletMarginLoss(reduction=reduction, **kw)(a, p, n),
                        (a, p, n),
                    )
                )
            dist = torch.nn.PairwiseDistance()  # a torch callable runs torch's function
            cases.append(
                (
                    FL.triplet_margin_with_distance_loss(
                        a, p, n, distance_function=dist, reduction=reduction
                    ),
                    F.triplet_margin_with_distance_loss(
                        a, p, n, distance_function=dist, reduction=reduction
                    ),
                    (a, p, n),
                )
            )
            for ours, theirs, wrt in cases:
                go = torch.rand_like(ours)
                assert torch.allclose(ours, theirs, atol=1e-6)
                for u, v in zip(
                    torch.autograd.grad(ours, wrt, go), torch.autograd.grad(theirs, wrt, go)
                ):
                    assert torch.allclose(u, v, atol=1e-5)
    a, p, n = (torch.randn(5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(
        lambda u, v, w: FL.triplet_margin_loss(u, v, w, margin=3.0), (a, p, n)
    )
    s = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda u, v: FL.cosine_embedding_loss(u, v, s, margin=-1.0), (a, p)
    )
