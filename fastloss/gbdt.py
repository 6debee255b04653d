"""Custom objectives for gradient-boosted trees: gradient and Hessian in one fused pass.

``grad_hess(loss, scores, labels, ...)`` computes, per row, the gradient and the diagonal
Hessian of a loss with respect to the raw scores (margins) into preallocated buffers;
``objective(loss, library=...)`` wraps it into exactly the callable XGBoost, LightGBM,
CatBoost or scikit-learn's HistGradientBoosting wants; ``metric(loss, library=...)`` gives
the matching evaluation callable (the same loss, computed from the raw scores through the
link).  None of the libraries is a dependency of fastloss (``pip install 'fastloss[gbdt]'``
installs all three).

Losses (``LOSSES``) and their options:

=================  =====================================================  ==================
loss               per row                                                options
=================  =====================================================  ==================
``logloss``        binary cross entropy on the logit                      pos_weight,
                                                                          class_weight (2,)
``focal``          sigmoid focal loss, labels 0/1                         alpha, gamma
``softmax``        softmax cross entropy, class-index labels, (n, K)      class_weight (K,),
                   scores; diagonal Hessian p (1 - p) times               hessian_factor
                   hessian_factor (XGBoost 2, LightGBM K / (K - 1))
``softmax_focal``  softmax focal loss (1 - p_y)^gamma (-log p_y)          gamma, class_weight,
                                                                          hessian_factor
``huber``          Huber (Hessian 1 inside delta, 0 outside)              delta
``pseudo_huber``   delta^2 (sqrt(1 + (r / delta)^2) - 1)                  delta
``poisson``        exp(z) - y z (log link)                                -
``gaussian``       (z - y)^2 / (2 var), fixed variance                    var
=================  =====================================================  ==================

Every loss also takes ``hessian`` and ``min_hessian``: ``"true"`` returns the exact second
derivative (the focal losses' goes negative for badly misclassified rows), ``"clip"`` (the
default) returns ``max(h, min_hessian)`` (``min_hessian=1e-16``, XGBoost's own floor),
``"bce_bound"`` first raises the focal losses' Hessian to the cross entropy's Hessian
weighted by the focal factor, ``a_t (1 - p_t)^gamma p (1 - p)``, then clips.  Sample weights
multiply g and h.  docs/numerics.md derives the Hessians and the policies.
"""

from __future__ import annotations

import math

import numpy as np

from . import _config
from . import _validate as V
from .reference import _gbdt as _ref

__all__ = ["LOSSES", "LIBRARIES", "grad_hess", "objective", "metric"]

LOSSES = (
    "logloss",
    "focal",
    "softmax",
    "softmax_focal",
    "huber",
    "pseudo_huber",
    "poisson",
    "gaussian",
)
LIBRARIES = ("xgboost", "lightgbm", "catboost", "sklearn")
_SOFTMAX = ("softmax", "softmax_focal")
_FOCAL = ("focal", "softmax_focal")
_HESSIAN = ("true", "clip", "bce_bound")
# the options of each loss (besides hessian / min_hessian) and their defaults
_OPTIONS = {
    "logloss": {"pos_weight": 1.0, "class_weight": None},
    "focal": {"alpha": 0.25, "gamma": 2.0},
    "softmax": {"class_weight": None, "hessian_factor": 1.0},
    "softmax_focal": {"gamma": 2.0, "class_weight": None, "hessian_factor": 1.0},
    "huber": {"delta": 1.0},
    "pseudo_huber": {"delta": 1.0},
    "poisson": {},
    "gaussian": {"var": 1.0},
}
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)


def _positive(value, name):
    v = V.as_real(value, name)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return v


def _nonneg(value, name):
    v = V.as_real(value, name)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


class _Plan:
    """A loss with its options resolved once: the kernel's op code and parameters."""

    def __init__(self, loss, params):
        if not isinstance(loss, str) or loss not in _OPTIONS:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        params = dict(params)
        hessian = params.pop("hessian", "clip")
        min_hessian = params.pop("min_hessian", 1e-16)
        unknown = sorted(set(params) - set(_OPTIONS[loss]))
        if unknown:
            raise TypeError(
                f"loss {loss!r} takes no option {unknown[0]!r} (its options: "
                f"{', '.join(_OPTIONS[loss]) or 'none'}, hessian, min_hessian)"
            )
        opts = {**_OPTIONS[loss], **params}
        if hessian not in _HESSIAN:
            raise ValueError(f"hessian must be one of {_HESSIAN}, got {hessian!r}")
        if hessian == "bce_bound" and loss not in _FOCAL:
            raise ValueError(
                f"hessian='bce_bound' is for the focal losses (their Hessian can be negative), "
                f"not {loss!r}"
            )
        self.loss, self.options, self.hessian = loss, opts, hessian
        self.min_hessian = _nonneg(min_hessian, "min_hessian") if hessian != "true" else None
        self.bce_bound = hessian == "bce_bound"
        self.p1 = self.p2 = 0.0
        self.hessian_factor = 1.0
        self.class_weight = None  # float64 array, or None
        if loss == "logloss":
            pw = _nonneg(opts["pos_weight"], "pos_weight")
            w_neg, w_pos = 1.0, pw
            if opts["class_weight"] is not None:
                cw = self._weights(opts["class_weight"], "class_weight", 2)
                w_neg, w_pos = float(cw[0]), float(cw[1]) * pw
            self.p1, self.p2 = w_pos, w_neg
        elif loss == "focal":
            alpha = opts["alpha"]
            alpha = -1.0 if alpha is None else V.as_real(alpha, "alpha")
            if alpha >= 0 and not alpha <= 1:
                raise ValueError(f"alpha must be in [0, 1] (or None / < 0: none), got {alpha!r}")
            self.p1, self.p2 = alpha, _nonneg(opts["gamma"], "gamma")
        elif loss in _SOFTMAX:
            if loss == "softmax_focal":
                self.p2 = _nonneg(opts["gamma"], "gamma")
            self.hessian_factor = _positive(opts["hessian_factor"], "hessian_factor")
            if opts["class_weight"] is not None:
                self.class_weight = self._weights(opts["class_weight"], "class_weight", None)
        elif loss in ("huber", "pseudo_huber"):
            self.p1 = _positive(opts["delta"], "delta")
        elif loss == "gaussian":
            self.p1 = 1.0 / _positive(opts["var"], "var")
        self.op = None if _config._kernels is None else _config._kernels.GBDT_OPS[loss]

    @staticmethod
    def _weights(value, name, size):
        w = np.asarray(V.as_array(value, name), dtype=np.float64)
        if w.ndim != 1 or (size is not None and w.shape != (size,)):
            want = f"shape ({size},)" if size else "one dimension (one weight per class)"
            raise ValueError(f"{name} must have {want}, got shape {w.shape}")
        if not np.all(np.isfinite(w) & (w >= 0)):
            raise ValueError(f"{name} must hold finite weights >= 0")
        return w

    def reference_params(self):
        """The keyword arguments of the NumPy twin (fastloss.reference._gbdt.grad_hess)."""
        kw = {"min_hessian": self.min_hessian, "bce_bound": self.bce_bound}
        if self.loss == "logloss":
            kw.update(w_pos=self.p1, w_neg=self.p2)
        elif self.loss == "focal":
            kw.update(alpha=self.p1, gamma=self.p2)
        elif self.loss in _SOFTMAX:
            kw.update(hessian_factor=self.hessian_factor, class_weight=self.class_weight)
            if self.loss == "softmax_focal":
                kw["gamma"] = self.p2
        elif self.loss in ("huber", "pseudo_huber"):
            kw["delta"] = self.p1
        elif self.loss == "gaussian":
            kw["var"] = 1.0 / self.p1
        if self.loss not in _FOCAL:
            kw.pop("bce_bound")
        return kw

    # ---- one call
    def run(self, scores, labels, sample_weight=None, grad_out=None, hess_out=None, scale=1.0):
        x, y, w, K, x_cm = self._inputs(scores, labels, sample_weight)
        g = self._out(grad_out, "grad_out", x, x_cm)
        h = self._out(hess_out, "hess_out", x, x_cm)
        if g.dtype != h.dtype or g.flags.c_contiguous != h.flags.c_contiguous:
            raise ValueError("grad_out and hess_out must have the same dtype and memory order")
        V.check_no_overlap(h, "hess_out", ("grad_out", g))
        for buf, name in ((g, "grad_out"), (h, "hess_out")):
            V.check_no_overlap(buf, name, ("scores", x), ("labels", y), ("sample_weight", w))
        out_cm = x.ndim == 2 and not g.flags.c_contiguous
        if _config.get_backend() == "reference" or _config._kernels is None:
            kw = self.reference_params()
            gr, hr = _ref.grad_hess(self.loss, x, y, sample_weight=w, scale=scale, **kw)
            self._check_labels(y, K)
            g[...] = gr.reshape(g.shape)
            h[...] = hr.reshape(h.shape)
            return g, h
        cw = None if self.class_weight is None else self.class_weight.astype(x.dtype)
        if cw is not None and cw.shape[0] != K:
            raise ValueError(f"class_weight has {cw.shape[0]} weights, but the scores {K} classes")
        hmin = -math.inf if self.min_hessian is None else self.min_hessian
        ok = _config._kernels.gbdt(
            self.op,
            x,
            y,
            w,
            cw,
            K,
            x_cm,
            self.p1,
            self.p2,
            self.hessian_factor,
            hmin,
            scale,
            self.bce_bound,
            g,
            h,
            out_cm,
            _config.get_num_threads(),
        )
        if not ok:
            self._check_labels(y, K)
        return g, h

    def _inputs(self, scores, labels, sample_weight):
        x = V.as_array(scores, "scores")
        dt = V.working_dtype(x.dtype, "scores")
        x_cm = False
        if self.loss in _SOFTMAX:
            if x.ndim != 2 or x.shape[1] < 2:
                raise ValueError(
                    f"scores of {self.loss!r} must have shape (n_samples, n_classes >= 2), "
                    f"got shape {x.shape}"
                )
            if x.shape[1] >= 1 << 22:  # the kernels' label check is exact below 2^22
                raise ValueError(f"scores have {x.shape[1]} classes: at most {(1 << 22) - 1}")
            x_cm = not x.flags.c_contiguous and x.flags.f_contiguous
            if x.dtype is not dt or not (x.flags.c_contiguous or x.flags.f_contiguous):
                x = np.array(x, dtype=dt, order="F" if x_cm else "C")
            n, K = x.shape
        else:
            if x.ndim == 2 and x.shape[1] == 1:
                x = x[:, 0]
            if x.ndim != 1:
                raise ValueError(
                    f"scores of {self.loss!r} must have shape (n_samples,), got shape {x.shape}"
                )
            x = V.kernel_ready(x, dt)
            n, K = x.shape[0], 1
        y = V.as_array(labels, "labels")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (n,):
            raise ValueError(f"labels must have shape ({n},) (one per row), got shape {y.shape}")
        y = V.kernel_ready(y, dt)
        w = None
        if sample_weight is not None:
            w = V.as_array(sample_weight, "sample_weight")
            if w.size == 0 and n != 0:  # XGBoost / LightGBM: no weights
                w = None
            else:
                if w.shape != (n,):
                    raise ValueError(
                        f"sample_weight must have shape ({n},) (one per row), got shape {w.shape}"
                    )
                w = V.kernel_ready(w, dt)
        return x, y, w, K, x_cm

    @staticmethod
    def _out(buf, name, x, x_cm):
        if buf is None:
            if x_cm:
                return np.empty(x.shape, dtype=x.dtype, order="F")
            return V.empty(x.shape, x.dtype)
        if not isinstance(buf, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array, got {type(buf).__name__}")
        if buf.shape != x.shape and not (x.ndim == 1 and buf.shape in ((x.shape[0], 1),)):
            raise ValueError(f"{name} must have shape {x.shape}, got shape {buf.shape}")
        ok_dtype = buf.dtype == x.dtype or (x.dtype == _F64 and buf.dtype == _F32)
        if not ok_dtype or not buf.dtype.isnative:
            raise TypeError(
                f"{name} must be {x.dtype}"
                + (" or float32" if x.dtype == _F64 else "")
                + f" (native byte order), got {buf.dtype}"
            )
        if not buf.flags.writeable:
            raise ValueError(f"{name} is read-only")
        if not (buf.flags.c_contiguous or (x.ndim == 2 and buf.flags.f_contiguous)):
            raise ValueError(f"{name} must be contiguous (C order, or F order for (n, K))")
        return buf

    def _check_labels(self, y, K):
        if self.loss in _SOFTMAX:
            bad = ~((y >= 0) & (y < K) & (np.floor(y) == y))
            what = f"class indices (integers in [0, {K}))"
        elif self.loss == "focal":
            bad = ~((y == 0) | (y == 1))
            what = "0 or 1"
        else:
            return
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"labels of {self.loss!r} must be {what}, got {float(y[i])!r} at row {i}"
            )

    def row_loss(self, scores, labels):
        """Per-row loss values (float64), without weights (the metrics)."""
        z = np.asarray(scores, np.float64)
        if self.loss in _SOFTMAX and z.ndim != 2:
            z = z.reshape(len(labels), -1)
        elif self.loss not in _SOFTMAX:
            z = z.reshape(-1)
        y = np.asarray(labels, np.float64).reshape(-1)
        kw = {
            "logloss": lambda: {"w_pos": self.p1, "w_neg": self.p2},
            "focal": lambda: {"alpha": self.p1, "gamma": self.p2},
            "softmax_focal": lambda: {"gamma": self.p2},
            "huber": lambda: {"delta": self.p1},
            "pseudo_huber": lambda: {"delta": self.p1},
            "gaussian": lambda: {"var": 1.0 / self.p1},
        }.get(self.loss, dict)()
        values = _ref.loss(self.loss, z, y, **kw)
        if self.class_weight is not None:
            values = values * self.class_weight[y.astype(np.int64)]
        return values


def grad_hess(loss, scores, labels, *, sample_weight=None, grad_out=None, hess_out=None, **params):
    """Gradient and diagonal Hessian of `loss` with respect to the raw scores, per row.

    scores: ``(n,)`` (``(n, K)`` for ``softmax`` / ``softmax_focal``: row-major, or F-order
    / class-major as LightGBM and scikit-learn keep them); labels ``(n,)`` (class indices as
    numbers for the softmax losses, 0/1 for ``focal``); sample_weight ``(n,)`` or None.
    grad_out / hess_out: preallocated outputs of the scores' shape and dtype (float32 also for
    float64 scores; for ``(n, K)`` their memory order decides the layout written), else new
    arrays in the scores' order.  Options: see the module docstring.  Returns (grad, hess)."""
    return _Plan(loss, params).run(scores, labels, sample_weight, grad_out, hess_out)


# --------------------------------------------------------------------------- library adapters
class _Buffers:
    """Output buffers reused from one boosting round to the next, and labels / weights
    converted once per training set (keyed by the identity of the library's own array)."""

    def __init__(self):
        self.out = {}
        self.conv = {}

    def get(self, shape, dtype, order):
        key = (shape, np.dtype(dtype).str, order)
        pair = self.out.get(key)
        if pair is None:
            self.out.clear()
            pair = self.out[key] = (
                np.empty(shape, dtype=dtype, order=order),
                np.empty(shape, dtype=dtype, order=order),
            )
        return pair

    def converted(self, a, dtype):
        if a is None:
            return None
        if isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous:
            return a
        hit = self.conv.get(id(a))
        if hit is not None and hit[0] is a:
            return hit[1]
        conv = np.ascontiguousarray(a, dtype=dtype)
        if isinstance(a, np.ndarray):
            if len(self.conv) > 4:
                self.conv.clear()
            self.conv[id(a)] = (a, conv)
        return conv


class _Objective:
    def __init__(self, loss, library, params):
        self.loss, self.library = loss, library
        self._params = dict(params)
        self._plans = {}
        self._bufs = _Buffers()
        self._plan(None)  # validate the options now

    def _plan(self, K):
        """The plan for K classes (the library's default Hessian factor when not given)."""
        plan = self._plans.get(K)
        if plan is None:
            params = dict(self._params)
            if self.loss in _SOFTMAX and K is not None and "hessian_factor" not in params:
                params["hessian_factor"] = {
                    "xgboost": 2.0,
                    "lightgbm": K / (K - 1.0),
                }.get(self.library, 1.0)
            plan = self._plans[K] = _Plan(self.loss, params)
        return plan

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        opts = ", " + opts if opts else ""
        return f"fastloss.gbdt.objective({self.loss!r}, library={self.library!r}{opts})"

    def _run(self, scores, labels, weight, out_dtype, scale=1.0):
        x = np.asarray(scores)
        K = x.shape[1] if self.loss in _SOFTMAX and x.ndim == 2 else None
        if self.loss in _SOFTMAX and x.ndim == 1:  # flattened (n * K,) row-major scores
            n = np.asarray(labels).shape[0]
            if n == 0 or x.size % n:
                raise ValueError(f"{x.size} scores do not split into rows of {n} labels")
            x = x.reshape(n, -1)
            K = x.shape[1]
        plan = self._plan(K)
        dt = V.working_dtype(x.dtype, "scores")
        out_dt = out_dtype or dt
        order = "F" if x.ndim == 2 and not x.flags.c_contiguous and x.flags.f_contiguous else "C"
        shape = x.shape if (self.loss in _SOFTMAX or x.ndim == 1) else (x.shape[0],)
        g, h = self._bufs.get(shape, out_dt, order)
        y = self._bufs.converted(labels, dt)
        w = self._bufs.converted(weight, dt)
        return plan.run(x, y, w, g, h, scale=scale)


class _XGBoostObjective(_Objective):
    """XGBoost's native ``obj(predt, dtrain)`` (``xgb.train(..., obj=f)``) and its
    scikit-learn ``objective(y_true, y_pred, *, sample_weight=None)`` in one callable: a
    DMatrix as second argument means the native form.  Returns float32 (grad, hess) shaped
    like the predictions ((n, K) for multi-class; the arrays are reused between calls)."""

    def __call__(self, a, b, *, sample_weight=None):
        if hasattr(b, "get_label"):  # native: (predt, dtrain)
            predt, y = a, b.get_label()
            w = b.get_weight()
        else:  # scikit-learn: (y_true, y_pred)
            y, predt, w = a, b, sample_weight
        return self._run(predt, y, w, None)


class _LightGBMObjective(_Objective):
    """LightGBM's native ``params["objective"] = f`` (``f(preds, train_data)``) and its
    scikit-learn ``objective=f`` (called as ``f(y_true, y_pred, weight)``: three parameters)
    in one callable.  Returns float32 (grad, hess) in the predictions' layout: (n, K) in
    F order for multi-class, which LightGBM ravels without a copy (arrays reused)."""

    def __call__(self, a, b, weight=None):
        if hasattr(b, "get_label"):  # native: (preds, train_data)
            preds, y = a, b.get_label()
            w = b.get_weight()
        else:
            y, preds, w = a, b, weight
        return self._run(preds, y, w, _F32)


class _CatBoostObjective(_Objective):
    """A CatBoost ``loss_function`` object for the single-dimension losses:
    ``calc_ders_range`` returns an (n, 2) array of the derivatives of the quantity CatBoost
    maximises, i.e. (-grad, -hess) of the loss, weighted."""

    def calc_ders_range(self, approxes, targets, weights):
        x = np.asarray(approxes, dtype=np.float64)
        g, h = self._plan(None).run(x, np.asarray(targets, np.float64), weights, scale=-1.0)
        return np.stack([g, h], axis=1)


class _CatBoostMultiObjective(_Objective):
    """A CatBoost ``loss_function`` object for the softmax losses (CatBoost calls
    ``calc_ders_multi`` once per object): (-grad, -Hessian matrix), weighted; the full
    softmax Hessian diag(p) - p p^T for ``softmax``, the diagonal Hessian for
    ``softmax_focal``."""

    def calc_ders_multi(self, approx, target, weight):
        z = np.asarray(approx, dtype=np.float64)
        plan = self._plan(z.shape[0])
        w = 1.0 if weight is None else float(weight)
        if self.loss == "softmax":
            p = np.exp(z - z.max())
            p /= p.sum()
            cw = 1.0 if plan.class_weight is None else plan.class_weight[int(target)]
            g = p.copy()
            g[int(target)] -= 1.0
            s = w * cw
            hess = (np.diag(p) - np.outer(p, p)) * (s * plan.hessian_factor)
            return list(-s * g), [list(r) for r in -hess]
        g, h = plan.run(z[None, :], np.array([float(target)]), None, scale=-w)
        return list(g[0]), [list(r) for r in np.diag(h[0])]


def _sklearn_loss(loss, params, n_classes):
    """A scikit-learn ``BaseLoss`` (private API: ``sklearn._loss``) whose gradient_hessian
    runs fastloss's kernel, for ``HistGradientBoosting*(loss=...)``: the link, the baseline
    (intercept) and predict_proba are those of the scikit-learn loss of the same family."""
    from sklearn._loss import loss as sk  # private API

    base = {
        "logloss": sk.HalfBinomialLoss,
        "focal": sk.HalfBinomialLoss,
        "softmax": sk.HalfMultinomialLoss,
        "softmax_focal": sk.HalfMultinomialLoss,
        "huber": sk.HalfSquaredError,
        "pseudo_huber": sk.HalfSquaredError,
        "poisson": sk.HalfPoissonLoss,
        "gaussian": sk.HalfSquaredError,
    }[loss]
    obj = _Objective(loss, "sklearn", params)

    class FastlossLoss(base):
        __doc__ = (
            f"fastloss {loss!r} for scikit-learn's HistGradientBoosting (relies on the private "
            "sklearn._loss API, which may change between scikit-learn versions)."
        )

        def __init__(self):
            if base is sk.HalfMultinomialLoss:
                if n_classes is None:
                    raise ValueError(f"{loss!r} for scikit-learn needs n_classes=")
                super().__init__(n_classes=n_classes)
            else:
                super().__init__()
            self.constant_hessian = False
            self.fastloss_objective = obj

        def gradient_hessian(
            self,
            y_true,
            raw_prediction,
            sample_weight=None,
            gradient_out=None,
            hessian_out=None,
            n_threads=1,
        ):
            raw = raw_prediction
            if raw.ndim == 2 and raw.shape[1] == 1:
                raw = raw.squeeze(1)
            if gradient_out is not None and gradient_out.ndim == 2 and raw.ndim == 1:
                gradient_out = gradient_out.squeeze(1)
                hessian_out = hessian_out.squeeze(1)
            K = raw.shape[1] if raw.ndim == 2 else None
            y = obj._bufs.converted(y_true, V.working_dtype(raw.dtype, "raw_prediction"))
            return obj._plan(K).run(raw, y, sample_weight, gradient_out, hessian_out)

        def gradient(
            self, y_true, raw_prediction, sample_weight=None, gradient_out=None, n_threads=1
        ):
            g, _ = self.gradient_hessian(y_true, raw_prediction, sample_weight)
            if gradient_out is None:
                return g
            gradient_out[...] = g.reshape(gradient_out.shape)
            return gradient_out

    FastlossLoss.__name__ = FastlossLoss.__qualname__ = "Fastloss" + "".join(
        part.title() for part in loss.split("_")
    )
    return FastlossLoss()


def objective(loss, library="xgboost", **params):
    """The custom objective `library` wants for `loss` (options: see the module docstring).

    - ``"xgboost"``: one callable for ``xgb.train(params, dtrain, obj=f)`` (``f(predt,
      dtrain)``) and ``XGBClassifier/XGBRegressor(objective=f)`` (``f(y_true, y_pred, *,
      sample_weight=None)``); multi-class: (n, K) gradients, Hessian factor 2 (XGBoost's).
    - ``"lightgbm"``: one callable for ``params["objective"] = f`` in ``lgb.train`` and
      ``LGBMClassifier/LGBMRegressor(objective=f)``; float32 outputs, (n, K) in F order for
      multi-class, Hessian factor K / (K - 1) (LightGBM's).
    - ``"catboost"``: an object for ``CatBoost*(loss_function=obj)`` (derivatives of the
      maximised quantity: the negated gradient and Hessian).
    - ``"sklearn"``: a ``BaseLoss`` for ``HistGradientBoosting*(loss=obj)``, relying on
      scikit-learn's private ``sklearn._loss`` API; pass ``n_classes=`` for the softmax
      losses.

    The library computes no base score for a custom objective: start from the same margin
    (XGBoost ``base_score``, LightGBM ``boost_from_average=False`` / ``init_score``) when
    comparing with a built-in objective."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")
    if library == "sklearn":
        params = dict(params)
        n_classes = params.pop("n_classes", None)
        return _sklearn_loss(loss, params, n_classes)
    cls = {
        "xgboost": _XGBoostObjective,
        "lightgbm": _LightGBMObjective,
        "catboost": _CatBoostMultiObjective if loss in _SOFTMAX else _CatBoostObjective,
    }[library]
    return cls(loss, library, params)


# --------------------------------------------------------------------------- metrics
class _Metric:
    def __init__(self, loss, library, params):
        params = {k: v for k, v in params.items() if k not in ("hessian", "min_hessian")}
        params.pop("hessian_factor", None)
        self.loss, self.library = loss, library
        self.plan = _Plan(loss, params)
        self.name = f"fastloss-{loss}"

    def value(self, scores, labels, weight=None):
        """Weighted mean of the per-row loss computed from the raw scores."""
        values = self.plan.row_loss(scores, labels)
        if weight is None or np.size(weight) == 0:
            return float(np.mean(values))
        w = np.asarray(weight, np.float64).reshape(-1)
        return float(np.sum(values * w) / np.sum(w))


class _XGBoostMetric(_Metric):
    """``custom_metric=f`` of ``xgb.train`` (``f(predt, dmatrix) -> (name, value)``) and
    ``eval_metric=f`` of the scikit-learn estimators (``f(y_true, y_pred) -> value``)."""

    def __call__(self, a, b):
        if hasattr(b, "get_label"):
            return self.name, self.value(a, b.get_label(), b.get_weight())
        return self.value(b, a)


class _LightGBMMetric(_Metric):
    """``feval=f`` of ``lgb.train`` (``f(preds, data) -> (name, value, False)``) and
    ``eval_metric=f`` of the scikit-learn estimators (``f(y_true, y_pred, weight)``)."""

    def __call__(self, a, b, weight=None):
        if hasattr(b, "get_label"):
            return self.name, self.value(a, b.get_label(), b.get_weight()), False
        return self.name, self.value(b, a, weight), False


class _CatBoostMetric(_Metric):
    """A CatBoost ``eval_metric`` object (``evaluate`` returns (weighted sum, weight sum))."""

    def is_max_optimal(self):
        return False

    def evaluate(self, approxes, target, weight):
        z = np.asarray([np.asarray(a, np.float64) for a in approxes])
        z = z[0] if z.shape[0] == 1 else z.T
        values = self.plan.row_loss(z, np.asarray(target, np.float64))
        w = np.ones(len(values)) if weight is None else np.asarray(weight, np.float64)
        return float(np.sum(values * w)), float(np.sum(w))

    def get_final_error(self, error, weight):
        return error / weight if weight else 0.0


class _SklearnMetric(_Metric):
    """A scorer for scikit-learn (``scoring=f``): ``f(estimator, X, y)`` = minus the mean
    loss of ``estimator.decision_function(X)`` (or ``predict`` for regressors: the link's
    inverse is applied back for the log link)."""

    def __call__(self, estimator, X, y, sample_weight=None):
        if hasattr(estimator, "decision_function"):
            raw = estimator.decision_function(X)
        else:
            raw = estimator.predict(X)
            if self.loss == "poisson":
                raw = np.log(raw)
        if self.loss in _SOFTMAX and hasattr(estimator, "classes_"):
            y = np.searchsorted(estimator.classes_, y)
        return -self.value(raw, y, sample_weight)


def metric(loss, library="xgboost", **params):
    """The evaluation callable of `library` for `loss`: the loss itself, computed from the
    raw scores (margins) through the loss's link, weighted by the sample weights (lower is
    better).  Takes the objective's options (the Hessian options are ignored)."""
    if library not in LIBRARIES:
        raise ValueError(f"library must be one of {LIBRARIES}, got {library!r}")
    cls = {
        "xgboost": _XGBoostMetric,
        "lightgbm": _LightGBMMetric,
        "catboost": _CatBoostMetric,
        "sklearn": _SklearnMetric,
    }[library]
    return cls(loss, library, params)
