"""fastloss.gbdt: the gradient-boosting kernels against the NumPy reference (every SIMD path,
both dtypes, both memory layouts), the focal Hessians against finite differences of the loss,
the Hessian policies, the errors, and real training runs of XGBoost, LightGBM, CatBoost and
scikit-learn's HistGradientBoosting (each skipped when the library is not installed): the
fastloss objectives reproduce the built-in objectives' predictions, and each library's sign
and layout conventions are exercised."""

import numpy as np
import pytest

import fastloss
from fastloss import gbdt
from fastloss.reference import _gbdt as R

from _helpers import assert_close

SOFTMAX = ("softmax", "softmax_focal")


def problem(loss, n=203, K=6, dtype=np.float64, seed=0, scale=3.0):
    """(scores, labels, sample_weight) of a loss, scores spread wide enough to reach the
    saturated regions (focal Hessians < 0 included)."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.2, 2.0, n).astype(dtype)
    if loss in SOFTMAX:
        x = scale * rng.standard_normal((n, K))
        return x.astype(dtype), rng.integers(0, K, n).astype(dtype), w
    x = scale * rng.standard_normal(n)
    if loss in ("logloss", "focal"):
        y = (rng.random(n) < 0.4).astype(dtype)
    elif loss == "poisson":
        y, x = rng.poisson(2.0, n).astype(dtype), x / 3
    else:
        y = rng.standard_normal(n).astype(dtype)
    return x.astype(dtype), y, w


def reference(loss, x, y, w=None, **params):
    plan = gbdt._Plan(loss, params)
    return R.grad_hess(loss, x, y, sample_weight=w, **plan.reference_params())


# ------------------------------------------------------------------ kernels vs reference
@pytest.mark.parametrize("loss", gbdt.LOSSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference(simd, loss, dtype):
    x, y, w = problem(loss, dtype=dtype)
    for weight in (None, w):
        for hessian in ("true", "clip"):
            g, h = gbdt.grad_hess(loss, x, y, sample_weight=weight, hessian=hessian)
            assert g.dtype == h.dtype == dtype and g.shape == h.shape == x.shape
            gr, hr = reference(loss, x, y, weight, hessian=hessian)
            assert_close(g, gr, dtype, err_msg=f"{loss} grad {simd}")
            assert_close(h, hr, dtype, err_msg=f"{loss} hess {simd}")


@pytest.mark.parametrize("loss", SOFTMAX)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", [2, 3, 17, 70])  # 70: the scratch tile leaves the stack
def test_softmax_layouts_and_options(simd, loss, dtype, K):
    """Row-major and class-major (F-order) scores and outputs, class weights, the Hessian
    factor, and every tail length of a tile (n = 37)."""
    x, y, w = problem(loss, n=37, K=K, dtype=dtype, seed=K)
    cw = np.linspace(0.5, 2.0, K)
    opts = dict(class_weight=cw, hessian_factor=K / (K - 1.0), hessian="true")
    gr, hr = reference(loss, x, y, w, **opts)
    for xin in (x, np.asfortranarray(x)):
        for order in ("C", "F"):
            g = np.empty(x.shape, dtype, order=order)
            h = np.empty(x.shape, dtype, order=order)
            out = gbdt.grad_hess(loss, xin, y, sample_weight=w, grad_out=g, hess_out=h, **opts)
            assert out[0] is g and out[1] is h
            assert_close(g, gr, dtype, err_msg=f"{loss} K={K} {order}")
            assert_close(h, hr, dtype, err_msg=f"{loss} K={K} {order}")


@pytest.mark.parametrize("loss", ["logloss", "focal", "softmax", "softmax_focal"])
def test_float32_outputs_from_float64(simd, loss):
    """LightGBM / scikit-learn: float64 scores, float32 gradient and Hessian buffers."""
    x, y, w = problem(loss, n=45)
    order = "F" if x.ndim == 2 else "C"
    g = np.empty(x.shape, np.float32, order=order)
    h = np.empty(x.shape, np.float32, order=order)
    gbdt.grad_hess(loss, np.asarray(x, order=order), y, sample_weight=w, grad_out=g, hess_out=h)
    gr, hr = reference(loss, x, y, w)
    assert_close(g, gr.astype(np.float32), np.float32)
    assert_close(h, hr.astype(np.float32), np.float32)


def test_threads_bit_identical(restore_threads):
    for loss in ("focal", "softmax_focal"):
        x, y, w = problem(loss, n=200_001 if loss == "focal" else 20_001)
        fastloss.set_num_threads(1)
        one = gbdt.grad_hess(loss, x, y, sample_weight=w)
        fastloss.set_num_threads(2)
        two = gbdt.grad_hess(loss, x, y, sample_weight=w)
        for a, b in zip(one, two):
            assert np.array_equal(a, b)


def test_reference_backend_matches():
    x, y, w = problem("softmax_focal", n=50)
    g, h = gbdt.grad_hess("softmax_focal", x, y, sample_weight=w)
    with fastloss.use_backend("reference"):
        gr, hr = gbdt.grad_hess("softmax_focal", x, y, sample_weight=w)
    assert_close(g, gr, np.float64)
    assert_close(h, hr, np.float64)


# ------------------------------------------------------------------ finite differences
def _fd(f, z, eps):
    """First and second central differences of the per-row loss f along each score."""
    f0 = f(z)
    return (f(z + eps) - f(z - eps)) / (2 * eps), (f(z + eps) - 2 * f0 + f(z - eps)) / eps**2


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_focal_matches_finite_differences(gamma, alpha):
    x, y, _ = problem("focal", n=400, seed=1)
    x = np.clip(x, -8, 8)

    def f(z):
        return R.loss_focal(z, y, alpha=alpha, gamma=gamma)

    gd, hd = _fd(f, x, 1e-4)
    g, h = gbdt.grad_hess("focal", x, y, alpha=alpha, gamma=gamma, hessian="true")
    gr, hr = R.grad_hess_focal(x, y, alpha=-1 if alpha is None else alpha, gamma=gamma)
    np.testing.assert_allclose(g, gd, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(h, hd, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gr, gd, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(hr, hd, rtol=1e-4, atol=1e-6)
    if gamma >= 0.5:
        assert (h < 0).any()  # the true Hessian of badly misclassified rows


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
def test_softmax_focal_matches_finite_differences(gamma):
    x, y, _ = problem("softmax_focal", n=120, K=5, seed=2, scale=2.0)
    g, h = gbdt.grad_hess("softmax_focal", x, y, gamma=gamma, hessian="true")
    gr, hr = R.grad_hess_softmax_focal(x, y, gamma=gamma)
    eps = 1e-4
    for k in range(x.shape[1]):
        e = np.zeros_like(x)
        e[:, k] = 1.0

        def f(t):
            return R.loss_softmax_focal(x + t * e, y, gamma=gamma)

        gd = (f(eps) - f(-eps)) / (2 * eps)
        hd = (f(eps) - 2 * f(0.0) + f(-eps)) / eps**2
        for got_g, got_h in ((g, h), (gr, hr)):
            np.testing.assert_allclose(got_g[:, k], gd, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(got_h[:, k], hd, rtol=1e-4, atol=1e-6)
    if gamma >= 1:
        assert (h < 0).any()


@pytest.mark.parametrize("loss", ["logloss", "softmax", "huber", "pseudo_huber", "poisson"])
def test_other_losses_match_finite_differences(loss):
    x, y, _ = problem(loss, n=300, K=4, seed=3)
    if loss == "huber":  # stay off the kinks at |r| = delta
        r = x - y
        x = np.where(np.abs(np.abs(r) - 1) < 1e-2, x + 0.05, x)
    g, h = gbdt.grad_hess(loss, x, y, hessian="true")
    eps = 1e-4
    cols = range(x.shape[1]) if x.ndim == 2 else [None]
    for k in cols:
        e = np.zeros_like(x)
        if k is None:
            e[:] = 1.0
        else:
            e[:, k] = 1.0

        def f(t):
            return R.loss(loss, x + t * e, y)

        gd = (f(eps) - f(-eps)) / (2 * eps)
        hd = (f(eps) - 2 * f(0.0) + f(-eps)) / eps**2
        gk, hk = (g, h) if k is None else (g[:, k], h[:, k])
        np.testing.assert_allclose(gk, gd, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(hk, hd, rtol=1e-4, atol=2e-6)


def test_saturated_rows_stay_finite(simd):
    """Scores far past the point where the sigmoid / softmax round to 0 or 1."""
    x = np.array([-800.0, -60.0, -20.0, 0.0, 20.0, 60.0, 800.0, np.inf, -np.inf])
    for dtype in (np.float32, np.float64):
        for y in (0.0, 1.0):
            t = np.full(x.shape, y)
            for loss in ("logloss", "focal"):
                g, h = gbdt.grad_hess(loss, x.astype(dtype), t.astype(dtype), hessian="true")
                assert np.isfinite(g).all() and np.isfinite(h).all(), (loss, dtype, y, g, h)
        z = np.array([[0.0, 200.0, -200.0], [0.0, 0.0, 0.0], [1e4, 0.0, 0.0]])
        lab = np.array([1.0, 2.0, 0.0])
        for loss in SOFTMAX:
            g, h = gbdt.grad_hess(loss, z.astype(dtype), lab.astype(dtype), hessian="true")
            assert np.isfinite(g).all() and np.isfinite(h).all(), (loss, dtype, g, h)
            gr, hr = reference(loss, z, lab, hessian="true")
            assert_close(g, gr, dtype)
            assert_close(h, hr, dtype)


# ------------------------------------------------------------------ Hessian policies
@pytest.mark.parametrize("loss", ["focal", "softmax_focal"])
def test_hessian_policies(simd, loss):
    x, y, w = problem(loss, n=500, K=4, seed=4)
    g_true, h_true = gbdt.grad_hess(loss, x, y, sample_weight=w, hessian="true")
    assert (h_true < 0).any()
    g_clip, h_clip = gbdt.grad_hess(loss, x, y, sample_weight=w, min_hessian=1e-3)
    np.testing.assert_array_equal(g_clip, g_true)
    np.testing.assert_array_equal(h_clip, np.maximum(h_true, 1e-3))
    g_b, h_b = gbdt.grad_hess(loss, x, y, sample_weight=w, hessian="bce_bound")
    np.testing.assert_array_equal(g_b, g_true)
    gr, hr = reference(loss, x, y, w, hessian="bce_bound")
    assert_close(h_b, hr, np.float64)
    assert (h_b >= 1e-16).all() and (h_b >= h_true).all()
    if loss == "focal":
        xt = np.where(y == 1, x, -x)
        p, q = 1 / (1 + np.exp(-xt)), 1 / (1 + np.exp(xt))
        at = np.where(y == 1, 0.25, 0.75)
        floor = w * at * q**2 * p * q
        assert (h_b >= floor * (1 - 1e-12)).all()


def test_gamma_zero_focal_is_logloss():
    x, y, w = problem("focal", n=300)
    a = gbdt.grad_hess("focal", x, y, alpha=None, gamma=0.0, sample_weight=w, hessian="true")
    b = gbdt.grad_hess("logloss", x, y, sample_weight=w, hessian="true")
    for u, v in zip(a, b):
        assert_close(u, v, np.float64)
    x, y, w = problem("softmax", n=100)
    a = gbdt.grad_hess("softmax_focal", x, y, gamma=0.0, hessian="true")
    b = gbdt.grad_hess("softmax", x, y, hessian="true")
    for u, v in zip(a, b):
        assert_close(u, v, np.float64)


def test_logloss_pos_weight_and_class_weight():
    x, y, _ = problem("logloss", n=100)
    g, h = gbdt.grad_hess("logloss", x, y, pos_weight=3.0, class_weight=[0.5, 2.0])
    p = 1 / (1 + np.exp(-x))
    c = 6.0 * y + 0.5 * (1 - y)
    assert_close(g, c * p - 6.0 * y, np.float64)
    assert_close(h, np.maximum(c * p * (1 - p), 1e-16), np.float64)


# ------------------------------------------------------------------ errors
def test_errors():
    x, y, _ = problem("softmax", n=10, K=3)
    with pytest.raises(ValueError, match="loss must be one of"):
        gbdt.grad_hess("nope", x, y)
    with pytest.raises(TypeError, match="takes no option 'delta'"):
        gbdt.grad_hess("softmax", x, y, delta=1.0)
    with pytest.raises(ValueError, match="hessian must be one of"):
        gbdt.grad_hess("softmax", x, y, hessian="abs")
    with pytest.raises(ValueError, match="bce_bound"):
        gbdt.grad_hess("softmax", x, y, hessian="bce_bound")
    bad = y.copy()
    bad[7] = 3
    with pytest.raises(ValueError, match=r"labels of 'softmax'.*3\.0 at row 7"):
        gbdt.grad_hess("softmax", x, bad)
    bad[7] = 1.5
    with pytest.raises(ValueError, match="at row 7"):
        gbdt.grad_hess("softmax", x.astype(np.float32), bad)
    with pytest.raises(ValueError, match=r"labels of 'focal' must be 0 or 1.*row 2"):
        gbdt.grad_hess("focal", np.zeros(4), [0, 1, 0.5, 1])
    with pytest.raises(ValueError, match="shape"):
        gbdt.grad_hess("softmax", x[:, 0], y)
    with pytest.raises(ValueError, match="labels must have shape"):
        gbdt.grad_hess("logloss", np.zeros(4), np.zeros(5))
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        gbdt.grad_hess("logloss", np.zeros(4), np.zeros(4), sample_weight=np.ones(3))
    with pytest.raises(TypeError, match="grad_out must be float64 or float32"):
        gbdt.grad_hess("logloss", np.zeros(4), np.zeros(4), grad_out=np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="grad_out must be float32"):
        gbdt.grad_hess("logloss", np.zeros(4, np.float32), np.zeros(4), grad_out=np.zeros(4))
    with pytest.raises(ValueError, match="delta must be a positive"):
        gbdt.grad_hess("huber", np.zeros(4), np.zeros(4), delta=0)
    with pytest.raises(ValueError, match="class_weight must have shape"):
        gbdt.grad_hess("logloss", np.zeros(4), np.zeros(4), class_weight=[1, 2, 3])
    with pytest.raises(ValueError, match="library must be one of"):
        gbdt.objective("logloss", library="h2o")
    buf = np.zeros(4)
    with pytest.raises(ValueError, match="must not share memory"):
        gbdt.grad_hess("logloss", np.zeros(4), np.zeros(4), grad_out=buf, hess_out=buf)


# ------------------------------------------------------------------ the libraries
def _data(seed=0, n=300):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    yb = (X[:, 0] + 0.5 * rng.standard_normal(n) > 0).astype(np.float64)
    yc = np.digitize(X[:, 1] + 0.3 * rng.standard_normal(n), [-0.7, 0.0, 0.7]).astype(np.float64)
    yr = 2 * X[:, 2] + rng.standard_normal(n)
    w = rng.uniform(0.5, 1.5, n)
    return X, yb, yc, yr, w


def test_xgboost_reproduces_builtin_objectives():
    xgb = pytest.importorskip("xgboost")
    X, yb, yc, yr, w = _data()
    P = {"max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0}
    n = len(yb)
    cases = [
        ("logloss", {"objective": "binary:logistic"}, yb, np.zeros(n)),
        ("softmax", {"objective": "multi:softprob", "num_class": 4}, yc, np.zeros((n, 4))),
        ("pseudo_huber", {"objective": "reg:pseudohubererror", "huber_slope": 1.0}, yr, None),
    ]
    for loss, builtin, y, margin in cases:
        # the same starting margin for both: a custom objective has no link for base_score
        d = xgb.DMatrix(X, label=y, weight=w, base_margin=margin)
        extra = {"base_score": 0.0} if margin is None else {}
        ref = xgb.train({**P, **builtin, **extra}, d, 8)
        own_params = {**P, **extra, "disable_default_eval_metric": 1}
        if "num_class" in builtin:
            own_params["num_class"] = builtin["num_class"]
        own = xgb.train(own_params, d, 8, obj=gbdt.objective(loss, library="xgboost"))
        a = ref.predict(d, output_margin=True)
        b = own.predict(d, output_margin=True)
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5, err_msg=loss)


def test_xgboost_conventions_and_sklearn_api():
    xgb = pytest.importorskip("xgboost")
    X, yb, yc, yr, w = _data(1)
    obj = gbdt.objective("softmax", library="xgboost")
    # the native call: (predt (n, K) float32, dtrain) -> (n, K) float32 with factor 2
    predt = np.random.default_rng(0).standard_normal((len(yc), 4)).astype(np.float32)
    g, h = obj(predt, xgb.DMatrix(X, label=yc, weight=w))
    assert g.shape == h.shape == (len(yc), 4) and g.dtype == np.float32 and g.flags.c_contiguous
    gr, hr = R.grad_hess("softmax", predt, yc, sample_weight=w, hessian_factor=2.0)
    assert_close(g, gr, np.float32)
    assert_close(h, np.maximum(hr, 1e-16), np.float32)
    # scikit-learn API with sample weights (XGBoost refuses a callable without sample_weight)
    kw = dict(n_estimators=8, max_depth=3, learning_rate=0.3, n_jobs=1, random_state=0)
    for loss, y, builtin, base in (
        ("logloss", yb, "binary:logistic", 0.5),  # margin 0 for both
        ("softmax", yc, "multi:softprob", 0.0),
    ):
        Est = xgb.XGBClassifier
        ref = Est(objective=builtin, base_score=base, **kw)
        ref.fit(X, y, sample_weight=w)
        own = Est(objective=gbdt.objective(loss, library="xgboost"), base_score=base, **kw)
        own.fit(X, y, sample_weight=w)
        np.testing.assert_allclose(
            own.predict(X, output_margin=True),
            ref.predict(X, output_margin=True),
            rtol=1e-5,
            atol=1e-5,
        )
    # focal trains and its metric falls
    d = xgb.DMatrix(X, label=yb, base_margin=np.zeros(len(yb)))
    res = {}
    xgb.train(
        {"max_depth": 3, "eta": 0.3, "nthread": 1, "disable_default_eval_metric": 1},
        d,
        10,
        obj=gbdt.objective("focal", library="xgboost"),
        custom_metric=gbdt.metric("focal", library="xgboost"),
        evals=[(d, "train")],
        evals_result=res,
        verbose_eval=False,
    )
    curve = res["train"]["fastloss-focal"]
    assert curve[-1] < 0.5 * curve[0]


def test_lightgbm_reproduces_builtin_objectives():
    lgb = pytest.importorskip("lightgbm")
    X, yb, yc, yr, w = _data(2)
    # a custom objective starts from 0: so does the built-in without boost_from_average
    P = dict(num_leaves=7, learning_rate=0.3, num_threads=1, seed=0, verbose=-1)
    P.update(boost_from_average=False, min_data_in_leaf=5)
    for loss, builtin, y in (("logloss", "binary", yb), ("softmax", "multiclass", yc)):
        extra = {"num_class": 4} if loss == "softmax" else {}
        d = lgb.Dataset(X, label=y, weight=w, free_raw_data=False)
        ref = lgb.train({**P, **extra, "objective": builtin}, d, 8)
        obj = gbdt.objective(loss, library="lightgbm")
        own = lgb.train({**P, **extra, "objective": obj}, d, 8)
        np.testing.assert_allclose(
            own.predict(X, raw_score=True), ref.predict(X, raw_score=True), rtol=1e-6, atol=1e-6
        )
    # scikit-learn API: f(y_true, y_pred, weight) with three parameters
    kw = dict(n_estimators=8, num_leaves=7, learning_rate=0.3, n_jobs=1, random_state=0)
    kw.update(verbose=-1, boost_from_average=False, min_child_samples=5)
    ref = lgb.LGBMClassifier(**kw).fit(X, yc, sample_weight=w)
    own = lgb.LGBMClassifier(objective=gbdt.objective("softmax", library="lightgbm"), **kw)
    own.fit(X, yc, sample_weight=w)
    np.testing.assert_allclose(
        own.predict(X, raw_score=True), ref.predict(X, raw_score=True), rtol=1e-6, atol=1e-6
    )


def test_lightgbm_metric():
    lgb = pytest.importorskip("lightgbm")
    X, yb, yc, yr, w = _data(6)
    d = lgb.Dataset(X, label=yb, weight=w, free_raw_data=False)
    params = dict(num_leaves=7, learning_rate=0.3, num_threads=1, verbose=-1, metric="None")
    params["objective"] = gbdt.objective("focal", library="lightgbm", hessian="bce_bound")
    res = {}
    booster = lgb.train(
        params,
        d,
        10,
        valid_sets=[d],
        feval=gbdt.metric("focal", library="lightgbm"),
        callbacks=[lgb.record_evaluation(res)],
    )
    curve = res["training"]["fastloss-focal"]
    assert curve[-1] < 0.5 * curve[0]
    raw = booster.predict(X, raw_score=True)
    want = np.sum(R.loss_focal(raw, yb) * w) / np.sum(w)
    assert abs(curve[-1] - want) < 1e-9 * max(1.0, want)


def test_lightgbm_layout():
    """LightGBM 4: (n, K) float64 scores in F order in, (n, K) float32 F order out, Hessian
    factor K / (K - 1)."""
    obj = gbdt.objective("softmax", library="lightgbm")
    rng = np.random.default_rng(3)
    n, K = 50, 4
    preds = np.asfortranarray(rng.standard_normal((n, K)))
    y = rng.integers(0, K, n).astype(np.float32)
    g, h = obj(y, preds, None)
    assert g.dtype == h.dtype == np.float32 and g.flags.f_contiguous and g.shape == (n, K)
    gr, hr = R.grad_hess("softmax", preds, y, hessian_factor=K / (K - 1))
    assert_close(g, gr.astype(np.float32), np.float32)
    assert_close(h, np.maximum(hr, 1e-16).astype(np.float32), np.float32)
    assert np.shares_memory(g.ravel(order="F"), g)  # LightGBM's ravel: no copy


def test_catboost_reproduces_builtin_objectives():
    cb = pytest.importorskip("catboost")
    X, yb, yc, yr, w = _data(4, n=200)
    kw = dict(iterations=6, depth=3, learning_rate=0.3, random_seed=0, thread_count=1)
    kw.update(verbose=False, boost_from_average=False, bootstrap_type="No", random_strength=0)
    kw.update(leaf_estimation_iterations=1, leaf_estimation_method="Newton")
    kw.update(allow_writing_files=False)  # no catboost_info/ folder
    for loss, builtin, y, extra in (
        ("logloss", "Logloss", yb, {}),
        ("softmax", "MultiClass", yc, {"classes_count": 4}),
    ):
        ref = cb.CatBoostClassifier(loss_function=builtin, **kw).fit(X, y, sample_weight=w)
        own = cb.CatBoostClassifier(
            loss_function=gbdt.objective(loss, library="catboost"),
            eval_metric=gbdt.metric(loss, library="catboost"),
            **extra,
            **kw,
        ).fit(X, y, sample_weight=w)
        np.testing.assert_allclose(
            own.predict(X, prediction_type="RawFormulaVal"),
            ref.predict(X, prediction_type="RawFormulaVal"),
            rtol=1e-6,
            atol=1e-6,
        )


def test_catboost_sign_convention():
    """CatBoost maximises: der1 = -grad, der2 = -hess (weighted), as an (n, 2) array."""
    obj = gbdt.objective("focal", library="catboost", hessian="true")
    x, y, w = problem("focal", n=30)
    ders = obj.calc_ders_range(list(x), list(y), list(w))
    g, h = R.grad_hess("focal", x, y, sample_weight=w, alpha=0.25, gamma=2.0)
    assert ders.shape == (30, 2)
    assert_close(ders[:, 0], -g, np.float64)
    assert_close(ders[:, 1], -h, np.float64)
    multi = gbdt.objective("softmax", library="catboost")
    d1, d2 = multi.calc_ders_multi([0.5, -1.0, 2.0], 2, 2.0)
    p = np.exp([0.5, -1.0, 2.0])
    p /= p.sum()
    assert_close(np.array(d1), -2.0 * (p - np.eye(3)[2]), np.float64)
    assert_close(np.array(d2), -2.0 * (np.diag(p) - np.outer(p, p)), np.float64)


def test_sklearn_histgradientboosting():
    pytest.importorskip("sklearn")
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):  # tiny fits: threads only wait
        _sklearn_histgradientboosting(HistGradientBoostingClassifier)


def _sklearn_histgradientboosting(HistGradientBoostingClassifier):
    X, yb, yc, yr, w = _data(5)
    kw = dict(max_iter=8, max_leaf_nodes=7, learning_rate=0.3, early_stopping=False)
    ref = HistGradientBoostingClassifier(loss="log_loss", **kw).fit(X, yb, sample_weight=w)
    loss = gbdt.objective("logloss", library="sklearn")
    assert "private" in type(loss).__doc__
    own = HistGradientBoostingClassifier(loss=loss, **kw).fit(X, yb, sample_weight=w)
    np.testing.assert_allclose(own.decision_function(X), ref.decision_function(X), atol=1e-6)
    ref = HistGradientBoostingClassifier(loss="log_loss", **kw).fit(X, yc)
    loss = gbdt.objective("softmax", library="sklearn", n_classes=4)
    own = HistGradientBoostingClassifier(loss=loss, **kw).fit(X, yc)
    np.testing.assert_allclose(own.decision_function(X), ref.decision_function(X), atol=1e-6)
    scorer = gbdt.metric("softmax", library="sklearn")
    assert scorer(own, X, yc) < 0
