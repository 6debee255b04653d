"""cross_entropy / nll_loss / focal_loss: compiled kernels against the NumPy float64 reference.

Every compiled result is compared with fastloss.reference evaluated in float64 on the same
inputs (float32 inputs upcast exactly), with finite differences of both backends, and with
identities against independent formulas.
"""

import math
import zlib

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss.reference import _math as M

from _helpers import FLOATS, REDUCTIONS, assert_close, readonly, ref, ref_axis

DT_IDS = {np.float32: "f32", np.float64: "f64"}

# ----------------------------------------------------------------------------------------------
# problem builders
# ----------------------------------------------------------------------------------------------
# name -> (shape of the float64 base array, view taken of the dtype-cast base)
LAYOUTS = {
    "NC": ((13, 37), None),
    "NC-small": ((10, 3), None),
    "NC-tiles": ((77, 10), None),  # several small-C tiles, swept two at a time
    "NC-wide": ((3, 1100), None),  # > FL_FLUSH vectors per row
    "NC1": ((9, 5, 1), None),  # (N, C, 1): spatial layout with S == 1
    "NCd": ((3, 6, 21), None),
    "NCd-deep": ((2, 70, 13), None),  # > FL_FLUSH classes in the strided kernel
    "NCdd": ((2, 5, 7, 9), None),
    "NC-strided": ((26, 39), lambda b: b[::2, 1::2]),
    "NCd-strided": ((3, 12, 45), lambda b: b[:, ::2, 2::2]),
    "NC-fortran": ((11, 19), np.asfortranarray),
    "NCd-fortran": ((4, 5, 11), np.asfortranarray),
    "C": ((37,), None),  # unbatched, 0-d target
}
SWEEP_LAYOUTS = list(LAYOUTS)
LAYOUTS.update({"fd2": ((3, 4), None), "fd3": ((2, 3, 2), None)})

# case -> (function, options); "w": class weights, "ign": ignore_index, "ls": label_smoothing,
# "prob": probability targets, "gamma": focal exponent
CASES = {
    "ce": ("cross_entropy", {}),
    "ce-w": ("cross_entropy", {"w": True, "ls": 0.0}),  # explicit label_smoothing=0
    "ce-ign": ("cross_entropy", {"ign": -100}),
    "ce-ign-in": ("cross_entropy", {"ign": 1}),
    # an ignore_index beyond int32 and a negative one: the tile paths narrow targets to
    # 32-bit lanes only after masking the ignored ones
    "ce-ign-big": ("cross_entropy", {"ign": 2**40 + 3}),
    "focal-ign-neg": ("focal_loss", {"gamma": 2.0, "ign": -1}),
    "ce-w-ign-in": ("cross_entropy", {"w": True, "ign": 2}),
    "ce-ls0.1": ("cross_entropy", {"ls": 0.1}),
    "ce-ls1": ("cross_entropy", {"ls": 1.0, "ign": -100}),
    "ce-ls0.1-w-ign": ("cross_entropy", {"ls": 0.1, "w": True, "ign": -100}),
    "ce-prob": ("cross_entropy", {"prob": True}),
    "ce-prob-ls": ("cross_entropy", {"prob": True, "ls": 0.1}),
    "ce-prob-w-ls": ("cross_entropy", {"prob": True, "w": True, "ls": 0.2}),
    "focal0": ("focal_loss", {"gamma": 0.0}),
    "focal0.5-w": ("focal_loss", {"gamma": 0.5, "w": True}),
    "focal2-ign": ("focal_loss", {"gamma": 2.0, "ign": 1, "w": True}),
    "focal-default": ("focal_loss", {"ign": -100}),
    "nll": ("nll_loss", {}),
    "nll-w-ign": ("nll_loss", {"w": True, "ign": 1}),
}
TARGET_DTYPES = (np.int8, np.uint8, np.int32, np.int64)


def class_dim(shape):
    return shape[0] if len(shape) == 1 else shape[1]


def loss_shape_of(shape):
    return () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])


def make_x(rng, layout, dtype, scale=2.0):
    base_shape, view = LAYOUTS[layout]
    base = (rng.standard_normal(base_shape) * scale).astype(dtype)
    return base if view is None else view(base)


def make_index_target(rng, shape, C, tdtype=np.int64, ignore_index=None, frac=0.25, strided=False):
    lshape = loss_shape_of(shape)
    info = np.iinfo(tdtype)
    t = np.asarray(rng.integers(0, min(C, int(info.max) + 1), size=lshape), dtype=np.int64)
    if ignore_index is not None and info.min <= ignore_index <= info.max and t.size:
        mask = np.asarray(rng.random(lshape) < frac)
        if mask.all():
            mask.reshape(-1)[0] = False
        t[mask] = ignore_index
    if ignore_index is not None and t.size and C > 1 and np.all(t == ignore_index):
        t.reshape(-1)[0] = 1 if ignore_index == 0 else 0  # keep one sample
    t = t.astype(tdtype)
    if strided and t.ndim >= 1:
        t = np.repeat(t, 2, axis=-1)[..., ::2]  # same values, non-contiguous
    return t


def make_prob_target(rng, x):
    t = rng.random(x.shape)
    t[t < 0.2] = 0.0
    axis = 0 if x.ndim == 1 else 1
    s = t.sum(axis=axis, keepdims=True)
    t = np.where(s > 0, t / np.where(s > 0, s, 1), 1.0 / class_dim(x.shape))
    t = t.astype(x.dtype)
    if not x.flags.c_contiguous:  # same memory layout as x
        t = np.asfortranarray(t) if x.flags.f_contiguous else np.repeat(t, 2, axis=-1)[..., ::2]
    return t


def make_weight(rng, C):
    return rng.integers(1, 25, size=C) / 8.0  # exact in float32


def build(case, layout, dtype, tdtype=np.int64, rng=None, x=None):
    """(function name, x, target, kwargs) for a case; arrays are read-only."""
    name, opts = CASES[case]
    if x is None:
        x = make_x(rng, layout, dtype, scale=1.0 if layout.startswith("fd") else 2.0)
    C = class_dim(x.shape)
    kw = {}
    if opts.get("w"):
        kw["weight"] = readonly(make_weight(rng, C))
    if "ls" in opts:
        kw["label_smoothing"] = opts["ls"]
    if "gamma" in opts:
        kw["gamma"] = opts["gamma"]
    if opts.get("prob"):
        t = make_prob_target(rng, x)
    else:
        ign = opts.get("ign")
        if ign is not None:
            kw["ignore_index"] = ign
        t = make_index_target(rng, x.shape, C, tdtype, ign, strided=not x.flags.c_contiguous)
    return name, readonly(x), readonly(t), kw


def make_grad_output(rng, reduction, lshape):
    if reduction == "none":
        return rng.uniform(0.5, 1.5, size=lshape)
    return 0.7


def seeded(*parts):
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def call(name, *args, **kw):
    with fastloss.use_backend("compiled"):
        return getattr(fastloss, name)(*args, **kw)


def check_loss_type(loss, dtype, reduction, lshape):
    if reduction == "none":
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.dtype == dtype and loss.shape == lshape, (loss.dtype, loss.shape, lshape)
    else:
        assert type(loss) is np.dtype(dtype).type, type(loss)


def snapshot(*arrays):
    return [None if a is None else np.array(a, copy=True) for a in arrays]


def assert_unchanged(before, *arrays):
    for b, a in zip(before, arrays):
        if b is not None:
            assert np.asarray(a).tobytes() == b.tobytes(), "an input was modified"


# ----------------------------------------------------------------------------------------------
# the sweep: dtypes x reductions x options x layouts x target dtypes
# ----------------------------------------------------------------------------------------------
CASE_PARAMS = []
for _case, (_fn, _opts) in CASES.items():
    for _td in (np.int64,) if _opts.get("prob") else TARGET_DTYPES:
        CASE_PARAMS.append(pytest.param(_case, _td, id=f"{_case}-{np.dtype(_td).name}"))


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("layout", SWEEP_LAYOUTS)
@pytest.mark.parametrize("case,tdtype", CASE_PARAMS)
def test_matches_reference(compiled, case, tdtype, layout, dtype):
    """Every reduction: loss only, loss + grad, loss + grad scaled by grad_output."""
    for reduction in REDUCTIONS:
        rng = seeded(case, np.dtype(tdtype).name, layout, DT_IDS[dtype], reduction)
        name, x, t, kw = build(case, layout, dtype, tdtype, rng)
        f = getattr(fastloss, name)
        lshape = loss_shape_of(x.shape)
        before = snapshot(x, t, kw.get("weight"))

        loss = f(x, t, reduction=reduction, **kw)
        exp_loss, exp_grad = ref(name, x, t, reduction=reduction, return_grad=True, **kw)
        check_loss_type(loss, dtype, reduction, lshape)
        assert_close(loss, exp_loss, dtype, err_msg=f"loss {reduction}")

        loss2, grad = f(x, t, reduction=reduction, return_grad=True, **kw)
        check_loss_type(loss2, dtype, reduction, lshape)
        assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == x.shape
        assert not np.shares_memory(grad, x)
        assert_close(loss2, exp_loss, dtype, err_msg=f"loss with return_grad {reduction}")
        assert_close(grad, exp_grad, dtype, err_msg=f"grad {reduction}")

        go = make_grad_output(rng, reduction, lshape)
        loss3, grad3 = f(x, t, reduction=reduction, return_grad=True, grad_output=go, **kw)
        exp_loss3, exp_grad3 = ref(
            name, x, t, reduction=reduction, return_grad=True, grad_output=go, **kw
        )
        assert_close(loss3, exp_loss3, dtype, err_msg=f"loss with grad_output {reduction}")
        assert_close(grad3, exp_grad3, dtype, err_msg=f"grad with grad_output {reduction}")
        assert_unchanged(before, x, t, kw.get("weight"))


# ----------------------------------------------------------------------------------------------
# grad_out buffers
# ----------------------------------------------------------------------------------------------
BUFFER_CASES = ["ce", "ce-ls0.1-w-ign", "ce-prob-ls", "focal2-ign", "nll-w-ign"]


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("layout", ["NC", "NCd", "NC-strided", "C"])
@pytest.mark.parametrize("case", BUFFER_CASES)
def test_grad_out_buffer_is_returned(compiled, case, layout, dtype, reduction):
    rng = seeded("buf", case, layout, DT_IDS[dtype], reduction)
    name, x, t, kw = build(case, layout, dtype, rng=rng)
    go = make_grad_output(rng, reduction, loss_shape_of(x.shape))
    f = getattr(fastloss, name)
    loss0, g0 = f(x, t, reduction=reduction, return_grad=True, grad_output=go, **kw)
    buf = np.full(x.shape, np.nan, dtype=dtype)
    loss, g = f(x, t, reduction=reduction, return_grad=True, grad_output=go, grad_out=buf, **kw)
    assert g is buf and np.shares_memory(g, buf)
    np.testing.assert_array_equal(g, g0)
    np.testing.assert_array_equal(loss, loss0)
    _, exp_grad = ref(name, x, t, reduction=reduction, return_grad=True, grad_output=go, **kw)
    assert_close(g, exp_grad, dtype)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("layout", ["NC", "NC-wide", "NCd", "NCdd", "C"])
@pytest.mark.parametrize("case", BUFFER_CASES + ["focal0.5-w", "ce-prob-w-ls"])
def test_grad_out_in_place(compiled, case, layout, dtype, reduction):
    rng = seeded("inplace", case, layout, DT_IDS[dtype], reduction)
    name, x, t, kw = build(case, layout, dtype, rng=rng)
    go = make_grad_output(rng, reduction, loss_shape_of(x.shape))
    f = getattr(fastloss, name)
    loss0, g0 = f(x, t, reduction=reduction, return_grad=True, grad_output=go, **kw)
    xin = np.array(x, order="C", copy=True)
    loss, g = f(xin, t, reduction=reduction, return_grad=True, grad_output=go, grad_out=xin, **kw)
    assert g is xin
    np.testing.assert_array_equal(loss, loss0)
    np.testing.assert_array_equal(g, g0)


# ----------------------------------------------------------------------------------------------
# gradients against 4th-order central finite differences (float64)
# ----------------------------------------------------------------------------------------------
FD_CASES = [
    "ce",
    "ce-w-ign-in",
    "ce-ls0.1-w-ign",
    "ce-ls1",
    "ce-prob",
    "ce-prob-w-ls",
    "focal0.5-w",
    "focal2-ign",
    "focal0",
    "nll-w-ign",
]


def fd_grad(fun, x, h=1e-3):
    x = np.array(x, dtype=np.float64)
    g = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        vals = []
        for step in (2 * h, h, -h, -2 * h):
            xx = x.copy()
            xx[idx] += step
            vals.append(fun(xx))
        g[idx] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return g


@pytest.mark.parametrize("backend", ["reference", "compiled"])
@pytest.mark.parametrize("layout", ["fd2", "fd3"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", FD_CASES)
def test_grad_matches_finite_differences(compiled, backend, layout, reduction, case):
    rng = seeded("fd", case, layout, reduction)
    name, x, t, kw = build(case, layout, np.float64, rng=rng)
    go = make_grad_output(rng, reduction, loss_shape_of(x.shape))
    ns = REF if backend == "reference" else fastloss
    f = getattr(ns, name)

    def scalar_loss(xx):
        loss = f(xx, t, reduction=reduction, **kw)
        return float(np.sum(loss * go)) if reduction == "none" else float(loss) * go

    _, grad = f(x, t, reduction=reduction, return_grad=True, grad_output=go, **kw)
    expected = fd_grad(scalar_loss, x)
    assert_close(grad, expected, np.float64, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------------------------
# identities
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("layout", ["NC", "NCd", "NCdd", "C"])
@pytest.mark.parametrize("opts", ["plain", "w-ign"])
def test_focal_gamma0_is_cross_entropy(compiled, opts, layout, dtype, reduction):
    rng = seeded("focal0", opts, layout, DT_IDS[dtype], reduction)
    case = "ce" if opts == "plain" else "ce-w-ign-in"
    _, x, t, kw = build(case, layout, dtype, rng=rng)
    go = make_grad_output(rng, reduction, loss_shape_of(x.shape))
    tight = 1e-6 if dtype == np.float32 else 1e-13
    for ns in (fastloss, REF):
        ce, gce = ns.cross_entropy(
            x, t, reduction=reduction, return_grad=True, grad_output=go, **kw
        )
        fo, gfo = ns.focal_loss(
            x, t, gamma=0.0, reduction=reduction, return_grad=True, grad_output=go, **kw
        )
        assert_close(fo, ce, dtype, rtol=tight, atol=tight)
        assert_close(gfo, gce, dtype, rtol=tight, atol=tight)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("layout", ["NC", "NC-wide", "NCd", "NCdd", "C"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize(
    "reduction,weighted", [("mean", False), ("sum", True), ("none", True), ("none", False)]
)
def test_one_hot_probabilities_equal_index_targets(
    compiled, reduction, weighted, smoothing, layout, dtype
):
    rng = seeded("onehot", reduction, weighted, smoothing, layout, DT_IDS[dtype])
    _, x, t, _ = build("ce", layout, dtype, rng=rng)
    C = class_dim(x.shape)
    axis = 0 if x.ndim == 1 else 1
    onehot = np.moveaxis(np.eye(C, dtype=dtype)[t], -1, axis)
    kw = {"label_smoothing": smoothing}
    if weighted:
        kw["weight"] = make_weight(rng, C)
    li, gi = fastloss.cross_entropy(x, t, reduction=reduction, return_grad=True, **kw)
    lp, gp = fastloss.cross_entropy(x, onehot, reduction=reduction, return_grad=True, **kw)
    assert_close(lp, li, dtype)
    assert_close(gp, gi, dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_two_class_softmax_is_sigmoid_bce(compiled, scale, dtype, reduction):
    """CE over 2 classes == BCE-with-logits of the logit difference (independent formula)."""
    rng = seeded("binary", scale, DT_IDS[dtype], reduction)
    x = readonly((rng.standard_normal((40, 2)) * scale).astype(dtype))
    t = rng.integers(0, 2, size=40)
    go = make_grad_output(rng, reduction, (40,))
    loss, grad = fastloss.cross_entropy(x, t, reduction=reduction, return_grad=True, grad_output=go)
    x64 = x.astype(np.float64)
    z = x64[:, 1] - x64[:, 0]
    bce = getattr(fastloss, "binary_cross_entropy_with_logits", None)
    if bce is not None:
        exp_loss, dz = bce(
            z, t.astype(np.float64), reduction=reduction, return_grad=True, grad_output=go
        )
    else:
        exp_loss, dz = M.binary_cross_entropy_with_logits(
            z,
            t.astype(np.float64),
            weight=None,
            pos_weight=None,
            reduction=reduction,
            grad_output=go,
            need_grad=True,
        )
    assert_close(loss, exp_loss, dtype)
    assert_close(grad, np.stack([-dz, dz], axis=1), dtype)


# ----------------------------------------------------------------------------------------------
# determinism across thread counts, and every SIMD path
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(20000, 11), (40, 7, 750)], ids=["rows", "cols"])
@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("case", ["ce-ls0.1-w-ign", "ce-prob-ls", "focal0.5-w", "nll-w-ign"])
def test_identical_bits_with_1_and_2_threads(compiled, restore_threads, case, dtype, shape):
    rng = seeded("threads", case, DT_IDS[dtype], shape)
    x = rng.standard_normal(shape).astype(dtype)
    assert x.size >= 200_000
    name, x, t, kw = build(case, None, dtype, rng=rng, x=x)
    f = getattr(fastloss, name)
    results = {}
    for n in (1, 2):
        fastloss.set_num_threads(n)
        results[n] = [f(x, t, reduction=r, return_grad=True, **kw) for r in ("none", "mean")]
    for (l1, g1), (l2, g2) in zip(results[1], results[2]):
        assert np.asarray(l1).tobytes() == np.asarray(l2).tobytes()
        assert g1.tobytes() == g2.tobytes()
    exp_loss = ref(name, x, t, reduction="mean", **kw)
    assert_close(results[2][1][0], exp_loss, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("case", ["ce-ls0.1-w-ign", "ce-w-ign-in", "ce-prob-w-ls", "focal2-ign"])
def test_every_class_count_of_the_tile_path(simd, case, dtype):
    """Rows of up to 48 classes go through transposed tiles, in blocks of 16 (float32) or 8
    (float64) classes, and the transposes form only the columns a block has: every block
    width, several full tiles of both dtypes and a partial one, every SIMD path."""
    for C in range(1, 50):
        rng = seeded("tile-width", case, C, DT_IDS[dtype])
        x = rng.normal(0, 2, (67, C)).astype(dtype)
        name, x, t, kw = build(case, "NC", dtype, rng=rng, x=x)
        loss, grad = call(name, x, t, reduction="none", return_grad=True, **kw)
        exp_loss, exp_grad = ref(name, x, t, reduction="none", return_grad=True, **kw)
        assert_close(loss, exp_loss, dtype, err_msg=f"{simd} C={C}")
        assert_close(grad, exp_grad, dtype, err_msg=f"{simd} C={C}")
        # the loss-only sweep is a separate one
        assert_close(
            call(name, x, t, reduction="none", **kw),
            exp_loss,
            dtype,
            err_msg=f"{simd} C={C} loss only",
        )
    for C in (3, 10, 17, 48):
        x = seeded("tile-width-sm", C, DT_IDS[dtype]).normal(0, 2, (67, C)).astype(dtype)
        for fn in ("softmax", "log_softmax"):
            assert_close(call(fn, x), ref_axis(fn, x), dtype, err_msg=f"{simd} {fn} C={C}")


def exact_sum(values):
    return math.fsum(np.asarray(values, dtype=np.float64).ravel().tolist())


# shape, logits kind; "uniform": every S equals C exactly (the largest product of S the
# deferred log can meet), "confident": losses near 1e-13 (float32) / 1e-17 (float64)
LOGSUM_CASES = [
    ((999, 10), "normal"),
    ((1000, 48), "uniform"),
    ((1000, 3), "confident"),
    ((3, 21, 333), "normal"),
    ((2, 300, 160), "uniform"),
    ((1, 5000, 300), "uniform"),
    ((2, 7, 300), "confident"),
    # rows of more than 48 classes: no tiles, but the same loss-only exp terms
    ((300, 1000), "normal"),
    ((200, 100), "confident"),
]


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"ignore_index": 1},
        {"label_smoothing": 0.2},
        {"label_smoothing": 0.1, "ignore_index": 0},
    ],
    ids=repr,
)
@pytest.mark.parametrize("shape,kind", LOGSUM_CASES, ids=lambda v: str(v))
def test_summed_loss_of_many_tiles_is_accurate(simd, shape, kind, opts, dtype):
    """Without class weights, focal term or per-sample losses, the tile kernels add the log S
    of many samples as one log of their product, and every loss-only sweep takes its exps as
    terms of S (clamped input, one-FMA reduction): the sum and mean must still agree with the
    exactly summed per-sample reference losses to a few ulp per sample, when every S is C
    (the product's largest value), when the losses are tiny, and with ignored rows that hold
    NaN and inf."""
    rng = seeded("logsum", shape, kind, repr(opts), DT_IDS[dtype])
    C = shape[1]
    t = rng.integers(0, C, size=(shape[0],) + shape[2:])
    if kind == "uniform":
        x = np.zeros(shape, dtype)
    elif kind == "confident":
        x = rng.normal(0, 1, shape)
        np.put_along_axis(x, np.expand_dims(t, 1), 30.0 if dtype == np.float32 else 40.0, 1)
        x = x.astype(dtype)
    else:
        x = rng.normal(0, 3, shape).astype(dtype)
    if "ignore_index" in opts:
        ign = opts["ignore_index"]
        t[..., ::7] = ign
        rows = np.argwhere(t == ign)  # (sample index) per ignored sample
        xs = np.moveaxis(x, 1, -1)  # a view: (..., C)
        xs[tuple(rows[::2].T)] = np.nan
        xs[tuple(rows[1::2].T) + (0,)] = np.inf
    per_sample = ref("cross_entropy", x, t, reduction="none", **opts)
    exp_sum = exact_sum(per_sample)
    assert np.isfinite(exp_sum)
    if kind == "confident" and "label_smoothing" not in opts:
        assert 0 < exp_sum / per_sample.size < (1e-10 if dtype == np.float32 else 1e-14)
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    got_sum = call("cross_entropy", x, t, reduction="sum", **opts)
    np.testing.assert_allclose(float(got_sum), exp_sum, rtol=rtol, err_msg=simd)
    got_mean, grad = call("cross_entropy", x, t, reduction="mean", return_grad=True, **opts)
    exp_mean = float(ref("cross_entropy", x, t, reduction="mean", **opts))
    np.testing.assert_allclose(float(got_mean), exp_mean, rtol=rtol, err_msg=simd)
    assert_close(
        grad,
        ref("cross_entropy", x, t, reduction="mean", return_grad=True, **opts)[1],
        dtype,
        err_msg=simd,
    )


# The AVX-512 tile sweeps without label smoothing skip the max shift while every |logit| of
# the tiles is below 32 (float32) / 256 (float64); a tile beyond that takes the shifted
# sweep, and so do the next 63 tile groups of its chunk.  Logits on both sides of the bound:
#  "spread": uniform within the bound, so 1 + R = sum_c exp(x_c - x_y) reaches e^500 (float64)
#            and the summed loss's product of those factors must be flushed before it overflows;
#  "far-target": the target near -bound and the other classes near +bound (the largest R);
#  "confident": the target near +bound, the rest near 0: losses of 1e-98 (float64) that must
#            keep their relative accuracy;
#  "blocks": blocks of 150 rows alternately within and beyond the bound.
UNSHIFTED_KINDS = ["spread", "far-target", "confident", "blocks"]


def unshifted_logits(rng, kind, shape, t, dtype):
    bound = 32.0 if dtype == np.float32 else 256.0
    onehot = np.moveaxis(np.eye(shape[1], dtype=bool)[t], -1, 1)
    if kind == "spread":
        x = rng.uniform(-0.99 * bound, 0.99 * bound, shape)
    elif kind == "far-target":
        x = np.where(onehot, -0.97 * bound, 0.97 * bound) + rng.uniform(-0.02, 0.02, shape)
    elif kind == "confident":
        x = np.where(onehot, 0.9 * bound, rng.normal(0, 1, shape))
    else:
        x = rng.normal(0, 0.3 * bound, shape)
        lshape = (shape[0],) + shape[2:]
        block = ((np.arange(np.prod(lshape)) // 150) % 2 == 1).reshape(lshape)
        x *= np.where(np.expand_dims(block, 1), 4.0, 1.0)  # a third of these samples exceed it
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize(
    "fn,opts",
    [
        ("cross_entropy", {}),
        ("cross_entropy", {"w": True}),
        ("focal_loss", {"gamma": 2.0, "ignore_index": 3}),
        ("focal_loss", {"gamma": 0.5, "w": True}),
    ],
    ids=repr,
)
@pytest.mark.parametrize("shape", [(3000, 10), (3, 10, 1000)], ids=["rows", "cols"])
@pytest.mark.parametrize("kind", UNSHIFTED_KINDS)
def test_tiles_near_the_unshifted_bound(simd, kind, shape, fn, opts, dtype):
    rng = seeded("unshifted", kind, shape, fn, repr(opts), DT_IDS[dtype])
    C = shape[1]
    t = rng.integers(0, C, size=(shape[0],) + shape[2:])
    x = unshifted_logits(rng, kind, shape, t, dtype)
    kw = {k: v for k, v in opts.items() if k != "w"}
    if opts.get("w"):
        kw["weight"] = rng.uniform(0.5, 2.0, C).astype(dtype)
    per_sample = ref(fn, x, t, reduction="none", **kw)
    assert np.all(np.isfinite(per_sample))
    if kind == "confident" and fn == "cross_entropy":
        assert np.max(per_sample) < (1e-9 if dtype == np.float32 else 1e-95)
    # relative, however tiny: a few ulp plus the rounding of the logits' differences (up to
    # 2 bound), which the inputs carry in any method; absolute only for the shifted sweep's
    # documented floor (exp below the normal range counts as about the least normal number,
    # times a class weight <= 2)
    rtol = 2 * 64 * 2.0**-24 if dtype == np.float32 else 1e-13
    got = call(fn, x, t, reduction="none", **kw)
    np.testing.assert_allclose(
        got, per_sample, rtol=rtol, atol=4 * C * np.finfo(dtype).tiny, err_msg=simd
    )
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    got_sum = call(fn, x, t, reduction="sum", **kw)
    np.testing.assert_allclose(float(got_sum), exact_sum(per_sample), rtol=rtol, err_msg=simd)
    # the gradient sweep (which checks the bound before it stores, since grad_out may be x)
    loss, grad = call(fn, x, t, reduction="mean", return_grad=True, **kw)
    exp_loss, exp_grad = ref(fn, x, t, reduction="mean", return_grad=True, **kw)
    np.testing.assert_allclose(float(loss), float(exp_loss), rtol=rtol, err_msg=simd)
    assert_close(grad, exp_grad, dtype, err_msg=simd)
    buf = x.copy()
    loss_in, grad_in = call(fn, buf, t, reduction="mean", return_grad=True, grad_out=buf, **kw)
    assert grad_in is buf
    assert float(loss_in) == float(loss) and grad_in.tobytes() == grad.tobytes()
    # a tiny gradient scale: 1 / (1 + R) reaches e^-64 (float32), so the 1 / e_y must meet it
    # before the scale does, or the product leaves the normal range
    # before the scale does, or the product leaves the normal range; scales so tiny or so large
    # that 1 / (e_y S) could not meet them within the range take the shifted sweep
    scales = [1e-16, 1e-30, 1e25, 1e35] if dtype == np.float32 else [1e-100, 1e-250, 1e250]
    lshape = (shape[0],) + shape[2:]
    for go in scales + [np.full(lshape, scales[0])]:
        _, grad = call(
            fn,
            x,
            t,
            reduction="sum" if np.ndim(go) == 0 else "none",
            return_grad=True,
            grad_output=go,
            **kw,
        )
        _, exp_grad = ref(
            fn,
            x,
            t,
            reduction="sum" if np.ndim(go) == 0 else "none",
            return_grad=True,
            grad_output=go,
            **kw,
        )
        assert_close(grad, exp_grad, dtype, err_msg=f"{simd} grad_output {np.max(go)}")


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("shape", [(20000, 10), (4, 10, 5000)], ids=["rows", "cols"])
def test_unshifted_tiles_identical_with_1_and_2_threads(compiled, restore_threads, shape, dtype):
    """Which tiles take the unshifted sweep depends on the tiles before them in a chunk (a
    failed one sends the next 63 groups to the shifted sweep); chunks depend on the shape only,
    so the bits must not depend on the thread count.  Several chunks, blocks across the bound."""
    rng = seeded("unshifted-threads", shape, DT_IDS[dtype])
    t = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    x = unshifted_logits(rng, "blocks", shape, t, dtype)
    results = {}
    for n in (1, 2):
        fastloss.set_num_threads(n)
        results[n] = [fastloss.cross_entropy(x, t, reduction=r) for r in ("none", "sum")]
        results[n] += list(fastloss.focal_loss(x, t, reduction="mean", return_grad=True))
    for a, b in zip(results[1], results[2]):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    np.testing.assert_allclose(float(results[2][1]), exact_sum(results[2][0]), rtol=1e-5)
    assert_close(results[2][0], ref("cross_entropy", x, t, reduction="none"), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("case", list(CASES))
def test_every_simd_path_matches_reference(simd, case, dtype):
    for layout in ("NC", "NC-small", "NC-wide", "NCd", "NCd-deep", "NCdd", "C"):
        for reduction in ("none", "mean"):
            rng = seeded("simd", case, layout, DT_IDS[dtype], reduction)
            name, x, t, kw = build(case, layout, dtype, rng=rng)
            go = make_grad_output(rng, reduction, loss_shape_of(x.shape))
            loss, grad = call(
                name, x, t, reduction=reduction, return_grad=True, grad_output=go, **kw
            )
            exp_loss, exp_grad = ref(
                name, x, t, reduction=reduction, return_grad=True, grad_output=go, **kw
            )
            msg = f"{simd} {layout} {reduction}"
            assert_close(loss, exp_loss, dtype, err_msg=msg)
            assert_close(grad, exp_grad, dtype, err_msg=msg)


# ----------------------------------------------------------------------------------------------
# edge cases from API.md
# ----------------------------------------------------------------------------------------------
def run_both(name, x, t, reduction, **kw):
    got = call(name, x, t, reduction=reduction, return_grad=True, **kw)
    exp = ref(name, x, t, reduction=reduction, return_grad=True, **kw)
    return got, exp


MASK_CASES = [
    "ce",
    "ce-w",
    "ce-ign",
    "focal0.5-w",
    "focal2-ign",
    "focal0",
    "ce-prob",
    "ce-prob-w-ls",
]


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("layout", ["NC", "NC-wide", "NCd", "NCdd", "C"])
@pytest.mark.parametrize("case", MASK_CASES)
def test_masked_minus_inf_logits(compiled, case, layout, dtype):
    rng = seeded("mask", case, layout, DT_IDS[dtype])
    name, opts = CASES[case]
    x = np.array(make_x(rng, layout, dtype))
    C = class_dim(x.shape)
    axis = 0 if x.ndim == 1 else 1
    mask = rng.random(x.shape) < 0.3
    first = [slice(None)] * x.ndim
    first[axis] = 0
    mask[tuple(first)] = False  # class 0 is never masked: no row is all -inf
    x[mask] = -np.inf
    kw = {}
    if opts.get("w"):
        kw["weight"] = make_weight(rng, C)
    if "gamma" in opts:
        kw["gamma"] = opts["gamma"]
    if opts.get("prob"):
        if "ls" in opts:
            kw["label_smoothing"] = 0.0  # smoothing would put mass on the masked classes
        t = make_prob_target(rng, x)
        t[mask] = 0
    else:
        if "ign" in opts:
            kw["ignore_index"] = opts["ign"]
        # a random unmasked class per sample
        keys = np.where(mask, -1.0, rng.random(x.shape))
        t = np.argmax(keys, axis=axis)
        if "ign" in opts and t.ndim:
            t.reshape(-1)[::3] = opts["ign"]
    x, t = readonly(x), readonly(t)
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both(name, x, t, reduction, **kw)
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert np.all(grad[mask] == 0), "masked classes must get gradient exactly 0"
        assert_close(loss, exp_loss, dtype)
        assert_close(grad, exp_grad, dtype)
    # probabilities of the masked classes are exactly 0
    p = call("softmax", x, axis=axis)
    assert np.all(p[mask] == 0)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("smoothing", [0.1, 1.0])
def test_masked_logits_with_label_smoothing_match_reference(compiled, smoothing, dtype):
    """Smoothing puts target mass on masked classes: the loss is +inf (as the reference)."""
    x = np.array([[0.0, -np.inf, 1.0], [2.0, 0.5, -1.0]], dtype=dtype)
    t = np.array([0, 2])
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both(
            "cross_entropy", x, t, reduction, label_smoothing=smoothing
        )
        assert_close(loss, exp_loss, dtype)
        assert_close(grad, exp_grad, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("layout", ["NC", "NCd"])
def test_prob_target_zero_weight_on_masked_class(compiled, layout, dtype):
    """Reference semantics: a probability-target term whose coefficient w[c] * t[c] is 0
    contributes 0 even where log p = -inf; here w[c] = 0 on the masked class while t[c] > 0."""
    x = np.array([[0.0, 1.0, -np.inf], [2.0, 0.5, -np.inf]], dtype=dtype)
    t = np.array([[0.3, 0.5, 0.2], [0.2, 0.6, 0.2]], dtype=dtype)
    if layout == "NCd":
        x, t = x[:, :, None].repeat(3, axis=2), t[:, :, None].repeat(3, axis=2)
    w = np.array([1.0, 2.0, 0.0])
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both("cross_entropy", x, t, reduction, weight=w)
        assert np.all(np.isfinite(exp_loss))
        assert_close(loss, exp_loss, dtype, err_msg=reduction)
        assert_close(grad, exp_grad, dtype, err_msg=reduction)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("layout", ["rows", "cols"])
@pytest.mark.parametrize(
    "fn,kw",
    [
        pytest.param("cross_entropy", {}, id="ce"),
        pytest.param("cross_entropy", {"weight": [1, 2, 3]}, id="ce-w"),
        pytest.param("cross_entropy", {"label_smoothing": 0.2}, id="ce-ls0.2"),
        pytest.param("focal_loss", {"gamma": 0.0}, id="focal0"),
        pytest.param("focal_loss", {"gamma": 0.5}, id="focal0.5"),
        pytest.param("focal_loss", {"gamma": 2.0, "weight": [1, 2, 3]}, id="focal2-w"),
    ],
)
def test_target_on_masked_class_is_infinite(compiled, fn, kw, layout, dtype):
    """Target class at -inf: loss +inf, gradient finite (p - onehot, p_y = 0), as the
    reference (the focal factor (1 + gamma p_y (-log p_y) / q) has p_y (-log p_y) -> 0)."""
    x = np.array([[0.0, -np.inf, 1.0], [0.0, 1.0, 2.0], [-np.inf, -13.8, -np.inf]], dtype=dtype)
    t = np.array([1, 2, 0])
    if layout == "cols":
        x, t = np.ascontiguousarray(x.T[None]), t[None]
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both(fn, x, t, reduction, **kw)
        assert np.all(np.isfinite(exp_grad))
        assert_close(loss, exp_loss, dtype, err_msg=f"loss {reduction}")
        assert_close(grad, exp_grad, dtype, err_msg=f"grad {reduction}")
        if reduction == "none":
            assert np.all(np.ravel(loss)[[0, 2]] == np.inf) and np.isfinite(np.ravel(loss)[1])


HUGE_CASES = [
    "ce",
    "ce-w-ign-in",
    "ce-ls0.1-w-ign",
    "ce-ls1",
    "ce-prob-w-ls",
    "focal0.5-w",
    "focal2-ign",
    "focal0",
]


@pytest.mark.parametrize(
    "dtype,scale", [(np.float32, 1e30), (np.float64, 1e300)], ids=["f32-1e30", "f64-1e300"]
)
@pytest.mark.parametrize("layout", ["NC", "NCd", "NCdd", "C"])
@pytest.mark.parametrize("case", HUGE_CASES)
def test_huge_logits_do_not_overflow(compiled, case, layout, dtype, scale):
    rng = seeded("huge", case, layout, DT_IDS[dtype])
    x = np.array(make_x(rng, layout, dtype, scale=1.0)) * dtype(scale)
    if x.ndim >= 2:
        x[0] = dtype(scale)  # a sample whose logits are all equal and huge
    name, x, t, kw = build(case, layout, dtype, rng=rng, x=x)
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both(name, x, t, reduction, **kw)
        assert np.all(np.isfinite(exp_loss)) and np.all(np.isfinite(exp_grad))
        assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
        assert_close(loss, exp_loss, dtype, err_msg=reduction)
        assert_close(grad, exp_grad, dtype, err_msg=reduction)


NAN_CASES = ["ce", "ce-ls0.1-w-ign", "ce-prob-ls", "focal0.5-w", "focal2-ign", "nll-w-ign"]


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("layout", ["NC", "NC-wide", "NCd", "NCdd"])
@pytest.mark.parametrize("case", NAN_CASES)
@pytest.mark.parametrize("where", ["target", "other"])
def test_nan_row_only_poisons_that_row(compiled, where, case, layout, dtype):
    rng = seeded("nan", where, case, layout, DT_IDS[dtype])
    name, opts = CASES[case]
    x = np.array(make_x(rng, layout, dtype))
    C = class_dim(x.shape)
    _, x0, t, kw = build(case, layout, dtype, rng=rng, x=x.copy())
    t = np.array(t)
    sample = (1,) + (0,) * (x.ndim - 2)  # loss index of the poisoned sample
    if t.dtype.kind in "iu":
        y = 0 if opts.get("ign") == 1 else 1  # make sure the poisoned sample is not ignored
        t[sample] = y
    else:
        y = 1
    cls = y if where == "target" else (y + 1) % C
    x[sample[:1] + (cls,) + sample[1:]] = np.nan
    x, t = readonly(x), readonly(t)
    (loss, grad), (exp_loss, exp_grad) = run_both(name, x, t, "none", **kw)
    nan_expected = not (name == "nll_loss" and where == "other")
    assert np.isnan(loss[sample]) == nan_expected
    others = np.ones(loss.shape, dtype=bool)
    others[sample] = False
    assert np.all(np.isfinite(loss[others]))
    assert_close(loss, exp_loss, dtype)
    assert_close(grad, exp_grad, dtype)
    mean = call(name, x, t, reduction="mean", **kw)
    assert np.isnan(mean) == nan_expected


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("case", ["ce", "ce-ls0.1-w-ign", "focal2-ign", "nll-w-ign"])
def test_nan_in_ignored_row_is_ignored(compiled, case, dtype):
    name, opts = CASES[case]
    ign = opts.get("ign", -100)
    x = np.array([[0.5, np.nan, 1.0, 0.0], [0.1, 0.2, 0.3, 0.4]], dtype=dtype)
    t = np.array([ign, 3])
    kw = {k: v for k, v in (("ignore_index", ign),)}
    if opts.get("w"):
        kw["weight"] = np.array([1.0, 2.0, 0.5, 1.5])
    if "ls" in opts:
        kw["label_smoothing"] = opts["ls"]
    if "gamma" in opts:
        kw["gamma"] = opts["gamma"]
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both(name, x, t, reduction, **kw)
        assert np.all(np.isfinite(loss)) and np.all(grad[0] == 0)
        assert_close(loss, exp_loss, dtype)
        assert_close(grad, exp_grad, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("shape", [(0, 4), (0, 4, 5), (3, 4, 0), (0, 1)])
@pytest.mark.parametrize("case", ["ce", "ce-ls0.1-w-ign", "ce-prob-ls", "focal2-ign", "nll-w-ign"])
def test_empty_batch(compiled, case, shape, dtype):
    rng = seeded("empty", case, shape)
    x = np.zeros(shape, dtype=dtype)
    name, x, t, kw = build(case, None, dtype, rng=rng, x=x)
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both(name, x, t, reduction, **kw)
        assert grad.shape == shape and grad.dtype == dtype
        check_loss_type(loss, dtype, reduction, loss_shape_of(shape))
        if reduction == "mean":
            assert np.isnan(loss)
        elif reduction == "sum":
            assert loss == 0
        assert_close(loss, exp_loss, dtype)
        assert_close(grad, exp_grad, dtype)
        assert call(name, x, t, reduction=reduction, **kw).shape == np.shape(loss)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 3), (4,)])
@pytest.mark.parametrize(
    "case,ign",
    [
        ("ce", -100),
        ("ce-ls0.1-w-ign", -100),
        ("ce-w", 1),
        ("focal2-ign", 1),
        ("focal0.5-w", -100),
        ("nll-w-ign", 1),
        ("nll", -100),
    ],
)
def test_all_targets_ignored(compiled, case, ign, shape, dtype):
    rng = seeded("allign", case, shape)
    name, x, _, kw = build(case, None, dtype, rng=rng, x=rng.standard_normal(shape).astype(dtype))
    kw["ignore_index"] = ign
    t = np.full(loss_shape_of(shape), ign)
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both(name, x, t, reduction, **kw)
        assert np.all(grad == 0)
        if reduction == "mean":
            assert np.isnan(loss)
        else:
            assert np.all(loss == 0)
        assert_close(loss, exp_loss, dtype)
        assert_close(grad, exp_grad, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("shape", [(6, 1), (2, 1, 5), (1,), (40, 1)])
@pytest.mark.parametrize(
    "case",
    ["ce", "ce-ls0.1", "ce-ls1", "ce-prob-ls", "ce-w", "focal0.5-w", "focal-default", "focal0"],
)
def test_single_class(compiled, case, shape, dtype):
    rng = seeded("C1", case, shape)
    name, x, t, kw = build(
        case, None, dtype, rng=rng, x=(rng.standard_normal(shape) * 3).astype(dtype)
    )
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both(name, x, t, reduction, **kw)
        if not CASES[case][1].get("ign"):
            assert np.all(loss == 0) or (reduction == "mean" and np.isnan(loss))
            assert np.all(grad == 0)
        assert_close(loss, exp_loss, dtype)
        assert_close(grad, exp_grad, dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize(
    "case", ["ce", "ce-ls0.1-w-ign", "ce-prob-w-ls", "focal2-ign", "focal0.5-w", "nll-w-ign"]
)
@pytest.mark.parametrize("unbatched", [False, True])
def test_large_number_of_classes_in_one_row(compiled, case, dtype, unbatched):
    C = 131072
    rng = seeded("bigC", case, DT_IDS[dtype], unbatched)
    x = (rng.standard_normal(C if unbatched else (1, C)) * 3).astype(dtype)
    name, x, t, kw = build(case, None, dtype, rng=rng, x=x)
    for reduction in ("none", "sum"):
        (loss, grad), (exp_loss, exp_grad) = run_both(name, x, t, reduction, **kw)
        assert_close(loss, exp_loss, dtype)
        assert_close(grad, exp_grad, dtype)


def saturated_rows(dtype, sat=1e4):
    s = sat
    rows = [
        ([s, 0, 0, 0, 0], 0),  # confident and right: 1 - p_y underflows to 0
        ([s, 0, 0, 0, 0], 1),  # confident and wrong: p_y underflows to 0
        ([-s, 0, 1, 2, 3], 0),  # target logit saturated low
        ([-s, s, 0, -2, 3], 1),
        ([-s, s, 0, -2, 3], 0),
        ([s, s, 0, 0, 0], 0),  # two tied saturated classes: p_y = 1/2
        ([s, s - 1, -s, 0, 1], 1),
        ([5, -s, -s, -s, -s], 0),
        ([-s, -s, -s, -s, 5], 0),
        ([1.0, 2.0, 0.5, -1.0, 0.0], 2),
    ]
    # intermediate gaps: 1 - p_y tiny, down to the subnormal range of float32 / float64
    for gap in (15.0, 40.0, 88.0, 95.0, 101.0, 110.0, 709.0, 730.0, 745.0):
        rows.append(([gap, 0, 0, -1.0, 0.5], 0))
        rows.append(([gap, 0, 0, -1.0, 0.5], 2))
    x = np.array([r for r, _ in rows], dtype=dtype)
    t = np.array([y for _, y in rows])
    return x, t


@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("layout", ["rows", "cols"])
@pytest.mark.parametrize("weighted", [False, True])
def test_focal_saturated_logits_are_finite(compiled, weighted, layout, gamma, dtype):
    x, t = saturated_rows(dtype)
    if layout == "cols":  # (1, C, n): the strided kernel
        x, t = np.ascontiguousarray(x.T[None]), t[None]
    kw = {"gamma": gamma}
    if weighted:
        kw["weight"] = np.array([0.5, 2.0, 1.0, 1.5, 0.25])
    for reduction in REDUCTIONS:
        (loss, grad), (exp_loss, exp_grad) = run_both("focal_loss", x, t, reduction, **kw)
        assert np.all(np.isfinite(exp_loss)) and np.all(np.isfinite(exp_grad))
        assert np.all(np.isfinite(loss)), loss
        assert np.all(np.isfinite(grad)), grad
        assert_close(loss, exp_loss, dtype, err_msg=reduction)
        assert_close(grad, exp_grad, dtype, err_msg=reduction)
        if reduction == "none":  # each sample on its own scale (losses span 1e-300 .. 1e4)
            g, eg = np.moveaxis(grad, 1, -1), np.moveaxis(exp_grad, 1, -1)
            for i in np.ndindex(loss.shape):
                assert_close(loss[i], exp_loss[i], dtype, err_msg=f"sample {i}")
                assert_close(g[i], eg[i], dtype, err_msg=f"grad of sample {i}")


@pytest.mark.parametrize("shape", [(600, 7), (700, 3, 1), (5, 4, 100), (2, 3, 300)], ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=DT_IDS.get)
def test_nll_gradient_blocks(compiled, shape, dtype):
    """nll_loss zeroes its gradient per block of at most 256 targets (whole samples where they
    fit, in one memset; else S positions of one sample) after gathering the block's x_y:
    shapes across those block edges, with class weights, ignored targets, per-element losses,
    and the gradient written over the input (grad_out=input)."""
    rng = seeded("nll-blocks", shape, DT_IDS[dtype])
    x = rng.standard_normal(shape).astype(dtype)
    tshape = shape[:1] + shape[2:]
    t = rng.integers(0, shape[1], tshape)
    t[rng.random(tshape) < 0.1] = -100
    w = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    for reduction in REDUCTIONS:
        la, ga = fastloss.nll_loss(x, t, weight=w, reduction=reduction, return_grad=True)
        le, ge = ref("nll_loss", x, t, weight=w, reduction=reduction, return_grad=True)
        assert_close(la, le, dtype)
        assert_close(ga, ge, dtype)
        xin = x.copy()
        li, gi = fastloss.nll_loss(
            xin, t, weight=w, reduction=reduction, return_grad=True, grad_out=xin
        )
        assert gi is xin
        np.testing.assert_array_equal(li, la)
        np.testing.assert_array_equal(gi, ga)
