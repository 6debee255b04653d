"""The loss registry (fastloss/_losses.py) against everything that must agree with it: the
public functions and their signatures, the reference twins, the kernel op names, the torch
bridge, and the generic suites, which must cover every row.  Plus the generic class-axis
suite: every class row against its reference on every SIMD path and by finite differences."""

import importlib
import inspect

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss import _api, _config
from fastloss._losses import FAMILY_ARGS, LOSSES

from _helpers import assert_close, option_cases, ref, registry

COMMON = {"reduction", "return_grad", "grad_output", "grad_out"}


def test_every_public_function_has_a_row_and_back():
    public = {n for n in fastloss.__all__ if n in _api.__all__}
    assert public == set(LOSSES)
    assert set(_api.__all__) == set(LOSSES)
    assert set(REF.__all__) == set(LOSSES)
    for name in LOSSES:
        assert callable(getattr(fastloss, name)) and callable(getattr(REF, name))


@pytest.mark.parametrize("spec", registry("class", "elementwise"), ids=lambda s: s.name)
def test_public_signature_matches_the_row(spec):
    sig = inspect.signature(getattr(fastloss, spec.name))
    params = list(sig.parameters.values())
    assert [p.name for p in params[:2]] == ["input", "target"]
    kw = {p.name: p for p in params[2:]}
    assert all(p.kind is p.KEYWORD_ONLY for p in kw.values())
    family_args = set(FAMILY_ARGS.get(spec.family, ())) | set(spec.runner_args)
    assert set(kw) == set(spec.param_names) | set(spec.weight_names) | COMMON | family_args
    for name in family_args:
        assert kw[name].default is None, name
    for name, default in spec.defaults().items():
        assert kw[name].default == default, name
    for name in spec.weight_names:
        assert kw[name].default is None
    assert kw["reduction"].default == spec.default_reduction
    assert spec.default_reduction in spec.reductions
    assert sig.return_annotation != inspect.Signature.empty  # type-hinted
    assert getattr(fastloss, spec.name).__doc__


@pytest.mark.parametrize("spec", registry("class", "elementwise"), ids=lambda s: s.name)
def test_reference_takes_the_shared_keyword_signature(spec):
    sig = inspect.signature(spec.reference)
    names = {"reduction", "grad_output", "need_grad", *spec.param_names, *spec.weight_names}
    for name in names:
        assert sig.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name


def test_kernel_names_exist_in_the_compiled_op_tables():
    K = _config._kernels
    if K is None:
        pytest.skip("compiled kernels not available")
    tables = {
        "class": K.CLASS_OPS,
        "elementwise": K.ELEMENTWISE_OPS,
        "pair": K.ELEMENTWISE_OPS,
        "embedding": K.EMBEDDING_OPS,
        "margin": K.EMBEDDING_OPS,
        "axis": K.SOFTMAX_OPS,
        "metric": K.ROW_OPS,
        "ctc": ("ctc",),  # one kernel of its own (fastloss._kernels.ctc)
        "box": K.EMBEDDING_OPS,
        "linear": K.CLASS_OPS,  # GEMMs in BLAS, the class kernel on chunks of logits
    }
    for spec in LOSSES.values():
        assert spec.kernel in tables[spec.family], spec.name
        if spec.kernel_switch:
            assert spec.kernel_switch[1] in tables[spec.family], spec.name
    used = {s.kernel for s in LOSSES.values()} | {
        s.kernel_switch[1] for s in LOSSES.values() if s.kernel_switch
    }
    for table in tables.values():  # no compiled kernel without a row
        assert set(table) <= used


def test_torch_bridge_has_every_row():
    FL = pytest.importorskip("fastloss.torch")
    rows = {
        s.name
        for s in registry(
            "class", "elementwise", "pair", "embedding", "margin", "ctc", "box", "linear"
        )
        if s.torch_module
    }
    assert set(FL.FUNCTIONALS) == set(FL.MODULES) == rows
    # one autograd.Function per single-input row; the multi-input rows share one
    assert set(FL.FUNCTIONS) == {s.name for s in registry("class", "elementwise") if s.torch_module}
    for name in rows:
        module = FL.MODULES[name]
        assert module.__name__ == LOSSES[name].torch_module and getattr(FL, module.__name__)
        assert name in FL.__all__ and module.__name__ in FL.__all__


def test_torch_bridge_generates_a_functional_for_a_new_row(monkeypatch):
    """A registry row with a torch_module but no hand-written functional gets a generated
    one (and its Module): here huber_loss's row under a new name, against the real one."""
    torch = pytest.importorskip("torch")
    import dataclasses

    import fastloss.torch as FL

    spec = dataclasses.replace(LOSSES["huber_loss"], name="huber_again", torch_module="HA")
    monkeypatch.setitem(LOSSES, "huber_again", spec)
    monkeypatch.setattr(fastloss, "huber_again", fastloss.huber_loss, raising=False)
    monkeypatch.setitem(FL.FUNCTIONS, "huber_again", FL._make_function(spec))
    fn = FL._make_functional(spec)
    assert list(inspect.signature(fn).parameters) == [
        "input",
        "target",
        "weight",
        "delta",
        "reduction",
    ]
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 3, dtype=torch.float64)
    loss = fn(x, t, delta=0.5)
    loss.backward()
    x2 = x.detach().clone().requires_grad_(True)
    ref_loss = torch.nn.functional.huber_loss(x2, t, delta=0.5)
    ref_loss.backward()
    torch.testing.assert_close(loss, ref_loss)
    torch.testing.assert_close(x.grad, x2.grad)
    module = FL._make_module(spec, fn)(delta=0.5, reduction="sum")
    torch.testing.assert_close(
        module(x.detach(), t),
        torch.nn.functional.huber_loss(x.detach(), t, delta=0.5, reduction="sum"),
    )


# suite module -> attribute naming the losses it runs (and the families it must cover)
SUITES = [
    ("test_elementwise", lambda m: {n for n, _ in m.CASES}, ("elementwise",)),
    ("test_properties", lambda m: set(m.ELEMENTWISE), ("elementwise",)),
    (
        "test_robustness",
        lambda m: set(m.ELEMENTWISE) | set(m.CLASS_LOSSES),
        ("class", "elementwise"),
    ),
    ("test_errors", lambda m: set(m.CLASS_FNS), ("class",)),
    ("test_registry", lambda m: {s.name for s, _ in m.CLASS_CASES}, ("class",)),
    ("test_torch_bridge", lambda m: set(m.VARIANTS) & set(m.REF), ("class", "elementwise")),
    ("test_reference_math", lambda m: set(m.elementwise_calls()), ("elementwise",)),
    ("test_threads", lambda m: {s.name for s in m.registry("elementwise")}, ("elementwise",)),
    # the application code: fastloss eval and fastloss bench
    ("fastloss._evaluate", lambda m: set(m.LOSSES), ("class", "elementwise")),
    ("fastloss.cli.bench.cases", lambda m: set(m.LOSSES), ("class", "elementwise", "axis")),
]


@pytest.mark.parametrize("module,covered,families", SUITES, ids=[s[0] for s in SUITES])
def test_generic_suites_cover_every_row(module, covered, families):
    if module in ("test_torch_bridge", "test_reference_math"):
        pytest.importorskip("torch")
    mod = importlib.import_module(module)
    assert covered(mod) >= {s.name for s in registry(*families)}


# ------------------------------------------------------------------ generic class-axis suite

CLASS_CASES = [(spec, opts) for spec in registry("class") for opts in option_cases(spec)]
LAYOUTS = {"NC": (37, 11), "NC-wide": (9, 130), "NCd": (5, 7, 13), "C": (6,)}


def class_inputs(spec, shape, dtype, rng, opts):
    C = shape[1] if len(shape) > 1 else shape[0]
    x = rng.standard_normal(shape) * 3
    if spec.input_domain == "logprob":
        x = x - np.log(np.exp(x).sum(axis=1 if len(shape) > 1 else 0, keepdims=True))
    t_shape = (shape[0],) + shape[2:] if len(shape) > 1 else ()
    y = rng.integers(0, C, t_shape)
    kw = {k: v for k, v in opts.items() if k not in spec.weight_names}
    if "weight" in opts:
        kw["weight"] = rng.uniform(0.5, 2.0, C).astype(dtype)
    if "ignore_index" in spec.param_names and y.ndim:
        y.reshape(-1)[::5] = -100
    return x.astype(dtype), y, kw


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize(
    "spec,opts", CLASS_CASES, ids=[f"{s.name}-{i}" for i, (s, _) in enumerate(CLASS_CASES)]
)
def test_class_rows_match_reference(spec, opts, layout, dtype, simd):
    rng = np.random.default_rng(len(spec.name) * 31 + len(layout))
    x, y, kw = class_inputs(spec, LAYOUTS[layout], dtype, rng, opts)
    for reduction in spec.reductions:
        la, ga = getattr(fastloss, spec.name)(x, y, reduction=reduction, return_grad=True, **kw)
        le, ge = ref(spec.name, x, y, reduction=reduction, return_grad=True, **kw)
        assert_close(la, le, dtype, err_msg=f"{spec.name} {reduction} loss")
        assert_close(ga, ge, dtype, err_msg=f"{spec.name} {reduction} grad")
        assert ga.dtype == dtype and np.asarray(la).dtype == dtype


@pytest.mark.parametrize(
    "spec,opts", CLASS_CASES, ids=[f"{s.name}-{i}" for i, (s, _) in enumerate(CLASS_CASES)]
)
def test_class_rows_gradient_matches_finite_differences(spec, opts):
    rng = np.random.default_rng(5)
    x, y, kw = class_inputs(spec, (4, 5), np.float64, rng, opts)
    fn = getattr(fastloss, spec.name)
    _, g = fn(x, y, reduction="sum", return_grad=True, **kw)
    h = 1e-5
    num = np.empty_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = (fn(xp, y, reduction="sum", **kw) - fn(xm, y, reduction="sum", **kw)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7)


def test_generated_functional_takes_torchs_layout_for_a_torch_peer():
    pytest.importorskip("torch")
    import dataclasses

    import fastloss.torch as FL

    spec = dataclasses.replace(
        LOSSES["smooth_l1_loss"],
        name="smooth_l1_again",
        torch_name="smooth_l1_again",
        torch_module="SA",
    )
    fn = FL._make_functional(spec)
    assert list(inspect.signature(fn).parameters) == [
        "input",
        "target",
        "size_average",
        "reduce",
        "reduction",
        "beta",
    ]
    assert list(inspect.signature(FL._make_module(spec, fn)).parameters) == [
        "size_average",
        "reduce",
        "reduction",
        "beta",
    ]


def test_torch_bridge_modules_take_torchs_constructor_and_forward():
    """Every generated Module whose torch.nn peer exists takes exactly its constructor
    (names, defaults, keyword-only ones) and its forward arrays."""
    torch = pytest.importorskip("torch")
    FL = importlib.import_module("fastloss.torch")
    checked = 0
    for name, module in FL.MODULES.items():
        peer = getattr(torch.nn, module.__name__, None)
        if peer is None:
            continue
        ours = list(inspect.signature(module.__init__).parameters.values())
        theirs = list(inspect.signature(peer.__init__).parameters.values())
        assert [(p.name, p.default, p.kind) for p in ours] == [
            (p.name, p.default, p.kind) for p in theirs
        ], name
        fwd = list(inspect.signature(module.forward).parameters)[1:]
        assert fwd == list(inspect.signature(peer.forward).parameters)[1:], name
        peer_fn = getattr(torch.nn.functional, name, None)
        if peer_fn is not None:  # and the functional takes torch's positional order
            ours = list(inspect.signature(FL.FUNCTIONALS[name]).parameters.values())
            theirs = list(inspect.signature(peer_fn).parameters.values())
            mine = [(p.name, p.kind) for p in ours[: len(theirs)]]
            assert mine == [(p.name, p.kind) for p in theirs], name
            # extras (ctc_loss's from_logits) only after torch's, keyword-only
            assert all(p.kind is p.KEYWORD_ONLY for p in ours[len(theirs) :]), name
        checked += 1
    assert checked >= 20
