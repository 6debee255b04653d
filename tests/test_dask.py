"""fastloss.dask: every loss family on dask arrays against the same call on the whole NumPy
arrays (uneven chunks, size-1 and all-ignored blocks, weights), the graph of a reduction,
threaded and LocalCluster runs, and evaluate over shards, Zarr and the CLI."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

import fastloss  # noqa: E402
import fastloss.dask as FD  # noqa: E402

TOL = {np.float64: 1e-12, np.float32: 1e-6}


def close(got, want, dtype, what=""):
    np.testing.assert_allclose(
        np.asarray(got, np.float64),
        np.asarray(want, np.float64),
        rtol=TOL[dtype],
        atol=TOL[dtype] * max(1.0, float(np.max(np.abs(want), initial=0.0))),
        err_msg=what,
    )


def compute_all(result):
    if isinstance(result, tuple):
        loss, grads = result
        grads = grads if isinstance(grads, tuple) else (grads,)
        out = dask.compute(loss, *grads, scheduler="synchronous")
        return out[0], out[1:]
    return dask.compute(result, scheduler="synchronous")[0], ()


def check(name, arrays, chunks, dtype, options, reductions=("none", "mean", "sum")):
    """The dask call (arrays chunked by `chunks` along axis 0, or as given) equals the NumPy
    call, loss and every gradient, for each reduction."""
    fn, dfn = getattr(fastloss, name), getattr(FD, name)
    darrays = [da.from_array(a, chunks=(chunks,) + a.shape[1:]) if a.ndim else a for a in arrays]
    grad = name not in ("error_rate", "accuracy")
    for reduction in reductions:
        kw = dict(options, reduction=reduction)
        want = fn(*arrays, **kw, **({"return_grad": True} if grad else {}))
        got = compute_all(dfn(*darrays, **kw, **({"return_grad": True} if grad else {})))
        if not grad:
            close(got[0], want, dtype, f"{name} {reduction}")
            continue
        close(got[0], want[0], dtype, f"{name} {reduction}")
        wg = want[1] if isinstance(want[1], tuple) else (want[1],)
        assert len(got[1]) == len(wg)
        for g, w in zip(got[1], wg):
            close(g, w, dtype, f"{name} {reduction} grad")


UNEVEN = (3, 1, 40, 1, 15)  # 60 rows: size-1 blocks among others


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_class_losses(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 7)).astype(dtype)
    t = rng.integers(0, 7, 60)
    t[4:44] = -100  # the 40-row block is all ignored
    t[0] = 3
    w = rng.uniform(0.5, 2.0, 7)
    sw = rng.uniform(0.0, 2.0, 60)
    for name, opts in [
        ("cross_entropy", {"weight": w, "label_smoothing": 0.1}),
        ("cross_entropy", {"sample_weight": sw}),
        ("focal_loss", {"gamma": 0.5, "weight": w}),
        ("nll_loss", {"weight": w}),
        ("error_rate", {"top_k": 2, "sample_weight": sw}),
        ("accuracy", {}),
        ("multi_margin_loss", {"weight": w, "p": 2}),
    ]:
        tt = np.where(t < 0, 0, t) if name == "multi_margin_loss" else t
        check(name, [x, tt], UNEVEN, dtype, opts)
    p = rng.dirichlet(np.ones(7), 60).astype(dtype)
    check("cross_entropy", [x, p], UNEVEN, dtype, {"label_smoothing": 0.2})
    # (N, C, d) with the d axis chunked too
    x3 = rng.standard_normal((12, 5, 9)).astype(dtype)
    t3 = rng.integers(0, 5, (12, 9))
    dx = da.from_array(x3, chunks=((5, 7), (2, 3), (4, 5)))  # the class axis gets rechunked
    with pytest.warns(da.PerformanceWarning, match="rechunking"):
        got = FD.cross_entropy(dx, da.from_array(t3, chunks=((6, 6), (3, 6))), return_grad=True)
    loss, (g,) = compute_all(got)
    want = fastloss.cross_entropy(x3, t3, return_grad=True)
    close(loss, want[0], dtype)
    close(g, want[1], dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementwise_pair_embedding_and_entropy(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 6)).astype(dtype)
    y = rng.standard_normal((60, 6)).astype(dtype)
    b = (y > 0).astype(dtype)
    w = rng.uniform(0.0, 1.0, (60, 6)).astype(dtype)
    check("mse_loss", [x, y], UNEVEN, dtype, {"weight": w})  # mean: / sum of the weights
    check("huber_loss", [x, y], UNEVEN, dtype, {"weight": w, "delta": 0.5})
    check(
        "binary_cross_entropy_with_logits",
        [x, b],
        UNEVEN,
        dtype,
        {"pos_weight": np.arange(1.0, 7.0, dtype=dtype)},
    )
    check("kl_div", [x, np.abs(y)], UNEVEN, dtype, {}, ("none", "mean", "sum", "batchmean"))
    check("gaussian_nll_loss", [x, y, w + 0.1], UNEVEN, dtype, {"full": True})
    check("margin_ranking_loss", [x, y, np.sign(y)], UNEVEN, dtype, {"margin": 0.1})
    check("cosine_embedding_loss", [x, y, np.sign(y[:, 0])], UNEVEN, dtype, {"margin": 0.2})
    check("triplet_margin_loss", [x, y, x + y], UNEVEN, dtype, {"swap": True})
    check("multilabel_soft_margin_loss", [x, b], UNEVEN, dtype, {})
    check("entropy", [x], UNEVEN, dtype, {})
    boxes1 = np.concatenate([x[:, :2], x[:, :2] + np.abs(y[:, :2]) + 0.1], axis=1)
    boxes2 = boxes1 + 0.3 * x[:, 2:6]
    check("generalized_box_iou_loss", [boxes1, boxes2], UNEVEN, dtype, {"weight": w[:, 0]})
    check("complete_box_iou_loss", [boxes1, boxes2], UNEVEN, dtype, {"grad_boxes2": True})


def test_ctc_loss():
    rng = np.random.default_rng(2)
    T, N, C = 20, 9, 5
    x = rng.standard_normal((T, N, C))
    tg = rng.integers(1, C, (N, 4))
    il, tl = rng.integers(8, T + 1, N), rng.integers(0, 5, N)
    dx = da.from_array(x, chunks=(T, (1, 3, 5), C))
    for reduction in ("none", "mean", "sum"):
        got = compute_all(
            FD.ctc_loss(dx, tg, il, tl, from_logits=True, reduction=reduction, return_grad=True)
        )
        want = fastloss.ctc_loss(
            x, tg, il, tl, from_logits=True, reduction=reduction, return_grad=True
        )
        close(got[0], want[0], np.float64, reduction)
        close(got[1][0], want[1], np.float64, reduction)


def test_hypothesis_random_chunkings():
    hyp = pytest.importorskip("hypothesis")
    st = hyp.strategies

    @hyp.settings(max_examples=25, deadline=None)
    @hyp.given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(0, 2**16))
    def run(sizes, seed):
        rng = np.random.default_rng(seed)
        n = sum(sizes)
        x = rng.standard_normal((n, 4))
        t = rng.integers(-1, 4, n)  # -1: ignored
        w = rng.uniform(0.1, 3.0, 4)
        dx = da.from_array(x, chunks=(tuple(sizes), 4))
        got = FD.cross_entropy(dx, t, weight=w, ignore_index=-1).compute(scheduler="sync")
        want = fastloss.cross_entropy(x, t, weight=w, ignore_index=-1)
        if np.isnan(want):
            assert np.isnan(got)
        else:
            close(got, want, np.float64)

    run()


def test_reduction_graph_holds_no_full_array():
    """A mean over 8 blocks: no task returns more than a block of the logits (the partials
    are (1, 2) arrays), so the N x C logits never exist in one piece."""
    from dask.callbacks import Callback

    rng = np.random.default_rng(3)
    x = rng.standard_normal((800, 10))
    t = rng.integers(0, 10, 800)
    sizes = []

    class Sizes(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            sizes.append(np.size(result))

    with Sizes():
        got = FD.cross_entropy(da.from_array(x, chunks=(100, 10)), t).compute(scheduler="sync")
    close(got, fastloss.cross_entropy(x, t), np.float64)
    assert sizes and max(sizes) <= 100 * 10


def test_threaded_scheduler_and_task_threads(restore_threads):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4000, 30))
    t = rng.integers(0, 30, 4000)
    fastloss.set_num_threads(2)
    dx = da.from_array(x, chunks=(500, 30))
    got = FD.cross_entropy(dx, t, return_grad=True)
    loss, grad = dask.compute(*got, scheduler="threads")
    want = fastloss.cross_entropy(x, t, return_grad=True)
    close(loss, want[0], np.float64)
    close(grad, want[1], np.float64)
    assert fastloss.get_num_threads() == 2  # restored after the tasks


def test_errors():
    x = da.zeros((10, 3), chunks=5)
    with pytest.raises(ValueError, match="reduction"):
        FD.cross_entropy(x, np.zeros(10, int), reduction="batchmean")
    with pytest.raises(ValueError, match="axis 1"):
        FD.cross_entropy(x, np.zeros(10, int), axis=0)
    with pytest.raises(ValueError, match="grad_output"):
        FD.mse_loss(x, x, grad_output=2.0)
    with pytest.raises(ValueError, match="one shape"):
        FD.gaussian_nll_loss(x, x, da.ones((10, 1)), return_grad=True)


# ------------------------------------------------------------------ evaluate


def _shards(tmp_path, x, t, cuts):
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        np.save(tmp_path / f"x{i:02d}.npy", x[a:b])
        np.save(tmp_path / f"t{i:02d}.npy", t[a:b])
    return str(tmp_path / "x*.npy"), str(tmp_path / "t*.npy")


def _same_report(got, want):
    for key in ("mean", "sum", "normalizer", "accuracy", "error_rate", "mean_entropy"):
        if want[key] is None:
            assert got[key] is None, key
        else:
            close(got[key], want[key], np.float64, key)
    assert got["n_samples"] == want["n_samples"] and got["n_ignored"] == want["n_ignored"]
    assert got["top_k_accuracy"].keys() == want["top_k_accuracy"].keys()
    for k in want["top_k_accuracy"]:
        close(got["top_k_accuracy"][k], want["top_k_accuracy"][k], np.float64)
    assert [r["class"] for r in got["per_class"]] == [r["class"] for r in want["per_class"]]
    for a, b in zip(got["per_class"], want["per_class"]):
        assert a["count"] == b["count"]
        close(a["mean_loss"], b["mean_loss"], np.float64)
        close(a["accuracy"], b["accuracy"], np.float64)


def test_evaluate_shards_zarr_and_per_sample(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 12)).astype(np.float32)
    t = rng.integers(0, 12, 3000)
    t[100:1100] = -100
    want = fastloss.evaluate(
        "cross_entropy", x, t, label_smoothing=0.1, per_sample=tmp_path / "want.npy"
    )
    xs, ts = _shards(tmp_path, x, t, [0, 100, 1100, 1101, 3000])
    got = FD.evaluate(
        "cross_entropy",
        xs,
        ts,
        label_smoothing=0.1,
        scheduler="synchronous",
        per_sample=tmp_path / "got.npy",
    )
    _same_report(got, want)
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), np.load(tmp_path / "want.npy"))
    pytest.importorskip("zarr")
    da.to_zarr(da.from_array(x, chunks=(700, 12)), str(tmp_path / "x.zarr"))
    got = FD.evaluate(
        "cross_entropy",
        str(tmp_path / "x.zarr"),
        da.from_array(t, chunks=500),
        label_smoothing=0.1,
        scheduler="threads",
    )
    _same_report(got, want)


def test_cli_scheduler(tmp_path, capsys):
    from fastloss import cli

    rng = np.random.default_rng(6)
    x = rng.standard_normal((2000, 6)).astype(np.float32)
    t = rng.integers(0, 6, 2000)
    xs, ts = _shards(tmp_path, x, t, [0, 700, 2000])
    assert (
        cli.main(
            [
                "eval",
                "--loss",
                "focal_loss",
                "--gamma",
                "0.5",
                "--logits",
                xs,
                "--targets",
                ts,
                "--scheduler",
                "synchronous",
                "--json",
            ]
        )
        == 0
    )
    import json

    doc = json.loads(capsys.readouterr().out)
    want = fastloss.evaluate("focal_loss", x, t, gamma=0.5)
    close(doc["mean"], want["mean"], np.float64)
    assert doc["files"]["logits"] == xs


@pytest.mark.parametrize("processes", [False, True])
def test_local_cluster(processes, tmp_path):
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4000, 8))
    t = rng.integers(0, 8, 4000)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=processes, dashboard_address=None
    ) as cluster:
        with distributed.Client(cluster) as client:
            dx = da.from_array(x, chunks=(700, 8))
            loss, grad = client.compute(FD.cross_entropy(dx, t, return_grad=True), sync=True)
            want = fastloss.cross_entropy(x, t, return_grad=True)
            close(loss, want[0], np.float64)
            close(grad, want[1], np.float64)
            xs, ts = _shards(tmp_path, x, t, [0, 1500, 4000])
            got = FD.evaluate("cross_entropy", xs, ts, scheduler=client)
            _same_report(got, fastloss.evaluate("cross_entropy", x, t))
