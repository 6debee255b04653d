"""fastloss.evaluate and `fastloss eval`: chunked evaluation of prediction files.

Every number is checked against fastloss / NumPy on the whole arrays, for several chunk sizes
(1 row, a size that does not divide N, the default); files in every supported container
(.npy, uncompressed and compressed .npz); every error case of the command line (exit status,
one-line message, no traceback); and flat memory on a ~400 MB memory-mapped file.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
import types
import zipfile

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss import _evaluate, cli
from fastloss.cli import eval as eval_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastloss.__file__)))
CHUNKS = (1, 7, None)  # one row, a size that does not divide N, the default
N, C = 50, 9
RTOL64 = 1e-12


def rng(seed=0):
    return np.random.default_rng(seed)


def _rel(a, b):
    a, b = float(a), float(b)
    if np.isnan(a) and np.isnan(b):
        return 0.0
    return abs(a - b) / max(abs(b), 1e-300)


# ------------------------------------------------------------------ references (whole arrays)


def _ref_class(x, t, ignore_index=-100, top_k=()):
    """accuracy, top-k accuracies and per-class (count, accuracy) with NumPy on whole arrays;
    every position of (N, C, d...) logits is a sample."""
    valid = t != ignore_index
    pred = x.argmax(axis=1)
    acc = (pred == t)[valid].mean() if valid.any() else np.nan
    order = np.argsort(-x, axis=1, kind="stable")  # ties: lower class first, like argmax
    topk = {}
    for k in top_k:
        hit = (order[:, :k] == np.expand_dims(t, 1)).any(axis=1)
        topk[k] = hit[valid].mean()
    per_class = {}
    for c in np.unique(t[valid]):
        m = valid & (t == c)
        per_class[int(c)] = (int(m.sum()), float((pred == t)[m].mean()))
    return acc, topk, per_class


def _check_class(doc, loss_fn, x, t, ignore_index=-100, rtol=RTOL64, **kw):
    """mean, sum, accuracies and per-class stats of `doc` against the whole-array values."""
    if ignore_index != -100:
        kw["ignore_index"] = ignore_index
    mean = loss_fn(x, t, reduction="mean", **kw)
    none = loss_fn(x, t, reduction="none", **kw)
    assert _rel(doc["mean"], mean) <= rtol, (doc["mean"], mean)
    assert _rel(doc["sum"], none.sum(dtype=np.float64)) <= rtol
    assert doc["value"] == doc[doc["reduction"]]
    top_k = [int(k) for k in doc["top_k_accuracy"]]
    acc, topk, per_class = _ref_class(x, t, ignore_index, top_k)
    assert doc["accuracy"] == pytest.approx(acc, rel=0, abs=1e-15)
    assert doc["error_rate"] == pytest.approx(1 - acc, rel=0, abs=1e-12)
    assert doc["top_k_accuracy"] == pytest.approx(topk, rel=0, abs=1e-15)
    valid = t != ignore_index
    assert doc["n_samples"] == t.size
    assert doc["n_ignored"] == int((~valid).sum())
    got = {r["class"]: (r["count"], r["accuracy"]) for r in doc["per_class"]}
    assert got.keys() == per_class.keys()
    for cls, (count, accuracy) in per_class.items():
        assert got[cls][0] == count
        assert got[cls][1] == pytest.approx(accuracy, rel=1e-12, abs=1e-15)
    for r in doc["per_class"]:
        m = valid & (t == r["class"])
        assert _rel(r["mean_loss"], none[m].astype(np.float64).mean()) <= max(rtol, 1e-12)


def _class_data(seed=0, shape=(N, C), dtype=np.float64, ignore=-100, frac_ignored=0.2):
    r = rng(seed)
    x = r.standard_normal(shape).astype(dtype)
    tshape = (shape[0],) + shape[2:]
    t = r.integers(0, shape[1], tshape)
    t[r.random(tshape) < frac_ignored] = ignore
    return x, t


# ------------------------------------------------------------------ equality with whole arrays


@pytest.mark.parametrize("chunk", CHUNKS)
def test_cross_entropy_plain_matches_whole_array(chunk):
    x, t = _class_data(frac_ignored=0)
    doc = fastloss.evaluate("cross_entropy", x, t, chunk_rows=chunk, top_k=[1, 2, 5])
    _check_class(doc, fastloss.cross_entropy, x, t)
    assert doc["n_chunks"] == (1 if chunk is None else -(-N // chunk))
    assert doc["normalizer"] == N


@pytest.mark.parametrize("chunk", CHUNKS)
def test_cross_entropy_weight_ignore_smoothing(chunk):
    x, t = _class_data(seed=1)
    w = rng(2).uniform(0.2, 3.0, C)
    doc = fastloss.evaluate("cross_entropy", x, t, weight=w, label_smoothing=0.15, chunk_rows=chunk)
    _check_class(doc, fastloss.cross_entropy, x, t, weight=w, label_smoothing=0.15)
    valid = t != -100
    assert _rel(doc["normalizer"], w[t[valid]].sum()) <= RTOL64
    assert list(doc["top_k_accuracy"]) == [5]  # the default when C > 5


@pytest.mark.parametrize("chunk", CHUNKS)
def test_ignore_index_inside_the_class_range(chunk):
    x, t = _class_data(seed=3, frac_ignored=0)
    doc = fastloss.evaluate("cross_entropy", x, t, ignore_index=2, chunk_rows=chunk)
    _check_class(doc, fastloss.cross_entropy, x, t, ignore_index=2)
    assert 2 not in {r["class"] for r in doc["per_class"]}
    assert doc["n_ignored"] == int((t == 2).sum()) > 0


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_loss_gamma_with_weight(chunk, gamma):
    x, t = _class_data(seed=4)
    w = rng(5).uniform(0.5, 2.0, C)
    doc = fastloss.evaluate("focal_loss", x, t, gamma=gamma, weight=w, chunk_rows=chunk)
    _check_class(doc, fastloss.focal_loss, x, t, gamma=gamma, weight=w)
    assert doc["options"]["gamma"] == gamma


@pytest.mark.parametrize("chunk", CHUNKS)
def test_nll_loss(chunk):
    x, t = _class_data(seed=6)
    lp = fastloss.log_softmax(x, axis=1)
    doc = fastloss.evaluate("nll_loss", lp, t, chunk_rows=chunk)
    _check_class(doc, fastloss.nll_loss, lp, t)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_spatial_inputs_every_position_is_a_sample(chunk):
    x, t = _class_data(seed=7, shape=(N, C, 3, 2))
    w = rng(8).uniform(0.5, 2.0, C)
    doc = fastloss.evaluate("cross_entropy", x, t, weight=w, top_k=[3], chunk_rows=chunk)
    _check_class(doc, fastloss.cross_entropy, x, t, weight=w)
    assert doc["n_samples"] == N * 6


@pytest.mark.parametrize("chunk", CHUNKS)
def test_probability_targets(chunk):
    r = rng(9)
    x = r.standard_normal((N, C))
    p = r.dirichlet(np.ones(C), N)
    doc = fastloss.evaluate("cross_entropy", x, p, label_smoothing=0.1, chunk_rows=chunk)
    assert _rel(doc["mean"], fastloss.cross_entropy(x, p, label_smoothing=0.1)) <= RTOL64
    assert doc["normalizer"] == N
    assert doc["target_kind"] == "probability"
    assert doc["accuracy"] is None and doc["per_class"] is None


@pytest.mark.parametrize("chunk", CHUNKS)
def test_float32_inputs(chunk):
    x, t = _class_data(seed=10, dtype=np.float32)
    doc = fastloss.evaluate("cross_entropy", x, t, chunk_rows=chunk)
    _check_class(doc, fastloss.cross_entropy, x, t, rtol=1e-6)


def _elementwise_cases():
    r = rng(11)
    x = r.standard_normal((N, 6))
    y = r.standard_normal((N, 6))
    prob = r.uniform(0.01, 0.99, (N, 6))
    hard = (r.random((N, 6)) < 0.4).astype(np.float64)
    w_full = r.uniform(0.5, 2.0, (N, 6))
    w_row = r.uniform(0.5, 2.0, 6)
    lp = fastloss.log_softmax(x, axis=1)
    q = fastloss.softmax(y, axis=1)
    return [
        ("mse_loss", x, y, {}),
        ("l1_loss", x, y, {}),
        ("smooth_l1_loss", x, y, {"beta": 0.5}),
        ("huber_loss", x, y, {"delta": 0.7}),
        ("kl_div", lp, q, {}),
        ("kl_div", lp, np.log(q), {"log_target": True}),
        ("binary_cross_entropy", prob, hard, {"weight": w_full}),
        ("binary_cross_entropy", prob, hard, {"weight": w_row}),
        (
            "binary_cross_entropy_with_logits",
            x,
            hard,
            {"weight": w_full[:, :1], "pos_weight": w_row},
        ),
        ("sigmoid_focal_loss", x, hard, {"alpha": 0.4, "gamma": 1.5}),
    ]


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("case", range(len(_elementwise_cases())))
def test_elementwise_and_binary_losses(case, chunk):
    name, x, t, kw = _elementwise_cases()[case]
    fn = getattr(fastloss, name)
    doc = fastloss.evaluate(name, x, t, chunk_rows=chunk, **kw)
    assert _rel(doc["mean"], fn(x, t, reduction="mean", **kw)) <= RTOL64
    assert _rel(doc["sum"], fn(x, t, reduction="sum", **kw)) <= RTOL64
    assert doc["n_samples"] == doc["normalizer"] == x.size
    if name in ("binary_cross_entropy", "binary_cross_entropy_with_logits", "sigmoid_focal_loss"):
        p = x if name == "binary_cross_entropy" else 1 / (1 + np.exp(-x))
        assert doc["accuracy"] == pytest.approx(((p > 0.5) == (t > 0.5)).mean(), abs=1e-15)
    else:
        assert doc["accuracy"] is None
    if name == "kl_div":
        assert _rel(doc["batchmean"], fn(x, t, reduction="batchmean", **kw)) <= RTOL64


def test_kl_div_batchmean_is_the_reported_value():
    _, x, t, _ = _elementwise_cases()[4]
    doc = fastloss.evaluate("kl_div", x, t, reduction="batchmean", chunk_rows=7)
    assert doc["value"] == doc["batchmean"]
    assert _rel(doc["value"], fastloss.kl_div(x, t, reduction="batchmean")) <= RTOL64


def test_reduction_sum_is_the_reported_value():
    x, t = _class_data(seed=12)
    doc = fastloss.evaluate("cross_entropy", x, t, reduction="sum", chunk_rows=7)
    assert doc["value"] == doc["sum"]
    assert _rel(doc["value"], fastloss.cross_entropy(x, t, reduction="sum")) <= RTOL64


def test_top_k_ties_follow_argmax():
    r = rng(13)
    x = r.integers(0, 3, (200, 6)).astype(np.float64)  # many ties
    t = r.integers(0, 6, 200)
    doc = fastloss.evaluate("cross_entropy", x, t, top_k=[1, 2, 3], chunk_rows=9)
    _check_class(doc, fastloss.cross_entropy, x, t)
    assert doc["top_k_accuracy"][1] == doc["accuracy"]


def test_nan_logits_rank_like_argmax():
    x = np.array(
        [[0.0, np.nan, 1.0], [np.nan, np.nan, np.nan], [np.nan, 0.0, np.nan], [1.0, 2.0, 3.0]]
    )
    t = np.array([2, 2, 0, 2])  # argmax: 1, 0, 0, 2
    doc = fastloss.evaluate("nll_loss", x, t, top_k=[1, 2])
    assert doc["accuracy"] == pytest.approx((x.argmax(1) == t).mean())
    # NaN ranks first, NaN ties go to the lower class: ranks 1, 2, 0, 0
    assert doc["top_k_accuracy"] == {1: 0.5, 2: 0.75}


# ------------------------------------------------------------------ the margin family


def _softmax_entropy(x):
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -(np.exp(logp) * logp).sum(axis=1)


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(
    "opts", [{}, {"p": 2, "margin": 0.5}, {"weight": True}, {"p": 2, "margin": 2.0, "weight": True}]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_multi_margin_loss_is_reported_like_the_class_losses(chunk, opts, dtype):
    x, t = _class_data(seed=30, dtype=dtype, frac_ignored=0)
    kw = dict(opts)
    if kw.get("weight") is True:
        kw["weight"] = rng(31).uniform(0.2, 3.0, C)
    doc = fastloss.evaluate("multi_margin_loss", x, t, top_k=[1, 3], chunk_rows=chunk, **kw)
    # the reference twin on the whole arrays (float64)
    _check_class(
        doc, REF.multi_margin_loss, x, t, rtol=RTOL64 if dtype == np.float64 else 1e-6, **kw
    )
    assert doc["normalizer"] == N  # the plain mean over rows, class weights or not
    assert doc["n_ignored"] == 0 and doc["target_kind"] == "index"
    assert doc["options"]["p"] == kw.get("p", 1) and doc["options"]["margin"] == kw.get(
        "margin", 1.0
    )
    assert "ignore_index" not in doc["options"]
    h = _softmax_entropy(x.astype(np.float64))
    assert _rel(doc["mean_entropy"], h.mean()) <= (1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("name", ["multilabel_margin_loss", "multilabel_soft_margin_loss"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_multilabel_losses_report_the_loss_per_row(tmp_path, chunk, name, dtype):
    r = rng(32)
    x = r.standard_normal((N, C)).astype(dtype)
    if name == "multilabel_margin_loss":
        t = r.integers(-1, C, (N, C))
        t[0] = -1  # no class listed
        t[1] = r.permutation(C)  # every class listed
        t[2, :3] = [4, 4, -1]  # a duplicate
        cases = [{}]
    else:
        t = (r.random((N, C)) < 0.4).astype(dtype)
        t[3] = r.random(C)  # soft labels
        cases = [{}, {"weight": r.uniform(0.5, 2.0, C)}]
    ref = getattr(REF, name)
    tol = RTOL64 if dtype == np.float64 else 1e-6
    for kw in cases:
        out = tmp_path / "rows.npy"
        doc = fastloss.evaluate(name, x, t, chunk_rows=chunk, per_sample=out, **kw)
        assert _rel(doc["mean"], ref(x, t, reduction="mean", **kw)) <= tol
        assert _rel(doc["sum"], ref(x, t, reduction="sum", **kw)) <= tol
        np.testing.assert_allclose(
            np.load(out), ref(x, t, reduction="none", **kw), rtol=tol, atol=1e-7
        )
        assert doc["n_samples"] == doc["normalizer"] == N
        assert doc["target_kind"] in ("multilabel_index", "multilabel")
        for key in ("accuracy", "error_rate", "top_k_accuracy", "per_class", "mean_entropy"):
            assert doc[key] is None, key
    # unbatched (C,): one row
    doc = fastloss.evaluate(name, x[5], t[5])
    assert doc["n_samples"] == 1 and _rel(doc["mean"], ref(x[5], t[5], reduction="mean")) <= tol


def test_margin_family_options_and_errors():
    x, t = _class_data(seed=33, frac_ignored=0)
    doc = fastloss.evaluate("multi_margin_loss", x[0], t[0])  # unbatched
    assert doc["n_samples"] == 1
    assert _rel(doc["mean"], REF.multi_margin_loss(x[0], t[0], reduction="mean")) <= RTOL64
    with pytest.raises(_evaluate.EvalOptionError, match="p must be 1 or 2"):
        fastloss.evaluate("multi_margin_loss", x, t, p=3)
    with pytest.raises(_evaluate.EvalOptionTypeError, match="p must be a real number"):
        fastloss.evaluate("multi_margin_loss", x, t, p=True)
    with pytest.raises(_evaluate.EvalOptionError, match="option p does not apply to cross_entropy"):
        fastloss.evaluate("cross_entropy", x, t, p=2)
    with pytest.raises(_evaluate.EvalOptionError, match="ignore_index does not apply"):
        fastloss.evaluate("multi_margin_loss", x, t, ignore_index=1)
    with pytest.raises(_evaluate.EvalOptionError, match="margin does not apply"):
        fastloss.evaluate("multilabel_margin_loss", x, t, margin=1.0)
    with pytest.raises(_evaluate.EvalOptionError, match="top_k applies to class losses only"):
        fastloss.evaluate("multilabel_soft_margin_loss", x, (x > 0) * 1.0, top_k=2)
    with pytest.raises(ValueError, match=r"needs scores of shape \(N, C\) or \(C,\)"):
        fastloss.evaluate("multi_margin_loss", x.reshape(N, 3, 3), t[:, None].repeat(3, 1))
    with pytest.raises(TypeError, match="multi_margin_loss needs integer class indices"):
        fastloss.evaluate("multi_margin_loss", x, t.astype(np.float64))
    bad = t.copy()
    bad[11] = -1
    with pytest.raises(
        IndexError, match=r"target -1 at position \(11,\) is out of range \[0, 9\)$"
    ):
        fastloss.evaluate("multi_margin_loss", x, bad, chunk_rows=4)
    lists = np.full((N, C), -1)
    lists[17, 3] = C
    with pytest.raises(
        IndexError, match=r"target 9 at position \(17, 3\) is out of range \[-1, 9\)"
    ):
        fastloss.evaluate("multilabel_margin_loss", x, lists, chunk_rows=4)
    with pytest.raises(TypeError, match="multilabel_margin_loss needs integer class indices"):
        fastloss.evaluate("multilabel_margin_loss", x, lists * 1.0)
    with pytest.raises(ValueError, match=r"needs targets of the scores' shape \(50, 9\)"):
        fastloss.evaluate("multilabel_soft_margin_loss", x, t)
    with pytest.raises(ValueError, match=r"weight must have shape \(9,\)"):
        fastloss.evaluate("multilabel_soft_margin_loss", x, x > 0, weight=np.ones(3))


def test_report_shows_each_losss_own_defaults():
    """eps and margin have different defaults in different losses."""
    r = rng(34)
    x = r.standard_normal((N, 4))
    assert fastloss.evaluate("poisson_nll_loss", x, np.abs(x))["options"]["eps"] == 1e-8
    assert fastloss.evaluate("hinge_embedding_loss", x, np.sign(x))["options"]["margin"] == 1.0


def test_unbatched_and_empty_inputs(tmp_path):
    x = rng(14).standard_normal(C)
    out = tmp_path / "u.npy"
    doc = fastloss.evaluate("cross_entropy", x, np.int64(3), per_sample=out)
    assert _rel(doc["mean"], fastloss.cross_entropy(x, 3)) <= RTOL64
    assert doc["accuracy"] == float(x.argmax() == 3)
    assert np.load(out).shape == () and np.load(out) == fastloss.cross_entropy(x, 3)
    doc = fastloss.evaluate("cross_entropy", np.zeros((0, 4)), np.zeros(0, np.int64))
    assert np.isnan(doc["mean"]) and doc["sum"] == 0 and doc["n_samples"] == 0
    assert np.isnan(fastloss.cross_entropy(np.zeros((0, 4)), np.zeros(0, np.int64)))
    x, t = _class_data(seed=15)
    t[:] = -100
    doc = fastloss.evaluate("cross_entropy", x, t, chunk_rows=7)
    assert np.isnan(doc["mean"]) and np.isnan(fastloss.cross_entropy(x, t))
    assert np.isnan(doc["accuracy"]) and doc["per_class"] == []


# ------------------------------------------------------------------ files and per-sample output


def _save_all(tmp_path, x, t):
    """(logits, targets, keys) for .npy, uncompressed .npz and compressed .npz."""
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t)
    np.savez(tmp_path / "one_x.npz", x)  # single arrays: no key needed
    np.savez(tmp_path / "one_t.npz", t)
    np.savez_compressed(tmp_path / "both.npz", logits=x, labels=t)
    return [
        (tmp_path / "x.npy", tmp_path / "t.npy", {}),
        (tmp_path / "one_x.npz", tmp_path / "one_t.npz", {}),
        (
            tmp_path / "both.npz",
            tmp_path / "both.npz",
            {"logits_key": "logits", "targets_key": "labels"},
        ),
    ]


@pytest.mark.parametrize("chunk", (1, 7, None))
def test_files_in_every_container_match_arrays(tmp_path, chunk):
    x, t = _class_data(seed=16, shape=(N, C, 2))
    w = rng(17).uniform(0.5, 2.0, C)
    np.save(tmp_path / "w.npy", w)
    want = fastloss.evaluate("cross_entropy", x, t, weight=w, chunk_rows=chunk)
    for lx, lt, keys in _save_all(tmp_path, x, t):
        doc = fastloss.evaluate(
            "cross_entropy", str(lx), lt, weight=tmp_path / "w.npy", chunk_rows=chunk, **keys
        )
        for field in ("mean", "sum", "accuracy", "top_k_accuracy", "per_class", "n_samples"):
            assert doc[field] == want[field], (lx, field)
        assert doc["files"]["logits"] == str(lx)


def test_uncompressed_npz_member_is_memory_mapped(tmp_path):
    x, t = _class_data(seed=18)
    np.savez(tmp_path / "a.npz", x=x, t=t)
    src = _evaluate._open(str(tmp_path / "a.npz"), "logits", "x")
    try:
        assert isinstance(src.arr, np.memmap) and np.array_equal(src.arr, x)
        # a zip member sits at any byte offset: the kernels are given aligned chunks
        for a, b in ((0, 7), (7, 14), (0, N)):
            chunk = src.rows(a, b)
            assert chunk.flags.aligned and chunk.flags.c_contiguous
            np.testing.assert_array_equal(chunk, x[a:b])
    finally:
        src.close()
    assert _evaluate._open(x, "logits").arr is x  # arrays are used as they are


@pytest.mark.parametrize("chunk", (1, 7, None))
@pytest.mark.parametrize("dtype", (np.float32, np.float64))
def test_per_sample_equals_reduction_none(tmp_path, chunk, dtype):
    x, t = _class_data(seed=19, shape=(N, C, 3), dtype=dtype)
    out = tmp_path / "ps.npy"
    fastloss.evaluate("focal_loss", x, t, gamma=1.0, per_sample=str(out), chunk_rows=chunk)
    got = np.load(out)
    want = fastloss.focal_loss(x, t, gamma=1.0, reduction="none")
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    _, xe, te, kw = _elementwise_cases()[8]
    fastloss.evaluate(
        "binary_cross_entropy_with_logits", xe, te, per_sample=out, chunk_rows=chunk, **kw
    )
    np.testing.assert_array_equal(
        np.load(out), fastloss.binary_cross_entropy_with_logits(xe, te, reduction="none", **kw)
    )


def test_float16_logits_file(tmp_path):
    x, t = _class_data(seed=20, dtype=np.float16)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", t.astype(np.int16))
    doc = fastloss.evaluate(
        "cross_entropy",
        tmp_path / "x.npy",
        tmp_path / "t.npy",
        chunk_rows=7,
        per_sample=tmp_path / "o.npy",
    )
    _check_class(doc, fastloss.cross_entropy, x, t, rtol=1e-6)
    assert np.load(tmp_path / "o.npy").dtype == np.float32


def test_fortran_ordered_npy(tmp_path):
    x, t = _class_data(seed=21)
    np.save(tmp_path / "x.npy", np.asfortranarray(x))
    np.save(tmp_path / "t.npy", t)
    doc = fastloss.evaluate("cross_entropy", tmp_path / "x.npy", tmp_path / "t.npy", chunk_rows=7)
    _check_class(doc, fastloss.cross_entropy, x, t)


def test_threads_option_is_restored():
    before = fastloss.get_num_threads()
    x, t = _class_data(seed=22)
    doc = fastloss.evaluate("cross_entropy", x, t, threads=1)
    assert doc["threads"] == 1 and fastloss.get_num_threads() == before


def test_progress_bar_uses_tqdm_when_available(monkeypatch):
    bars = []

    class FakeTqdm:
        def __init__(self, total, **kw):
            self.total, self.n, self.closed = total, 0, False
            bars.append(self)

        def update(self, k):
            self.n += k

        def close(self):
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeTqdm))
    x, t = _class_data(seed=23)
    fastloss.evaluate("cross_entropy", x, t, chunk_rows=7, progress=True)
    assert len(bars) == 1 and bars[0].n == bars[0].total == N and bars[0].closed
    fastloss.evaluate("cross_entropy", x, t, chunk_rows=7)  # progress=False by default
    assert len(bars) == 1
    monkeypatch.setitem(sys.modules, "tqdm", None)  # not installed: no bar, no error
    fastloss.evaluate("cross_entropy", x, t, chunk_rows=7, progress=True)


def test_progress_with_the_real_tqdm(capsys):
    pytest.importorskip("tqdm")
    x, t = _class_data(seed=28)
    doc = fastloss.evaluate("cross_entropy", x, t, chunk_rows=7, progress=True)
    assert doc["n_chunks"] == 8 and capsys.readouterr().out == ""


def test_cli_progress_only_on_a_terminal(monkeypatch, tmp_path, capsys):
    seen = []
    monkeypatch.setattr(_evaluate, "_progress_bar", lambda total, desc: seen.append(total))
    lx, lt = _write_class_files(tmp_path)
    assert cli.main(["eval", "--loss", "cross_entropy", "--logits", lx, "--targets", lt]) == 0
    assert seen == []  # captured stderr is not a terminal
    monkeypatch.setattr(eval_cli, "_isatty", lambda stream: True)
    assert cli.main(["eval", "--loss", "cross_entropy", "--logits", lx, "--targets", lt]) == 0
    assert seen == [N]
    assert (
        cli.main(
            ["eval", "--loss", "cross_entropy", "--logits", lx, "--targets", lt, "--no-progress"]
        )
        == 0
    )
    assert seen == [N]


# ------------------------------------------------------------------ command line


def _write_class_files(tmp_path, seed=24, C_=C):
    x, t = _class_data(seed=seed, shape=(N, C_))
    np.save(tmp_path / "preds.npy", x.astype(np.float32))
    np.save(tmp_path / "labels.npy", t)
    return str(tmp_path / "preds.npy"), str(tmp_path / "labels.npy")


def test_cli_table_and_json(tmp_path, capsys):
    lx, lt = _write_class_files(tmp_path)
    x, t = np.load(lx), np.load(lt)
    assert (
        cli.main(
            [
                "eval",
                "--loss",
                "cross_entropy",
                "--logits",
                lx,
                "--targets",
                lt,
                "--top-k",
                "2",
                "3",
                "--chunk-rows",
                "7",
            ]
        )
        == 0
    )
    out = capsys.readouterr()
    assert out.err == ""
    mean = float(fastloss.cross_entropy(x, t))
    shown = fastloss.evaluate("cross_entropy", lx, lt)["mean"]
    assert _rel(shown, mean) < 1e-6
    assert re.search(r"loss \(mean\) +" + re.escape(f"{shown:.7g}") + "\n", out.out)
    assert "top-3 accuracy" in out.out and "per class (9 classes present)" in out.out
    assert (
        cli.main(
            [
                "eval",
                "--loss",
                "cross_entropy",
                "--logits",
                lx,
                "--targets",
                lt,
                "--json",
                "--per-sample",
                str(tmp_path / "o.npy"),
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert _rel(doc["mean"], mean) < 1e-6
    assert doc["loss"] == "cross_entropy" and doc["files"]["logits"] == lx
    assert doc["files"]["per_sample"] == str(tmp_path / "o.npy")
    assert doc["options"]["ignore_index"] == -100 and doc["elapsed_s"] >= 0
    assert set(doc) >= {
        "n_samples",
        "sum",
        "accuracy",
        "error_rate",
        "top_k_accuracy",
        "per_class",
        "options",
        "files",
        "elapsed_s",
    }
    np.testing.assert_array_equal(
        np.load(tmp_path / "o.npy"), fastloss.cross_entropy(x, t, reduction="none")
    )


def test_cli_margin_family(tmp_path, capsys):
    """--p, --margin and --weight reach multi_margin_loss (class-index report, no "ignored"
    count); the multilabel losses report the loss per row only."""
    r = rng(35)
    x = r.standard_normal((40, 6))
    t = r.integers(0, 6, 40)
    w = r.uniform(0.5, 2.0, 6)
    lists = r.integers(-1, 6, (40, 6))
    for name, arr in (("x", x), ("t", t), ("w", w), ("lists", lists)):
        np.save(tmp_path / f"{name}.npy", arr)
    f = {k: str(tmp_path / f"{k}.npy") for k in ("x", "t", "w", "lists")}
    argv = ["eval", "--loss", "multi_margin_loss", "--logits", f["x"], "--targets", f["t"]]
    argv += ["--p", "2", "--margin", "0.5", "--weight", f["w"], "--chunk-rows", "7"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    mean = REF.multi_margin_loss(x, t, reduction="mean", p=2, margin=0.5, weight=w)
    assert "multi_margin_loss (p=2, margin=0.5, weight=" in out
    assert re.search(r"loss \(mean\) +" + re.escape(f"{mean:.7g}") + "\n", out)
    assert re.search(r"samples +40\n", out) and "ignored" not in out
    acc = (x.argmax(1) == t).mean()
    assert re.search(r"accuracy \(top-1\) +" + re.escape(f"{100 * acc:.2f}%"), out)
    assert "top-5 accuracy" in out and "mean entropy" in out and "per class" in out
    assert cli.main(argv + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert _rel(doc["mean"], mean) <= RTOL64 and doc["options"]["p"] == 2
    argv = ["eval", "--loss", "multilabel_margin_loss", "--logits", f["x"]]
    assert cli.main(argv + ["--targets", f["lists"], "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert _rel(doc["mean"], REF.multilabel_margin_loss(x, lists, reduction="mean")) <= RTOL64
    assert doc["accuracy"] is None and doc["per_class"] is None


def test_cli_many_classes_shows_the_worst_ten(tmp_path, capsys):
    lx, lt = _write_class_files(tmp_path, C_=60)
    assert cli.main(["eval", "--loss", "cross_entropy", "--logits", lx, "--targets", lt]) == 0
    out = capsys.readouterr().out
    assert "the 10 classes with the highest mean loss" in out
    doc = fastloss.evaluate("cross_entropy", lx, lt)
    worst = sorted(doc["per_class"], key=lambda r: r["mean_loss"], reverse=True)[:10]
    table = out.split("highest mean loss")[1].splitlines()[2:]
    assert [int(line.split()[0]) for line in table] == [r["class"] for r in worst]


def test_readme_example(tmp_path, capsys, monkeypatch):
    readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
    if not os.path.exists(readme):
        pytest.skip("no README.md next to the tests")
    text = open(readme, encoding="utf-8").read()
    section = text.split("## Evaluating prediction files")[1].split("\n## ")[0]
    commands = section.split("```sh\n")[1].split("```")[0].splitlines()
    shown = section.split("```text\n")[1].split("```")[0]
    assert commands[0].startswith('python -c "') and commands[1].startswith("fastloss eval ")
    monkeypatch.chdir(tmp_path)
    exec(commands[0][len('python -c "') : -1], {})
    assert cli.main(commands[1].split()[1:]) == 0
    out = capsys.readouterr().out
    for line in shown.splitlines():  # every line but the timing and the elided rows
        if line.strip() != "..." and "elapsed" not in line:
            assert line in out.splitlines(), line


def test_cli_json_nan_is_null(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((3, 4)))
    np.save(tmp_path / "t.npy", np.full(3, -100))
    assert (
        cli.main(
            [
                "eval",
                "--loss",
                "nll_loss",
                "--logits",
                str(tmp_path / "x.npy"),
                "--targets",
                str(tmp_path / "t.npy"),
                "--json",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["mean"] is None and doc["accuracy"] is None and doc["n_ignored"] == 3


def test_module_subprocess(tmp_path):
    lx, lt = _write_class_files(tmp_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastloss",
            "eval",
            "--loss",
            "focal_loss",
            "--gamma",
            "1",
            "--logits",
            "preds.npy",
            "--targets",
            "labels.npy",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    want = fastloss.focal_loss(np.load(lx), np.load(lt), gamma=1.0)
    assert _rel(doc["mean"], want) < 1e-6 and doc["files"]["logits"] == "preds.npy"


# ------------------------------------------------------------------ errors


def _err_files(tmp_path):
    x, t = _class_data(seed=25, shape=(10, 5), frac_ignored=0)
    p = {}

    def save(name, arr):
        np.save(tmp_path / name, arr)
        p[name] = str(tmp_path / name)

    save("x.npy", x)
    save("t.npy", t)
    save("t9.npy", t[:9])
    save("tf.npy", t.astype(np.float32))
    save("tstr.npy", t.astype(str))
    bad = t.copy()
    bad[7] = 5
    save("tbad.npy", bad)
    neg = t.copy()
    neg[4] = -1
    save("tneg.npy", neg)
    save("w3.npy", np.ones(3))
    save("p2.npy", np.full((10, 5), 2.0))
    save("hard.npy", (x > 0).astype(np.float64))
    np.save(tmp_path / "obj.npy", np.array([{}, 1], dtype=object), allow_pickle=True)
    p["obj.npy"] = str(tmp_path / "obj.npy")
    np.savez_compressed(tmp_path / "obj.npz", np.array([{}, 1], dtype=object))
    p["obj.npz"] = str(tmp_path / "obj.npz")
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(raw[: len(raw) - 40])  # header fine, data short
    (tmp_path / "header.npy").write_bytes(raw[:30])  # header cut
    (tmp_path / "garbage.npy").write_bytes(b"this is not an array\n" * 20)
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "zipgarbage.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    np.savez(tmp_path / "two.npz", a=x, b=t)
    for name, comp in (
        ("short_stored.npz", zipfile.ZIP_STORED),
        ("short_deflated.npz", zipfile.ZIP_DEFLATED),
    ):
        member = (tmp_path / "x.npy").read_bytes()[:-40]  # valid zip, short member
        with zipfile.ZipFile(tmp_path / name, "w", compression=comp) as zf:
            zf.writestr("x.npy", member)
    np.savez_compressed(tmp_path / "comp.npz", x=x)
    data = bytearray((tmp_path / "comp.npz").read_bytes())
    for i in range(120, 260):  # corrupt the stream
        data[i] ^= 0x5A
    (tmp_path / "corrupt.npz").write_bytes(bytes(data))
    for name in (
        "trunc.npy",
        "header.npy",
        "garbage.npy",
        "empty.npy",
        "zipgarbage.npz",
        "two.npz",
        "short_stored.npz",
        "short_deflated.npz",
        "corrupt.npz",
    ):
        p[name] = str(tmp_path / name)
    p["missing.npy"] = str(tmp_path / "missing.npy")
    p["dir"] = str(tmp_path)
    p["nofolder/out.npy"] = str(tmp_path / "nofolder" / "out.npy")
    return p


CE = ["--loss", "cross_entropy"]
MM = ["--loss", "multi_margin_loss"]
ERROR_CASES = [
    # (id, argv using {file} names, exit status, message fragment)
    (
        "missing-file",
        CE + ["--logits", "{missing.npy}", "--targets", "{t.npy}"],
        2,
        "logits: no such file",
    ),
    ("directory", CE + ["--logits", "{dir}", "--targets", "{t.npy}"], 2, "is a directory"),
    (
        "not-npy",
        CE + ["--logits", "{garbage.npy}", "--targets", "{t.npy}"],
        1,
        "is not a .npy or .npz file",
    ),
    (
        "empty-file",
        CE + ["--logits", "{empty.npy}", "--targets", "{t.npy}"],
        1,
        "is not a .npy or .npz file",
    ),
    (
        "truncated-data",
        CE + ["--logits", "{trunc.npy}", "--targets", "{t.npy}"],
        1,
        "corrupt or truncated .npy file",
    ),
    (
        "truncated-header",
        CE + ["--logits", "{header.npy}", "--targets", "{t.npy}"],
        1,
        "corrupt or truncated .npy file",
    ),
    (
        "object-dtype",
        CE + ["--logits", "{x.npy}", "--targets", "{obj.npy}"],
        1,
        "holds Python objects (pickled data), which are never loaded",
    ),
    (
        "object-dtype-npz",
        CE + ["--logits", "{x.npy}", "--targets", "{obj.npz}"],
        1,
        "holds Python objects (pickled data), which are never loaded",
    ),
    (
        "bad-zip",
        CE + ["--logits", "{zipgarbage.npz}", "--targets", "{t.npy}"],
        1,
        "is not a valid .npz file",
    ),
    (
        "npz-short-stored",
        CE + ["--logits", "{short_stored.npz}", "--targets", "{t.npy}"],
        1,
        "is truncated",
    ),
    (
        "npz-short-deflated",
        CE + ["--logits", "{short_deflated.npz}", "--targets", "{t.npy}"],
        1,
        "is truncated",
    ),
    (
        "npz-corrupt-stream",
        CE + ["--logits", "{corrupt.npz}", "--targets", "{t.npy}"],
        1,
        "corrupt",
    ),
    (
        "npz-needs-key",
        CE + ["--logits", "{two.npz}", "--targets", "{t.npy}"],
        2,
        "holds 2 arrays ('a', 'b'): select one with logits_key (--logits-key)",
    ),
    (
        "npz-unknown-key",
        CE + ["--logits", "{two.npz}", "--logits-key", "c", "--targets", "{t.npy}"],
        2,
        "has no array 'c' (arrays: 'a', 'b')",
    ),
    (
        "key-for-npy",
        CE + ["--logits", "{x.npy}", "--logits-key", "a", "--targets", "{t.npy}"],
        2,
        "only used with a .npz file",
    ),
    (
        "n-mismatch",
        CE + ["--logits", "{x.npy}", "--targets", "{t9.npy}"],
        1,
        "has shape (9,) but logits",
    ),
    (
        "float-labels",
        CE + ["--logits", "{x.npy}", "--targets", "{tf.npy}"],
        1,
        "must have an integer dtype",
    ),
    (
        "float-targets-nll",
        ["--loss", "nll_loss", "--logits", "{x.npy}", "--targets", "{tf.npy}"],
        1,
        "nll_loss needs integer class indices",
    ),
    (
        "string-targets",
        CE + ["--logits", "{x.npy}", "--targets", "{tstr.npy}"],
        1,
        "targets must be integer class indices or float probabilities",
    ),
    (
        "target-out-of-range",
        CE + ["--logits", "{x.npy}", "--targets", "{tbad.npy}", "--chunk-rows", "3"],
        1,
        "target 5 at position (7,) is out of range [0, 5)",
    ),
    (
        "negative-target",
        CE + ["--logits", "{x.npy}", "--targets", "{tneg.npy}"],
        1,
        "target -1 at position (4,) is out of range",
    ),
    (
        "weight-shape",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--weight", "{w3.npy}"],
        1,
        "weight must have shape (5,)",
    ),
    (
        "bce-domain",
        ["--loss", "binary_cross_entropy", "--logits", "{p2.npy}", "--targets", "{hard.npy}"],
        1,
        "must be a probability in [0, 1]",
    ),
    (
        "unknown-loss",
        ["--loss", "hinge", "--logits", "{x.npy}", "--targets", "{t.npy}"],
        2,
        "invalid choice: 'hinge'",
    ),
    (
        "missing-args",
        ["--loss", "cross_entropy"],
        2,
        "the following arguments are required: --logits, --targets",
    ),
    (
        "unknown-option",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--frobnicate"],
        2,
        "unrecognized arguments: --frobnicate",
    ),
    (
        "smoothing-range",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--label-smoothing", "1.5"],
        2,
        "label_smoothing must be in [0, 1]",
    ),
    (
        "gamma-negative",
        ["--loss", "focal_loss", "--logits", "{x.npy}", "--targets", "{t.npy}", "--gamma", "-1"],
        2,
        "gamma must be >= 0",
    ),
    (
        "gamma-nan",
        ["--loss", "focal_loss", "--logits", "{x.npy}", "--targets", "{t.npy}", "--gamma", "nan"],
        2,
        "gamma must be >= 0",
    ),
    (
        "gamma-not-a-number",
        ["--loss", "focal_loss", "--logits", "{x.npy}", "--targets", "{t.npy}", "--gamma", "abc"],
        2,
        "expected a number, got 'abc'",
    ),
    (
        "option-not-for-loss",
        ["--loss", "mse_loss", "--logits", "{x.npy}", "--targets", "{x.npy}", "--gamma", "1"],
        2,
        "option gamma does not apply to mse_loss",
    ),
    (
        "top-k-zero",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--top-k", "0"],
        2,
        "expected a positive integer, got '0'",
    ),
    (
        "top-k-too-big",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--top-k", "6"],
        2,
        "top_k 6 exceeds the number of classes (5)",
    ),
    (
        "chunk-rows-zero",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--chunk-rows", "0"],
        2,
        "expected a positive integer",
    ),
    (
        "batchmean-for-ce",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--reduction", "batchmean"],
        2,
        "reduction must be one of ('mean', 'sum')",
    ),
    (
        "per-sample-no-folder",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--per-sample", "{nofolder/out.npy}"],
        2,
        "cannot write",
    ),
    (
        "multi-margin-p-3",
        MM + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--p", "3"],
        2,
        "p must be 1 or 2",
    ),
    (
        "p-not-for-cross-entropy",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--p", "2"],
        2,
        "option p does not apply to cross_entropy",
    ),
    (
        "multi-margin-ignore-index",
        MM + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--ignore-index", "1"],
        2,
        "option ignore_index does not apply to multi_margin_loss",
    ),
    (
        "multi-margin-float-targets",
        MM + ["--logits", "{x.npy}", "--targets", "{tf.npy}"],
        1,
        "multi_margin_loss needs integer class indices",
    ),
    (
        "multi-margin-target-out-of-range",
        MM + ["--logits", "{x.npy}", "--targets", "{tbad.npy}", "--chunk-rows", "3"],
        1,
        "target 5 at position (7,) is out of range [0, 5)",
    ),
    (
        "multilabel-targets-shape",
        ["--loss", "multilabel_margin_loss", "--logits", "{x.npy}", "--targets", "{t.npy}"],
        1,
        "needs targets of the scores' shape (10, 5)",
    ),
    (
        "multilabel-top-k",
        ["--loss", "multilabel_soft_margin_loss", "--logits", "{x.npy}"]
        + ["--targets", "{hard.npy}", "--top-k", "2"],
        2,
        "top_k applies to class losses only",
    ),
    (
        "per-sample-is-input",
        CE + ["--logits", "{x.npy}", "--targets", "{t.npy}", "--per-sample", "{x.npy}"],
        2,
        "is the logits file; refusing to overwrite an input",
    ),
]


@pytest.fixture(scope="module")
def err_files(tmp_path_factory):
    return _err_files(tmp_path_factory.mktemp("errors"))


@pytest.mark.parametrize(
    "argv,status,message", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_cli_errors(err_files, capsys, argv, status, message):
    before = {k: os.path.getsize(v) for k, v in err_files.items() if os.path.isfile(v)}
    args = ["eval"] + [err_files[a[1:-1]] if a.startswith("{") else a for a in argv]
    assert cli.main(args) == status
    out = capsys.readouterr()
    assert out.out == ""
    assert "Traceback" not in out.err
    lines = out.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastloss eval: error: "), out.err
    assert message in lines[0]
    # inputs are never modified
    assert before == {k: os.path.getsize(v) for k, v in err_files.items() if os.path.isfile(v)}


def test_subprocess_error_has_no_traceback(err_files, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastloss",
            "eval",
            "--loss",
            "cross_entropy",
            "--logits",
            err_files["trunc.npy"],
            "--targets",
            err_files["t.npy"],
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("fastloss eval: error: ") and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_failed_run_removes_the_partial_per_sample_file(err_files, tmp_path):
    out = tmp_path / "ps.npy"
    with pytest.raises(IndexError, match=r"position \(7,\)"):
        fastloss.evaluate(
            "cross_entropy", err_files["x.npy"], err_files["tbad.npy"], chunk_rows=2, per_sample=out
        )
    assert not out.exists()


def test_python_api_raises_the_library_exceptions(err_files):
    x, t = np.load(err_files["x.npy"]), np.load(err_files["t.npy"])
    with pytest.raises(_evaluate.EvalOptionError, match="unknown loss 'hinge'"):
        fastloss.evaluate("hinge", x, t)
    with pytest.raises(ValueError, match="does not apply to cross_entropy"):
        fastloss.evaluate("cross_entropy", x, t, gamma=1.0)
    with pytest.raises(TypeError, match="gamma must be a real number"):
        fastloss.evaluate("focal_loss", x, t, gamma="x")
    with pytest.raises(TypeError, match="chunk_rows must be a positive int"):
        fastloss.evaluate("focal_loss", x, t, chunk_rows=2.5)
    with pytest.raises(FileNotFoundError):
        fastloss.evaluate("cross_entropy", err_files["missing.npy"], t)
    with pytest.raises(ValueError, match="truncated"):
        fastloss.evaluate("cross_entropy", err_files["trunc.npy"], t)
    with pytest.raises(IndexError, match=r"target 5 at position \(7,\)"):
        fastloss.evaluate("cross_entropy", x, np.load(err_files["tbad.npy"]), chunk_rows=3)
    with pytest.raises(ValueError, match="top_k applies to class losses only"):
        fastloss.evaluate("mse_loss", x, x, top_k=1)


# ------------------------------------------------------------------ flat memory


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm")
@pytest.mark.skipif(
    bool(os.environ.get("FASTLOSS_SANITIZED")) or "asan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer's quarantine keeps freed memory resident",
)
def test_memory_stays_flat_on_a_400mb_memmapped_file(tmp_path):
    if fastloss.get_backend() != "compiled":
        pytest.skip("the NumPy reference backend allocates float64 temporaries per chunk")
    rows, cols = 100_000, 1000  # float32: 400 MB
    path = tmp_path / "big.npy"
    block = rng(26).standard_normal((10_000, cols), dtype=np.float32)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (rows, cols)}
        )
        for _ in range(rows // block.shape[0]):
            f.write(block.tobytes())
    labels = rng(27).integers(0, cols, rows)
    np.save(tmp_path / "labels.npy", labels)
    del block
    size = os.path.getsize(path)
    assert size > 390e6

    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        doc = fastloss.evaluate(
            "cross_entropy", path, tmp_path / "labels.npy", per_sample=tmp_path / "ps.npy"
        )
    finally:
        done.set()
        sampler.join()
    growth = peak[0] - base
    assert doc["n_chunks"] >= 5
    assert growth < 0.4 * size, (
        f"RSS grew by {growth / 2**20:.0f} MB for a {size / 2**20:.0f} MB file"
    )
    # and the numbers are those of the whole array
    x = np.load(path, mmap_mode="r")
    assert _rel(doc["mean"], fastloss.cross_entropy(x, labels)) < 1e-6
    assert doc["accuracy"] == pytest.approx(
        np.mean(
            [
                (np.asarray(x[i : i + 20_000]).argmax(1) == labels[i : i + 20_000]).mean()
                for i in range(0, rows, 20_000)
            ]
        ),
        abs=1e-12,
    )
