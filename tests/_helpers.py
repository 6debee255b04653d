"""Shared helpers of the fastloss test suite (imported as ``from _helpers import ...``;
pytest puts this folder on sys.path).

The oracle is always ``fastloss.reference`` (pure NumPy, float64 math in
fastloss/reference/_math.py, itself checked against torch in test_reference_math.py), called
on float64 copies of the very inputs given to the compiled kernels.
"""

import platform

import numpy as np

import fastloss.reference as REF
from fastloss import _config, _losses

REDUCTIONS = ("none", "mean", "sum")
FLOATS = (np.float32, np.float64)
# the paths of this machine's architecture (a path of another one would only add skips);
# wide: the avx512 lane counts on the baseline ISA
_ARCH_SIMD = {"x86_64": ("avx2", "avx512"), "AMD64": ("avx2", "avx512"), "aarch64": ("neon",)}
SIMD_PATHS = ("baseline", *_ARCH_SIMD.get(platform.machine(), ()), "wide")

# (rtol, atol relative to the largest finite |expected| entry)
TOL = {np.dtype(np.float32): (2e-4, 1e-6), np.dtype(np.float64): (1e-9, 1e-12)}


def assert_close(actual, expected, dtype, rtol=None, atol=None, err_msg=""):
    """allclose with the dtype's tolerances; NaN matches NaN, inf matches inf of the same sign.
    atol is scaled by the largest finite |expected| (1 when there is none or it is 0) and
    never below the dtype's smallest normal number."""
    r, a = TOL[np.dtype(dtype)]
    rtol = r if rtol is None else rtol
    atol = a if atol is None else atol
    act = np.asarray(actual, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    assert act.shape == exp.shape, (act.shape, exp.shape, err_msg)
    fin = np.isfinite(exp)
    finite = np.abs(exp[fin])
    scale = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    # plus the dtype's smallest normal: values below it cannot be stored to full precision
    atol = atol * scale + float(np.finfo(dtype).tiny)
    with np.errstate(all="ignore"):
        ok = (
            np.array_equal(fin, np.isfinite(act))
            and np.array_equal(np.isnan(exp), np.isnan(act))
            and np.array_equal(exp[~fin & ~np.isnan(exp)], act[~fin & ~np.isnan(act)])
            and bool(np.all(np.abs(act[fin] - exp[fin]) <= atol + rtol * np.abs(exp[fin])))
        )
    if not ok:  # slow path only to produce numpy's detailed message
        np.testing.assert_allclose(act, exp, rtol=rtol, atol=atol, equal_nan=True, err_msg=err_msg)
        raise AssertionError(f"mismatch in non-finite entries {err_msg}: {act!r} vs {exp!r}")


def readonly(a):
    """A read-only copy of `a` that keeps its memory layout (views stay views of a read-only
    base), so any NumPy-level write raises."""
    a = np.asarray(a)
    if a.base is not None and isinstance(a.base, np.ndarray):
        a.base.flags.writeable = False
    a.flags.writeable = False
    return a


def as_f64(value):
    return None if value is None else np.array(value, dtype=np.float64)


def ref(name, x, target, **kw):
    """The reference result for fastloss.<name>(x, target, **kw), computed in float64 from
    the same inputs (float32 inputs are upcast exactly)."""
    kw = dict(kw)
    kw.pop("grad_out", None)
    if kw.get("weight") is not None:
        kw["weight"] = as_f64(kw["weight"])
    t = np.asarray(target)
    if t.dtype.kind == "f":
        t = t.astype(np.float64)
    return getattr(REF, name)(as_f64(x), t, **kw)


def ref_axis(name, x, axis=-1):
    return getattr(REF, name)(as_f64(x), axis=axis)


def float32_exact(values):
    """Values rounded to float32 and returned as float64 (exactly representable in both)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def simd_not_built_reason(name):
    """Why SIMD path `name` is not in this build (fastloss._kernels.BUILT_SIMD), or None."""
    if name in _config._kernels.BUILT_SIMD:
        return None
    if name == "wide":
        return "wide not built: FASTLOSS_BUILD_WIDE=1"
    return f"{name} not built (this compiler or platform)"


def available_simd():
    """SIMD paths this build has and this CPU runs (the current one is restored)."""
    K = _config._kernels
    old = K.simd_name()
    ok = []
    for name in SIMD_PATHS:
        if simd_not_built_reason(name) is not None:
            continue
        try:
            K.set_simd(name)
        except ValueError:
            continue
        ok.append(name)
    K.set_simd(old)
    return ok


# ------------------------------------------------------------------ the registry's test cases
# The generic suites draw their losses and option sets from fastloss._losses.LOSSES: a new
# registry row is tested on every axis without editing a test file.


def registry(*families):
    return _losses.losses(*families)


def weight_variants(spec):
    """Weight layouts worth testing for a row: each weight alone in each of its layouts
    ("full" = input's shape, "lead" = (N, 1, ...), "last" = one value per last-axis entry),
    then all weights together."""
    layouts = {"any": ("full", "lead", "last"), "last": ("last",), "class": ("class",)}
    out = [{w.name: layout} for w in spec.weights for layout in layouts[w.broadcast]]
    if len(spec.weights) > 1:
        out.append({w.name: layouts[w.broadcast][0] for w in spec.weights})
    return out


def option_cases(spec):
    """Option sets of a row: defaults, the row's examples, the weight layouts."""
    return [{}] + [dict(e) for e in spec.examples] + weight_variants(spec)


def elementwise_cases():
    """(name, options) for every elementwise row, options with weight layouts by name."""
    return [(s.name, opts) for s in registry("elementwise") for opts in option_cases(s)]


def case_ids(cases):
    return [f"{name}-{i}" for i, (name, _) in enumerate(cases)]


def draw_input(spec, shape, rng):
    """float64 input from the row's input domain."""
    if spec.input_domain == "prob":
        return rng.uniform(0.001, 0.999, shape)
    if spec.input_domain == "logprob":
        return np.log(rng.uniform(0.01, 1.0, shape))
    return rng.standard_normal(shape) * 3


def draw_elementwise(name, shape, dtype, seed=0, options=None):
    """(input, target) of an elementwise row: targets in [0, 1] (hard 0/1 labels for the
    sigmoid focal loss, torchvision's setting), log-probabilities with log_target=True."""
    spec = _losses.LOSSES[name]
    rng = np.random.default_rng(seed)
    x = draw_input(spec, shape, rng)
    t = rng.uniform(0, 1, shape)
    if name == "sigmoid_focal_loss":
        t = np.round(t)
    if spec.target_domain == "sign":  # labels -1 / +1
        t = 2 * np.round(t) - 1
    if spec.target_domain == "count":  # counts 0..4 (the Stirling term needs t > 1)
        t = np.floor(5 * t)
    if (options or {}).get("log_target"):
        t = np.log(np.maximum(t, 1e-3))
    return x.astype(dtype), t.astype(dtype)


def materialise(opts, shape, dtype, seed=1):
    """Weight layouts (see weight_variants) turned into arrays of `dtype`."""
    rng = np.random.default_rng(seed)
    out = dict(opts)
    for key, layout in opts.items():
        if layout not in ("full", "lead", "last"):
            continue
        if not shape:
            out[key] = np.asarray(rng.uniform(0.5, 2.0), dtype=dtype)
        elif layout == "last":
            out[key] = rng.uniform(0.5, 2.0, shape[-1:]).astype(dtype)
        elif layout == "full":
            out[key] = rng.uniform(0.5, 2.0, shape).astype(dtype)
        else:
            out[key] = rng.uniform(0.5, 2.0, shape[:1] + (1,) * (len(shape) - 1)).astype(dtype)
    return out


def torch_peer(name):
    """The torch function a row names as its peer (torchvision's formula for
    "torchvision.ops.*", written in torch), the torch formula of a row without a peer
    (reference/_oracles.py's torch_<name>), or None."""
    import torch

    spec = _losses.LOSSES[name]
    if spec.torch_name is None:  # a formula written in torch (focal_l1_loss), if any
        from fastloss.reference import _oracles

        return getattr(_oracles, "torch_" + name, None)
    if spec.torch_name.startswith("torchvision.ops."):
        from fastloss.reference import _oracles

        return getattr(_oracles, "torchvision_" + spec.torch_name.rsplit(".", 1)[1])
    return getattr(torch.nn.functional, spec.torch_name)
