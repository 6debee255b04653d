"""ctc_loss: the kernel against the NumPy reference (every SIMD path), torch 2.13's F.ctc_loss
(values, and gradients end to end through log_softmax), finite differences, hypothesis over
random lengths, and the errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastloss
from fastloss import reference as R

from _helpers import REDUCTIONS, assert_close


def problem(T, N, C, lengths, seed=0, min_frames=None, repeat=False, blank=0):
    """Logits (T, N, C) float64, padded targets (N, S_max), input and target lengths."""
    rng = np.random.default_rng(seed)
    x = 2.0 * rng.standard_normal((T, N, C))
    tl = np.asarray(lengths, np.int64)
    labels = [c for c in range(C) if c != blank]
    tg = np.asarray(rng.choice(labels, size=(N, max(1, int(tl.max(initial=0))))), np.int64)
    if repeat:  # runs of a repeated label
        tg[:, 1::2] = tg[:, 0::2][:, : tg[:, 1::2].shape[1]]
    il = rng.integers(0, T + 1, N) if min_frames is None else np.asarray(min_frames)
    return x, tg, np.asarray(il, np.int64), tl


def log_softmax(x):
    return R.log_softmax(x.astype(np.float64), axis=-1)


def min_frames(tg, tl):
    """The fewest frames an alignment needs: the labels plus a blank between equal neighbours."""
    return np.array([n + int(np.sum(row[1:n] == row[: max(n - 1, 0)])) for row, n in zip(tg, tl)])


# ------------------------------------------------------------------ against the reference


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_reference_every_simd_path(simd, dtype, from_logits):
    x, tg, il, tl = problem(37, 7, 9, [0, 1, 3, 17, 18, 5, 2], seed=3)
    il[3] = 37
    inp = (x if from_logits else log_softmax(x)).astype(dtype)
    for reduction in REDUCTIONS:
        for zero_infinity in (False, True):
            kw = dict(reduction=reduction, zero_infinity=zero_infinity, from_logits=from_logits)
            got = fastloss.ctc_loss(inp, tg, il, tl, return_grad=True, **kw)
            want = R.ctc_loss(inp.astype(np.float64), tg, il, tl, return_grad=True, **kw)
            assert got[0].dtype == dtype and got[1].dtype == dtype
            assert_close(got[0], want[0], dtype, err_msg=f"{reduction} {zero_infinity}")
            assert_close(got[1], want[1], dtype, err_msg=f"{reduction} {zero_infinity}")


@pytest.mark.parametrize("S", [0, 1, 15, 16, 17, 31, 33])
def test_state_counts_around_vector_widths(simd, S):
    """Label counts around the lane counts (8, 16) and T = the minimal feasible length."""
    x, tg, _, tl = problem(80, 3, 6, [S, S, max(S - 1, 0)], seed=S, repeat=True)
    il = np.minimum(min_frames(tg, tl), 80)
    il[2] = 80
    got = fastloss.ctc_loss(x, tg, il, tl, from_logits=True, reduction="none", return_grad=True)
    want = R.ctc_loss(x, tg, il, tl, from_logits=True, reduction="none", return_grad=True)
    assert np.all(np.isfinite(got[0]))
    assert_close(got[0], want[0], np.float64)
    assert_close(got[1], want[1], np.float64)


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 30),
    N=st.integers(1, 5),
    C=st.integers(2, 7),
    data=st.data(),
)
def test_hypothesis_random_lengths(T, N, C, data):
    tl = data.draw(st.lists(st.integers(0, 12), min_size=N, max_size=N))
    seed = data.draw(st.integers(0, 2**16))
    repeat = data.draw(st.booleans())
    blank = data.draw(st.integers(0, C - 1))
    x, tg, il, tl = problem(T, N, C, tl, seed=seed, repeat=repeat, blank=blank)
    if data.draw(st.booleans()):  # exactly the fewest frames (or T when that is shorter)
        il = np.minimum(min_frames(tg, tl), T)
    kw = dict(reduction="none", blank=blank, from_logits=True, return_grad=True)
    for dtype in (np.float64, np.float32):
        got = fastloss.ctc_loss(x.astype(dtype), tg, il, tl, **kw)
        want = R.ctc_loss(x.astype(dtype), tg, il, tl, **kw)
        assert np.array_equal(np.isinf(got[0]), np.isinf(want[0]))
        assert_close(got[0], want[0], dtype)
        # float32 log-space sums: each alpha + beta - ll carries about ulp(|ll|) (1e-6 at a
        # loss of 15), so occupancies carry that relative error
        loose = dict(rtol=1e-3, atol=2e-5) if dtype == np.float32 else {}
        assert_close(got[1], want[1], dtype, **loose)
    # feasibility is exactly "enough frames"
    assert np.array_equal(np.isinf(want[0]), il < min_frames(tg, tl))


def test_concatenated_targets_and_unbatched():
    x, tg, il, tl = problem(20, 4, 5, [3, 0, 6, 2], seed=1)
    flat = np.concatenate([tg[n, : tl[n]] for n in range(4)])
    padded = fastloss.ctc_loss(x, tg, il, tl, from_logits=True, reduction="none", return_grad=True)
    concat = fastloss.ctc_loss(
        x, flat, il, tl, from_logits=True, reduction="none", return_grad=True
    )
    np.testing.assert_array_equal(padded[0], concat[0])
    np.testing.assert_array_equal(padded[1], concat[1])
    one = fastloss.ctc_loss(x[:, 2], tg[2], il[2], tl[2], from_logits=True, return_grad=True)
    assert one[0].shape == () and one[1].shape == (20, 5)
    assert_close(one[0], padded[0][2] / tl[2], np.float64)
    assert_close(one[1], padded[1][:, 2] / tl[2], np.float64)
    lists = fastloss.ctc_loss(x, tg, list(il), tuple(tl), from_logits=True, reduction="none")
    np.testing.assert_array_equal(lists, padded[0])


def test_accumulate_float64_on_float32_input():
    x, tg, il, tl = problem(600, 3, 40, [120, 100, 60], seed=5)
    il[:] = 600
    x32 = x.astype(np.float32)
    want = R.ctc_loss(x32, tg, il, tl, from_logits=True, reduction="sum", return_grad=True)
    fast = fastloss.ctc_loss(x32, tg, il, tl, from_logits=True, reduction="sum", return_grad=True)
    exact = fastloss.ctc_loss(
        x32, tg, il, tl, from_logits=True, reduction="sum", return_grad=True, accumulate="float64"
    )
    assert exact[1].dtype == np.float32
    scale = np.abs(want[1]).max()
    err_fast = np.abs(fast[1] - want[1]).max() / scale
    err_exact = np.abs(exact[1] - want[1]).max() / scale
    assert err_exact < 2e-7  # float32 rounding of the result only
    assert err_fast < 5e-4  # torch's float32 CTC: about 1e-3 here
    with pytest.raises(ValueError, match="accumulate"):
        fastloss.ctc_loss(x, tg, il, tl, accumulate="float32")


def test_grad_out_in_place_and_grad_output():
    x, tg, il, tl = problem(15, 3, 4, [2, 3, 1], seed=2)
    want = R.ctc_loss(
        x,
        tg,
        il,
        tl,
        from_logits=True,
        reduction="none",
        return_grad=True,
        grad_output=[1.0, 2.0, -0.5],
    )
    kw = dict(from_logits=True, reduction="none", return_grad=True, grad_output=[1.0, 2.0, -0.5])
    buf = np.full_like(x, 7.0)
    got = fastloss.ctc_loss(x, tg, il, tl, grad_out=buf, **kw)
    assert got[1] is buf
    assert_close(buf, want[1], np.float64)
    y = x.copy()
    fastloss.ctc_loss(y, tg, il, tl, grad_out=y, **kw)  # in place
    assert_close(y, want[1], np.float64)
    before = x.copy()
    fastloss.ctc_loss(x, tg, il, tl, from_logits=True, return_grad=True)
    np.testing.assert_array_equal(x, before)  # never modified without grad_out=x


def test_threads_bit_identical(restore_threads):
    x, tg, il, tl = problem(50, 16, 12, [5] * 16, seed=4)
    out = []
    for n in (1, 2, 3):
        fastloss.set_num_threads(n)
        out.append(fastloss.ctc_loss(x, tg, il, tl, from_logits=True, return_grad=True))
    for loss, grad in out[1:]:
        assert loss == out[0][0]
        np.testing.assert_array_equal(grad, out[0][1])


def test_infeasible_nan_and_empty_cases():
    x, tg, il, tl = problem(6, 4, 5, [3, 3, 0, 2], seed=7)
    tg[0, :3] = [1, 1, 1]  # needs 5 frames
    il[:] = [4, 6, 0, 6]
    lp = log_softmax(x)
    loss, g = fastloss.ctc_loss(lp, tg, il, tl, reduction="none", return_grad=True)
    assert loss[0] == np.inf and loss[2] == 0.0  # T_n = 0 with S = 0: probability 1
    assert np.isnan(g[:4, 0]).all() and (g[4:, 0] == 0).all()  # torch's NaN for inf losses
    loss, g = fastloss.ctc_loss(
        lp, tg, il, tl, reduction="none", zero_infinity=True, return_grad=True
    )
    assert loss[0] == 0.0 and (g[:, 0] == 0).all() and np.isfinite(g).all()
    allbad = fastloss.ctc_loss(
        lp, tg, [1, 1, 1, 1], [3, 3, 2, 2], zero_infinity=True, return_grad=True
    )
    assert allbad[0] == 0.0 and (allbad[1] == 0).all()
    other = min(set(range(1, 5)) - set(tg[1, : tl[1]]))
    lp[2, 1, other] = np.nan  # a class that is not sample 1's blank or label: no effect
    ok = fastloss.ctc_loss(lp, tg, il, tl, reduction="none")
    lp[2, 1, 0] = np.nan  # its blank: NaN loss
    bad = fastloss.ctc_loss(lp, tg, il, tl, reduction="none", return_grad=True)
    assert np.isfinite(ok[1]) and np.isnan(bad[0][1]) and np.isnan(bad[1][:6, 1]).all()
    for bad_logit in (np.inf, np.nan):  # with logits, any class of the frame
        x[2, 1, other] = bad_logit
        for fn in (fastloss.ctc_loss, R.ctc_loss):
            assert np.isnan(fn(x, tg, il, tl, from_logits=True, reduction="none")[1])


def test_finite_differences():
    x, tg, il, tl = problem(9, 2, 4, [3, 2], seed=11)
    il[:] = [9, 7]
    _, g = fastloss.ctc_loss(x, tg, il, tl, from_logits=True, return_grad=True)
    rng = np.random.default_rng(0)
    h = 1e-6
    for _ in range(12):
        i = tuple(rng.integers(0, s) for s in x.shape)
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        fd = (
            fastloss.ctc_loss(xp, tg, il, tl, from_logits=True)
            - fastloss.ctc_loss(xm, tg, il, tl, from_logits=True)
        ) / (2 * h)
        assert abs(fd - g[i]) < 1e-7, (i, fd, g[i])
    # the gradient w.r.t. log-probabilities, along a direction (log_probs need not be
    # normalised: the loss is a function of every entry)
    lp = log_softmax(x)
    _, g = fastloss.ctc_loss(lp, tg, il, tl, reduction="sum", return_grad=True)
    d = rng.standard_normal(lp.shape)
    fd = (
        fastloss.ctc_loss(lp + h * d, tg, il, tl, reduction="sum")
        - fastloss.ctc_loss(lp - h * d, tg, il, tl, reduction="sum")
    ) / (2 * h)
    assert abs(fd - np.sum(g * d)) < 1e-6


# ------------------------------------------------------------------ torch parity

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_torch_values_and_end_to_end_gradients(dtype, reduction, zero_infinity):
    x, tg, il, tl = problem(25, 6, 7, [4, 0, 9, 12, 3, 1], seed=9, repeat=True)
    il[:] = [25, 3, 20, 13, 0, 25]  # sample 3 is infeasible (12 labels, repeats, 13 frames)
    xt = torch.tensor(x.astype(dtype), requires_grad=True)
    want = F.ctc_loss(
        xt.log_softmax(2),
        torch.tensor(tg),
        torch.tensor(il),
        torch.tensor(tl),
        reduction=reduction,
        zero_infinity=zero_infinity,
    )
    go = torch.linspace(0.5, 2.0, 6, dtype=xt.dtype) if reduction == "none" else None
    want.backward(go)
    kw = dict(reduction=reduction, zero_infinity=zero_infinity, return_grad=True)
    gout = None if go is None else go.numpy()
    # logits in: the gradient is torch's end-to-end one
    loss, g = fastloss.ctc_loss(
        x.astype(dtype), tg, il, tl, from_logits=True, grad_output=gout, **kw
    )
    assert_close(loss, want.detach().numpy(), dtype)
    assert_close(g, xt.grad.numpy(), dtype)
    # log-probabilities in: the true gradient w.r.t. them, chained through log_softmax
    lp = xt.detach().log_softmax(2).numpy()
    loss2, g2 = fastloss.ctc_loss(lp, tg, il, tl, grad_output=gout, **kw)
    assert_close(loss2, want.detach().numpy(), dtype)
    chained = g2 - np.exp(lp) * g2.sum(axis=2, keepdims=True)
    assert_close(chained, xt.grad.numpy(), dtype)


def test_torch_concatenated_targets_and_blank():
    x, tg, il, tl = problem(30, 3, 6, [5, 7, 2], seed=13, blank=5)
    il[:] = 30
    flat = np.concatenate([tg[n, : tl[n]] for n in range(3)])
    lp = torch.tensor(x).log_softmax(2)
    want = F.ctc_loss(lp, torch.tensor(flat), torch.tensor(il), torch.tensor(tl), blank=5)
    got = fastloss.ctc_loss(lp.numpy(), flat, il, tl, blank=5)
    assert_close(got, want.numpy(), np.float64)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(log_probs=np.zeros((4, 2, 3, 1))), ValueError, "log_probs must have shape"),
        (dict(log_probs=np.zeros((0, 2, 3))), ValueError, "empty"),
        (dict(blank=3), ValueError, "blank"),
        (dict(blank=-1), ValueError, "blank"),
        (dict(input_lengths=[5, 4]), ValueError, "input_lengths"),
        (dict(input_lengths=[-1, 4]), ValueError, "input_lengths"),
        (dict(input_lengths=[2, 2, 2]), ValueError, "input_lengths"),
        (dict(input_lengths=[2.0, 2.0]), TypeError, "input_lengths"),
        (dict(target_lengths=[-1, 1]), ValueError, "target_lengths"),
        (dict(target_lengths=[3, 1]), ValueError, "target_lengths"),
        (dict(targets=np.array([[0, 1], [1, 2]])), ValueError, "blank"),
        (dict(targets=np.array([[3, 1], [1, 2]])), IndexError, "targets"),
        (dict(targets=np.array([[1.0, 1], [1, 2]])), TypeError, "targets"),
        (dict(targets=np.array([1, 2, 1, 2])), ValueError, "sum\\(target_lengths\\)"),
        (dict(targets=np.array([[1, 2]])), ValueError, "targets must have shape"),
        (dict(reduction="batchmean"), ValueError, "reduction"),
        (dict(grad_output=2.0), ValueError, "grad_output"),
    ],
)
def test_errors(change, exc, match):
    args = dict(
        log_probs=np.zeros((4, 2, 3)),
        targets=np.array([[1, 2], [2, 1]]),
        input_lengths=[4, 3],
        target_lengths=[2, 1],
    )
    args.update(change)
    with pytest.raises(exc, match=match):
        fastloss.ctc_loss(**args)


# ------------------------------------------------------------------ fastloss.torch


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("tdtype", ["float32", "float64", "float16"])
def test_torch_bridge_end_to_end(reduction, tdtype):
    FL = pytest.importorskip("fastloss.torch")
    dtype = getattr(torch, tdtype)
    x, tg, il, tl = problem(20, 4, 6, [4, 0, 7, 2], seed=21)
    il[:] = [20, 9, 14, 3]
    tgt, ilt, tlt = torch.tensor(tg), torch.tensor(il), torch.tensor(tl)
    ref_x = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    want = F.ctc_loss(ref_x.log_softmax(2), tgt, ilt, tlt, reduction=reduction)
    want.sum().backward()
    for variant in ("functional", "module", "logits"):
        xt = torch.tensor(x, dtype=dtype, requires_grad=True)
        if variant == "functional":
            got = FL.ctc_loss(xt.log_softmax(2), tgt, ilt, tlt, reduction=reduction)
        elif variant == "module":
            got = FL.CTCLoss(reduction=reduction)(xt.log_softmax(2), tgt, list(il), list(tl))
        else:
            got = FL.ctc_loss(xt, tgt, ilt, tlt, reduction=reduction, from_logits=True)
        assert got.dtype == dtype
        got.sum().backward()
        tol = {"float16": 5e-3, "float32": 1e-4, "float64": 1e-9}[tdtype]
        torch.testing.assert_close(got.double(), want.detach(), rtol=tol, atol=tol)
        torch.testing.assert_close(xt.grad.double(), ref_x.grad, rtol=tol, atol=tol)


def test_torch_bridge_gradient_of_leaf_log_probs_is_the_true_one():
    """On a leaf log_probs tensor torch returns exp(log_probs) - occupancy; the bridge the
    true gradient -occupancy (finite differences decide)."""
    FL = pytest.importorskip("fastloss.torch")
    x, tg, il, tl = problem(8, 2, 4, [2, 3], seed=3)
    il[:] = 8
    lp = torch.tensor(log_softmax(x), requires_grad=True)
    loss = FL.ctc_loss(lp, torch.tensor(tg), torch.tensor(il), torch.tensor(tl), reduction="sum")
    loss.backward()
    d = np.random.default_rng(1).standard_normal(lp.shape)
    h = 1e-6
    f = lambda v: fastloss.ctc_loss(v, tg, il, tl, reduction="sum")  # noqa: E731
    fd = (f(lp.detach().numpy() + h * d) - f(lp.detach().numpy() - h * d)) / (2 * h)
    assert abs(fd - float(np.sum(lp.grad.numpy() * d))) < 1e-6
    lp2 = lp.detach().clone().requires_grad_(True)
    F.ctc_loss(
        lp2, torch.tensor(tg), torch.tensor(il), torch.tensor(tl), reduction="sum"
    ).backward()
    torch.testing.assert_close(lp2.grad, lp.grad + lp.detach().exp())  # torch's quirk
