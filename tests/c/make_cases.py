"""Writes the kernel cases of tests/c/kernel_check.c: inputs and expected outputs, the
expected ones from fastloss's NumPy reference (the "reference" backend of the public API).

Each case calls one public function on the compiled kernels (the host's build) with the
Cython module behind fastloss._config._kernels replaced by a recorder, which keeps the exact
arguments of the kernel call (arrays as they were before the call, scalars, op codes).  The
same public call on the reference backend gives the expected results: an output buffer of
the kernel call (gradient, per-sample losses, softmax output, CTC nll, GBDT grad / hess, ranks)
is checked when the public result returns that very buffer, and the kernel's returned sum when
the public "sum" result is that sum.  The generator checks the host kernels against the same
expectations (a mapping bug shows here, not as an aarch64 failure).

Usage: python tests/c/make_cases.py OUT.bin   (run from the repository root, fastloss built)
"""

import struct
import sys

import numpy as np

import fastloss
import fastloss.gbdt as gbdt
from fastloss import _config, _losses

# the argument names of the Cython calls (src/_kernels.pyx), in order
SIGNATURES = {
    "class_loss": "kind x N C S target target_prob weight ignore_index smoothing gamma "
    "reduction grad_output grad loss_rows nthreads ranks",
    "softmax": "x N C S out op nthreads",
    "elementwise": "op x target weight weight_period pos_weight pos_weight_period p1 p2 grad "
    "grad_scale_rows grad_scale loss_rows nthreads grad2",
    "embedding": "op a b c target N D p1 p2 p3 flags grad_a grad_b grad_c grad_scale_rows "
    "grad_scale loss_rows nthreads target_idx weight",
    "ctc": "x targets target_offsets target_lengths input_lengths blank from_logits "
    "zero_infinity accumulate_f64 nll grad grad_scale nthreads",
    "row_op": "op x N C S target ignore_index top_k ties count_hits sample_weight rank_out "
    "inv_log_base grad grad_output out_rows nthreads",
    "gbdt": "op x y weight class_weight K x_class_major p1 p2 hess_factor hess_min scale "
    "bce_bound grad hess out_class_major nthreads",
}
SIGNATURES = {k: v.split() for k, v in SIGNATURES.items()}
# (rtol, atol relative to the largest finite |expected|), as tests/_helpers.py's TOL
TOL = {np.dtype(np.float32): (2e-4, 1e-6), np.dtype(np.float64): (1e-9, 1e-12)}
DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.int64): 2}


class Recorder:
    """Stands in for fastloss._kernels: records the calls of SIGNATURES, forwards the rest."""

    def __init__(self, real):
        self._real = real
        self.calls = []

    def __getattr__(self, name):
        attr = getattr(self._real, name)
        if name not in SIGNATURES:
            return attr

        def record(*args, **kw):
            bound = dict(zip(SIGNATURES[name], args))
            bound.update(kw)
            before = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in bound.items()}
            ret = attr(*args, **kw)
            self.calls.append((name, bound, before, ret))
            return ret

        return record


def arrays_of(result):
    """The ndarrays of a public result (tuples, dicts and named tuples flattened)."""
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, dict):
        return [a for k in sorted(result) for a in arrays_of(result[k])]
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in arrays_of(r)]
    return []


def scalar_of(result):
    if isinstance(result, (tuple, list)):
        result = result[0]
    if isinstance(result, np.ndarray) and result.ndim == 0 or np.isscalar(result):
        return float(result)
    return None


def close(act, exp, dtype, rtol, atol):
    act, exp = np.asarray(act, np.float64), np.asarray(exp, np.float64)
    fin = np.isfinite(exp)
    scale = float(np.abs(exp[fin]).max()) if fin.any() and np.abs(exp[fin]).max() > 0 else 1.0
    a = atol * scale + float(np.finfo(dtype).tiny)
    with np.errstate(all="ignore"):
        return bool(
            np.array_equal(fin, np.isfinite(act))
            and np.array_equal(np.isnan(exp), np.isnan(act))
            and np.array_equal(exp[~fin & ~np.isnan(exp)], act[~fin & ~np.isnan(act)])
            and np.all(np.abs(act[fin] - exp[fin]) <= a + rtol * np.abs(exp[fin]))
        )


class Writer:
    def __init__(self):
        self.records = []
        self.skipped = []

    def add(self, label, fn, *args, **kw):
        """Record fn(*args, **kw) on the compiled kernels and its reference result."""
        rec = Recorder(_config._kernels)
        real = _config._kernels
        _config._kernels = rec
        try:
            with fastloss.use_backend("compiled"):
                got = fn(*args, **kw)
        finally:
            _config._kernels = real
        with fastloss.use_backend("reference"), np.errstate(all="ignore"):
            want = fn(*args, **kw)
        if len(rec.calls) != 1:
            raise RuntimeError(f"{label}: {len(rec.calls)} kernel calls")
        family, bound, before, ret = rec.calls[0]
        got_arrays, want_arrays = arrays_of(got), arrays_of(want)
        fields, checked = [], []
        alias_of = {}
        for name, value in bound.items():
            if not isinstance(value, np.ndarray):
                continue
            for other, ov in bound.items():
                if other != name and isinstance(ov, np.ndarray) and ov is value:
                    alias_of.setdefault(name, other)
        dtype = None
        for name in SIGNATURES[family]:
            if name not in bound:
                continue
            value = bound[name]
            if name == "x" or (name == "a" and family == "embedding"):
                dtype = value.dtype
            if isinstance(value, np.ndarray):
                expected = None
                for g, w in zip(got_arrays, want_arrays):
                    if (
                        np.shares_memory(g, value)
                        and g.size == value.size
                        and np.array_equal(g.ravel(), value.ravel(), equal_nan=True)
                    ):
                        expected = np.asarray(w).ravel()
                        break
                fields.append((name, before[name], expected, alias_of.get(name)))
                if expected is not None:
                    checked.append(name)
            elif value is None:
                fields.append((name, None, None, None))
            elif isinstance(value, str):  # never: op names arrive as codes
                raise TypeError(name)
            else:
                fields.append((name, value, None, None))
        if family == "ctc":  # the pyx layer reads (T, N, C) from x's shape
            fields += [(k, v, None, None) for k, v in zip("TNC", bound["x"].shape)]
        total = None
        raw = ret[0] if isinstance(ret, tuple) else ret
        g_total, w_total = scalar_of(got), scalar_of(want)
        if family != "gbdt" and g_total is not None and raw is not None:
            if float(np.asarray(raw, dtype)) == float(np.asarray(g_total, dtype)):
                total = w_total
        rtol, atol = TOL[np.dtype(dtype)]
        # the host's kernels against the expectations
        for name, _, expected, _ in fields:
            if expected is not None:
                host = bound[name].ravel()
                if expected.dtype.kind == "f" and not close(host, expected, dtype, rtol, atol):
                    raise AssertionError(f"{label}: host {name} differs from the reference")
                if expected.dtype.kind != "f" and not np.array_equal(host, expected):
                    raise AssertionError(f"{label}: host {name} differs from the reference")
        if total is not None and not close(raw, total, dtype, rtol, atol):
            raise AssertionError(f"{label}: host sum {raw} vs reference {total}")
        if not checked and total is None:
            self.skipped.append(label)
            return
        self.records.append((family, f"{label} {np.dtype(dtype).name}", fields, total, rtol, atol))

    def write(self, path):
        out = [b"FLCASES1", struct.pack("<I", len(self.records))]

        def s(text):
            b = text.encode()
            return struct.pack("<I", len(b)) + b

        for family, label, fields, total, rtol, atol in self.records:
            out += [s(family), s(label), struct.pack("<Idd", len(fields), rtol, atol)]
            out.append(struct.pack("<Bd", total is not None, np.nan if total is None else total))
            for name, value, expected, alias in fields:
                out.append(s(name))
                if value is None:
                    out.append(struct.pack("<B", 3))
                elif isinstance(value, np.ndarray):
                    a = np.ascontiguousarray(value)
                    if a.dtype == np.int32 or a.dtype == np.bool_:
                        a = a.astype(np.int64)
                    out.append(struct.pack("<BBq", 2, DTYPES[a.dtype], a.size))
                    out.append(s(alias or ""))
                    out.append(a.tobytes())
                    out.append(struct.pack("<B", expected is not None))
                    if expected is not None:
                        e = expected.astype(np.int64 if a.dtype == np.int64 else np.float64)
                        out.append(e.tobytes())
                elif isinstance(value, (bool, int, np.integer)):
                    out.append(struct.pack("<Bq", 0, int(value)))
                else:
                    out.append(struct.pack("<Bd", 1, float(value)))
        with open(path, "wb") as f:
            f.write(b"".join(out))


def vector_math_cases(w):
    """exp / log / log1p over wide ranges against the host's float64 libm (NumPy), with the
    bounds of docs/numerics.md ("Vector math"): exp, log <= 2 ulp, log1p <= 3 ulp."""
    codes = _config._kernels.VECTOR_MATH_OPS
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        fi = np.finfo(dtype)
        special = [np.inf, -np.inf, np.nan, 0.0, -0.0, fi.max, -fi.max, fi.tiny, -fi.tiny]
        special += [fi.smallest_subnormal, -fi.smallest_subnormal, 1e4, -1e4, 1.0, -1.0]
        if dtype == np.float32:
            bits = rng.integers(0, 2**32, 6000, dtype=np.uint64).astype(np.uint32).view(dtype)
            lim = (-110.0, 100.0)
        else:
            bits = rng.integers(-(2**63), 2**63 - 1, 6000, dtype=np.int64).view(dtype)
            lim = (-760.0, 720.0)
        bits = bits[np.isfinite(bits)]
        sub = fi.smallest_subnormal * rng.integers(1, 2**20, 200)  # subnormal arguments
        wide = np.concatenate(
            [np.clip(bits, *lim), rng.uniform(*lim, 4000), np.linspace(-1, 1, 801)]
        )
        # results in the subnormal range, and overflow
        edge = np.concatenate(
            [np.linspace(lim[0], lim[0] + 20, 400), np.linspace(lim[1] - 30, lim[1], 200)]
        )
        pos = np.concatenate(
            [
                np.abs(bits),
                sub,
                rng.uniform(0, 1, 2000),
                1 + rng.uniform(-0.05, 0.05, 2000),
                1 + np.logspace(-8, -1, 200),
                1 - np.logspace(-8, -1, 200),
            ]
        )
        cases = {
            "exp": (np.concatenate([wide, edge, sub, -sub, special]), np.exp, 2.0),
            "log": (np.concatenate([pos, special]), np.log, 2.0),
            "log1p": (
                np.concatenate(
                    [pos, rng.uniform(-1, 1, 2000), -np.logspace(-30, -1e-7, 200), special]
                ),
                np.log1p,
                3.0,
            ),
            "log1p_unit": (
                np.concatenate(
                    [
                        rng.uniform(0, 1, 2000),
                        np.logspace(-40 if dtype == np.float32 else -300, 0, 400),
                        [0.0, 1.0],
                    ]
                ),
                np.log1p,
                3.0,
            ),
            "log1p_nonneg": (
                np.concatenate(
                    [
                        rng.uniform(0, 1e6, 2000),
                        np.logspace(-40 if dtype == np.float32 else -300, 9, 400),
                        [0.0, 1.0, 3.0],
                    ]
                ),
                np.log1p,
                3.0,
            ),
        }
        for name, (x, fn, bound) in cases.items():
            x = np.asarray(x).astype(dtype)
            with np.errstate(all="ignore"):
                want = fn(x.astype(np.float64))
            fields = [
                ("op", codes[name], None, None),
                ("x", x, None, None),
                ("want", want, None, None),
                ("bound", bound, None, None),
            ]
            w.records.append(
                ("vector_math", f"{name} {np.dtype(dtype).name}", fields, None, 0.0, 0.0)
            )


def class_cases(w):
    rng = np.random.default_rng(1)
    # tiles: 1, 2 and 3 blocks of transposed classes per lane count (4 / 2 lanes on NEON),
    # whole and partial tiles
    layouts = {
        "tiles": (13, 5, ()),
        "tiles C=3": (11, 3, ()),
        "tiles C=10": (21, 10, ()),
        "rows": (6, 67, ()),
        "cols": (3, 4, (2, 5)),
    }
    for dtype in (np.float32, np.float64):
        for lname, (N, C, sp) in layouts.items():
            x = (rng.standard_normal((N, C) + sp) * 3).astype(dtype)
            t = rng.integers(0, C, (N,) + sp)
            ti = t.copy()
            ti.flat[::4] = -100
            wt = rng.uniform(0.5, 2.0, C).astype(dtype)
            prob = rng.uniform(0, 1, x.shape)
            prob = (prob / prob.sum(axis=1, keepdims=True)).astype(dtype)
            logp = np.log(fastloss.softmax(x.astype(np.float64), axis=1)).astype(dtype)
            for red in ("none", "sum"):
                rg = dict(reduction=red, return_grad=True)
                tag = f"{lname} {red}"
                w.add(f"cross_entropy {tag}", fastloss.cross_entropy, x, t, **rg)
                w.add(
                    f"cross_entropy weight+ignore {tag}",
                    fastloss.cross_entropy,
                    x,
                    ti,
                    weight=wt,
                    **rg,
                )
                w.add(
                    f"cross_entropy smoothing {tag}",
                    fastloss.cross_entropy,
                    x,
                    ti,
                    weight=wt,
                    label_smoothing=0.1,
                    **rg,
                )
                w.add(f"cross_entropy prob {tag}", fastloss.cross_entropy, x, prob, **rg)
                w.add(
                    f"cross_entropy prob+smoothing {tag}",
                    fastloss.cross_entropy,
                    x,
                    prob,
                    weight=wt,
                    label_smoothing=0.2,
                    **rg,
                )
                w.add(f"focal_loss {tag}", fastloss.focal_loss, x, ti, gamma=2.0, **rg)
                w.add(
                    f"focal_loss gamma=0.5 weight {tag}",
                    fastloss.focal_loss,
                    x,
                    t,
                    gamma=0.5,
                    weight=wt,
                    **rg,
                )
                w.add(f"nll_loss {tag}", fastloss.nll_loss, logp, ti, weight=wt, **rg)
            w.add(f"cross_entropy loss only {lname}", fastloss.cross_entropy, x, t, reduction="sum")
            w.add(
                f"cross_entropy loss rows only {lname}",
                fastloss.cross_entropy,
                x,
                ti,
                reduction="none",
            )
            for name in ("log_softmax", "softmax", "logsumexp"):
                w.add(f"{name} {lname}", getattr(fastloss, name), x, axis=1)
            for name in ("error_rate", "accuracy"):
                for opts in ({}, {"top_k": 3, "ties": "sklearn"}, {"ties": "pessimistic"}):
                    w.add(
                        f"{name} {opts} {lname}",
                        getattr(fastloss, name),
                        x,
                        ti,
                        axis=1,
                        reduction="none",
                        **opts,
                    )
            w.add(f"entropy {lname}", fastloss.entropy, x, axis=1, return_grad=True)
            w.add(
                f"entropy base 2 {lname}",
                fastloss.entropy,
                x,
                axis=1,
                base=2.0,
                reduction="sum",
                return_grad=True,
            )
    # several chunks (FL_CHUNK_ELEMS = 32768 elements, 2 * FL_THREAD_CHUNKS per thread): the
    # driver also compares one thread with OMP_NUM_THREADS
    x = (rng.standard_normal((4000, 70)) * 3).astype(np.float32)
    t = rng.integers(0, 70, 4000)
    w.add(
        "cross_entropy threads rows",
        fastloss.cross_entropy,
        x,
        t,
        reduction="none",
        return_grad=True,
    )
    w.add(
        "mse_loss threads", fastloss.mse_loss, x, x[::-1].copy(), reduction="none", return_grad=True
    )


def elementwise_cases(w):
    from _helpers import draw_elementwise, materialise, option_cases, registry

    shape = (3, 11)
    for dtype in (np.float32, np.float64):
        for spec in registry("elementwise", "pair"):
            for i, opts in enumerate(option_cases(spec)):
                kw = materialise(opts, shape, dtype)
                if spec.family == "pair":
                    rng = np.random.default_rng(i)
                    a = (rng.standard_normal(shape) * 2).astype(dtype)
                    b = (rng.standard_normal(shape) * 2).astype(dtype)
                    if spec.name == "margin_ranking_loss":
                        args = (a, b, np.sign(rng.standard_normal(shape)).astype(dtype))
                    else:
                        args = (a, b, rng.uniform(0.1, 2.0, shape).astype(dtype))
                else:
                    args = draw_elementwise(spec.name, shape, dtype, seed=i, options=opts)
                fn = getattr(fastloss, spec.name)
                for red in ("none", "sum"):
                    w.add(
                        f"{spec.name} {opts} {red}",
                        fn,
                        *args,
                        reduction=red,
                        return_grad=True,
                        **kw,
                    )


def row_cases(w):
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        N, D = 5, 13
        a, b, c = (rng.standard_normal((3, N, D)) * 2).astype(dtype)
        y = np.sign(rng.standard_normal(N)).astype(dtype)
        for spec in _losses.losses("embedding"):
            fn = getattr(fastloss, spec.name)
            for opts in [{}] + [dict(e) for e in spec.examples]:
                args = (a, b, y) if spec.name == "cosine_embedding_loss" else (a, b, c)
                for red in ("none", "sum"):
                    try:
                        w.add(
                            f"{spec.name} {opts} {red}",
                            fn,
                            *args,
                            reduction=red,
                            return_grad=True,
                            **opts,
                        )
                    except RuntimeError as e:  # computed by the reference (no kernel call)
                        w.skipped.append(str(e))
        C = 7
        x = (rng.standard_normal((N, C)) * 2).astype(dtype)
        t = rng.integers(0, C, N)
        wc = rng.uniform(0.5, 2.0, C).astype(dtype)
        ml = np.full((N, C), -1)
        for n in range(N):
            k = rng.integers(1, 4)
            ml[n, :k] = rng.choice(C, k, replace=False)
        soft = (rng.uniform(0, 1, (N, C)) > 0.5).astype(dtype)
        for red in ("none", "sum"):
            for opts in ({}, {"p": 2}, {"margin": 0.3, "weight": wc}):
                w.add(
                    f"multi_margin_loss {opts} {red}",
                    fastloss.multi_margin_loss,
                    x,
                    t,
                    reduction=red,
                    return_grad=True,
                    **opts,
                )
            w.add(
                f"multilabel_margin_loss {red}",
                fastloss.multilabel_margin_loss,
                x,
                ml,
                reduction=red,
                return_grad=True,
            )
            w.add(
                f"multilabel_soft_margin_loss {red}",
                fastloss.multilabel_soft_margin_loss,
                x,
                soft,
                weight=wc,
                reduction=red,
                return_grad=True,
            )
        # boxes (x1, y1, x2, y2) that overlap, nest and miss
        p = rng.uniform(0, 10, (9, 2))
        b1 = np.concatenate([p, p + rng.uniform(0.5, 5, (9, 2))], axis=1).astype(dtype)
        q = p + rng.uniform(-2, 2, (9, 2))
        b2 = np.concatenate([q, q + rng.uniform(0.5, 5, (9, 2))], axis=1).astype(dtype)
        bw = rng.uniform(0.5, 2, 9).astype(dtype)
        for spec in _losses.losses("box"):
            fn = getattr(fastloss, spec.name)
            for opts in [{}, {"weight": bw}] + [dict(e) for e in spec.examples]:
                for red in ("none", "sum"):
                    w.add(
                        f"{spec.name} {opts} {red}",
                        fn,
                        b1,
                        b2,
                        reduction=red,
                        return_grad=True,
                        grad_boxes2=True,
                        **opts,
                    )
        xs, ts = (rng.standard_normal((2, 4, 9)) * 3).astype(dtype)
        w.add("focal_l1_loss", fastloss.focal_l1_loss, xs, ts, reduction="none", return_grad=True)


def ctc_gbdt_cases(w):
    rng = np.random.default_rng(5)
    T, N, C = 12, 3, 6
    for dtype in (np.float32, np.float64):
        logits = rng.standard_normal((T, N, C)).astype(dtype)
        lp = (logits - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))).astype(
            dtype
        )
        tl = np.array([4, 2, 5])
        il = np.array([12, 9, 7])
        targets = rng.integers(1, C, (N, 5))
        for opts in ({}, {"from_logits": True}, {"zero_infinity": True}, {"accumulate": "float64"}):
            x = logits if opts.get("from_logits") else lp
            for red in ("none", "sum"):
                w.add(
                    f"ctc_loss {opts} {red}",
                    fastloss.ctc_loss,
                    x,
                    targets,
                    il,
                    tl,
                    reduction=red,
                    return_grad=True,
                    **opts,
                )
        n, K = 11, 4
        z = (rng.standard_normal(n) * 2).astype(dtype)
        zk = (rng.standard_normal((n, K)) * 2).astype(dtype)
        y01 = (rng.uniform(0, 1, n) > 0.5).astype(dtype)
        yk = rng.integers(0, K, n).astype(dtype)
        yr = (rng.standard_normal(n) * 2).astype(dtype)
        yc = rng.integers(0, 5, n).astype(dtype)
        sw = rng.uniform(0.5, 2, n).astype(dtype)
        for loss, s, y, kw in (
            ("logloss", z, y01, {}),
            ("logloss", z, y01, {"pos_weight": 2.0}),
            ("focal", z, y01, {"gamma": 2.0, "alpha": 0.25}),
            ("focal", z, y01, {"gamma": 2.0, "hessian": "bce_bound"}),
            ("softmax", zk, yk, {}),
            ("softmax_focal", zk, yk, {"gamma": 1.5}),
            ("huber", z, yr, {"delta": 0.7}),
            ("pseudo_huber", z, yr, {"delta": 0.7}),
            ("poisson", z, yc, {}),
            ("gaussian", z, yr, {"var": 2.0}),
        ):
            w.add(f"gbdt {loss} {kw}", gbdt.grad_hess, loss, s, y, **kw)
            w.add(f"gbdt {loss} {kw} weighted", gbdt.grad_hess, loss, s, y, sample_weight=sw, **kw)


def main(path):
    if _config._kernels is None:
        sys.exit("make_cases: fastloss's compiled kernels are needed (build or install it)")
    sys.path.insert(0, "tests")
    w = Writer()
    vector_math_cases(w)
    class_cases(w)
    elementwise_cases(w)
    row_cases(w)
    ctc_gbdt_cases(w)
    w.write(path)
    fams = {}
    for r in w.records:
        fams[r[0]] = fams.get(r[0], 0) + 1
    print(f"make_cases: {len(w.records)} cases {fams} -> {path}")
    if w.skipped:
        print(
            f"make_cases: {len(w.skipped)} calls without a checkable kernel output: {w.skipped[:8]}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
