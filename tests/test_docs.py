"""The generated docstrings (fastloss/_docs.py) of every public function: complete (every
parameter of the actual signature described, in order, with its default), true to the
registry (reductions, defaults, option ranges checked by calling the function, the torch
peer checked by looking it up in torch), readable in an 80-column terminal, stable under a
second generation, and with examples that run: every example is a doctest, run here on each
SIMD path of the compiled backend and on the reference backend."""

import doctest
import inspect
import pydoc

import numpy as np
import pytest

import fastloss
import fastloss.reference as REF
from fastloss import _config, _docs, _losses
from fastloss import _validate as V
from fastloss._losses import LOSSES

PUBLIC = [n for n in fastloss.__all__ if callable(getattr(fastloss, n))]
LOSS_NAMES = [n for n in PUBLIC if n in LOSSES]
OTHER_NAMES = [n for n in PUBLIC if n not in LOSSES]


def _doc(name):
    return getattr(fastloss, name).__doc__


def _sections(doc):
    """{title: [lines]} of the numpydoc sections ("" holds what precedes the first one)."""
    lines = doc.splitlines()
    out = {"": []}
    title = ""
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and lines[i] and lines[i + 1] == "-" * len(lines[i]):
            title = lines[i]
            out[title] = []
            i += 2
            continue
        out[title].append(lines[i])
        i += 1
    return out


def _param_heads(doc):
    """{parameter name: its header line}, in the order of the Parameters section."""
    heads = {}
    for line in _sections(doc).get("Parameters", []):
        if line and not line.startswith(" "):
            heads[line.split(" : ")[0].split(",")[0]] = line
    return heads


def _shown(value):
    return f'"{value}"' if isinstance(value, str) else repr(value)


# ----------------------------------------------------------------- completeness


def test_every_public_callable_has_generated_prose():
    assert set(PUBLIC) <= set(_docs._PROSE), set(PUBLIC) - set(_docs._PROSE)
    assert "evaluate" in PUBLIC and "set_num_threads" in PUBLIC and "cross_entropy" in PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_docstring_is_the_generated_one_and_not_trivial(name):
    func = getattr(fastloss, name)
    doc = func.__doc__
    assert doc == _docs.docstring(name, func)
    lines = doc.splitlines()
    assert len(lines) >= (40 if name in LOSSES else 8), doc
    assert lines[1] == "" and lines[0].endswith("."), lines[:2]
    secs = _sections(doc)
    for title in ("Examples",) + (("Parameters",) if inspect.signature(func).parameters else ()):
        assert title in secs, (name, title)
    assert any(line.startswith(">>> ") for line in secs["Examples"])
    assert _docs._UNDOCUMENTED not in doc


@pytest.mark.parametrize("name", PUBLIC)
def test_every_parameter_is_described_in_signature_order_with_its_default(name):
    func = getattr(fastloss, name)
    params = inspect.signature(func).parameters
    assert _docs.missing_descriptions(name, func) == []
    heads = _param_heads(func.__doc__)
    assert list(heads) == list(params), (list(heads), list(params))
    for p in params.values():
        head = heads[p.name]
        if p.default is inspect.Parameter.empty:
            assert "default" not in head, head
        else:
            assert head.endswith(f", default {_shown(p.default)}"), head


def test_a_parameter_without_description_is_reported():
    """What the test above relies on: a new option with no prose is found and shows as
    undocumented (the docstring still builds, so the import never fails on it)."""

    def cross_entropy(input, target, *, weight=None, brand_new_option=0.5, reduction="mean"):
        pass

    assert _docs.missing_descriptions("cross_entropy", cross_entropy) == ["brand_new_option"]
    doc = _docs.docstring("cross_entropy", cross_entropy)
    assert _param_heads(doc)["brand_new_option"] == "brand_new_option, default 0.5"
    assert _docs._UNDOCUMENTED in doc


@pytest.mark.parametrize("name", ["cross_entropy", "nll_loss", "focal_loss"])
def test_class_axis_and_sample_weight_are_documented(name):
    """The class losses' runner options (class `axis`, per-sample `sample_weight`)."""
    fn = getattr(fastloss, name)
    assert _docs.missing_descriptions(name, fn) == []
    heads = _param_heads(fn.__doc__)
    assert heads["axis"] == "axis : int or None, default None"
    assert heads["sample_weight"].endswith("default None")
    # the softmax family's axis keeps its own meaning and default
    assert _param_heads(_doc("softmax"))["axis"] == "axis : int, default -1"


# ----------------------------------------------------------------- true to the registry


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_reductions_and_defaults_match_the_registry(name):
    spec = LOSSES[name]
    heads = _param_heads(_doc(name))
    if spec.reductions:
        allowed = "{" + ", ".join(f'"{r}"' for r in spec.reductions) + "}"
        assert heads["reduction"] == (f'reduction : {allowed}, default "{spec.default_reduction}"')
    for option, default in spec.defaults().items():
        assert heads[option].endswith(f"default {_shown(default)}"), heads[option]
    for weight in spec.weight_names:
        assert heads[weight].endswith("default None")


def _problem(spec):
    """The positional arrays of a small valid call of the row's family and domains: (input,
    target), the three arrays of the pair and embedding families, (input,) without a
    target."""
    if spec.family == "ctc":  # (T, N, C) log-probabilities, targets, input / target lengths
        return np.log(np.full((4, 2, 3), 1 / 3)), np.array([[1, 2], [2, 1]]), [4, 3], [2, 1]
    if spec.family == "linear":  # hidden states (N, H), linear_weight (C, H), class indices
        h = np.array([[1.0, 2.0], [0.5, -1.0]])
        return h, np.array([[2.0, 0.5], [0.0, 1.0], [-1.0, 3.0]]), np.array([0, 2])
    if spec.family == "pair":
        x = np.array([1.0, 2.0, 4.0])
        return x, np.array([0.5, 2.5, 3.0]), np.array([1.0, -1.0, 0.5]) ** 2
    if spec.family == "embedding":
        x = np.array([[1.0, 2.0], [0.5, -1.0]])
        third = np.array([1.0, -1.0]) if "target" in spec.arrays else x[::-1].copy()
        return x, x + 0.5, third
    if spec.family == "box":
        return np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 0.5, 3.0, 2.0]])
    if spec.target_domain == "none":  # entropy
        return (np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]),)
    if spec.target_domain in ("class", "class_or_prob"):  # class losses, error_rate, accuracy
        x = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
        if spec.input_domain == "logprob":
            x = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
        return x, np.array([0, 2])
    x = {
        "logits": np.array([2.0, -1.0, 0.5]),
        "prob": np.array([0.9, 0.2, 0.6]),
        "logprob": np.log(np.array([0.2, 0.3, 0.5])),
        "real": np.array([1.0, 2.0, 4.0]),
    }[spec.input_domain]
    t = {
        "binary": np.array([1.0, 0.0, 1.0]),
        "sign": np.array([1.0, -1.0, 1.0]),
        "prob": np.array([0.5, 0.25, 0.25]),
        "real": np.array([1.5, 2.0, 2.0]),
        "count": np.array([0.0, 1.0, 3.0]),
    }[spec.target_domain]
    return x, t


# documented range -> (values the docs allow, values they exclude)
RANGES = {
    ">= 0": ([0.0, 2.5], [-0.5]),
    "> 0": ([1e-3, 2.5], [0.0, -1.0]),
    "in [0, 1]": ([0.0, 1.0], [-0.1, 1.1]),
    "<= 1": ([0.0, 1.0, -1.0], [1.5, np.inf, np.nan]),
    ">= 1": ([1, 3], [0, -2]),
    "in (0, 1)": ([1e-3, 0.5], [0.0, 1.0, -0.5]),
}


@pytest.mark.parametrize(
    "name,option",
    [(s.name, p.name) for s in LOSSES.values() for p in s.params],
)
def test_documented_option_ranges_are_what_the_function_accepts(name, option):
    head = _param_heads(_doc(name))[option]
    kind = head.split(" : ")[1].rsplit(", default", 1)[0]
    func = getattr(fastloss, name)
    args = _problem(LOSSES[name])
    matched = [r for r in RANGES if kind.endswith(" " + r)]
    if kind.startswith("{"):  # a choice of strings (ties): each accepted, any other refused
        for value in kind.strip("{}").replace('"', "").split(", "):
            func(*args, **{option: value})
        with pytest.raises(ValueError, match=option):
            func(*args, **{option: "no such choice"})
        return
    if not matched:  # ignore_index, log_target, axis: no range; margin, eps: any real number
        check = next(p.check for p in LOSSES[name].params if p.name == option)
        unbounded = check is V.as_real
        # a name or a callable; a dtype name or None
        choice = check in (V.distance_function, _losses.check_accumulate)
        assert kind in ("int", "bool") or (kind == "float" and unbounded) or choice, head
        return
    ok, bad = RANGES[matched[0]]
    for value in ok:
        func(*args, **{option: value})
    for value in bad:
        with pytest.raises(ValueError, match=option):
            func(*args, **{option: value})


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_torch_equivalent_line_names_a_real_torch_function(name):
    spec = LOSSES[name]
    doc = _doc(name)
    lines = [line for line in _sections(doc)[""] if line.startswith("torch equivalent:")]
    assert len(lines) == 1, doc
    if spec.torch_module:
        assert f"fastloss.torch.{spec.torch_module}" in " ".join(_sections(doc)[""])
    if spec.torch_name is None:
        assert "none" in lines[0]
        return
    dotted = lines[0].split(": ", 1)[1].split("(")[0]
    assert dotted.split(".")[-1] == spec.torch_name.split(".")[-1], dotted
    if dotted.startswith("torchvision."):
        pytest.importorskip("torchvision")
    torch = pytest.importorskip("torch")
    obj = torch
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    assert callable(obj)


def test_raises_section_follows_the_family():
    for name in LOSS_NAMES:
        raises = "\n".join(_sections(_doc(name))["Raises"])
        # class-index targets (the class and margin losses, error_rate, accuracy, CTC labels)
        # and multilabel index lists raise IndexError
        index = LOSSES[name].target_domain in ("class", "class_or_prob", "multilabel", "ctc")
        assert ("IndexError" in raises) == index, name
        if LOSSES[name].input_domain == "prob":
            assert "outside [0, 1]" in raises


def _entry(doc, name):
    """The Parameters entry of `name` (header and description) as one line of text."""
    lines = _sections(doc)["Parameters"]
    start = lines.index(_param_heads(doc)[name])
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return " ".join(" ".join(lines[start:end]).split())


def test_evaluate_lists_every_loss_and_the_registry_options():
    doc = _doc("evaluate")
    loss_entry = _entry(doc, "loss")
    for name in fastloss._evaluate.LOSSES:
        assert name in loss_entry
    for spec in LOSSES.values():
        if spec.name not in fastloss._evaluate.LOSSES:
            continue  # evaluate takes (predictions, targets) losses only
        for p in spec.params:
            entry = _entry(doc, p.name)
            assert spec.name in entry and repr(p.default) in entry, entry
        for w in spec.weight_names:
            assert spec.name in _entry(doc, w)
    assert '"batchmean" for kl_div' in _entry(doc, "reduction")


# ----------------------------------------------------------------- readable, stable


@pytest.mark.parametrize("name", PUBLIC)
def test_fits_an_80_column_terminal(name):
    func = getattr(fastloss, name)
    for line in func.__doc__.splitlines():
        assert len(line) <= _docs.WIDTH, line
    # as help() shows it: the signature line is pydoc's, the docstring indented by 4
    text = pydoc.render_doc(func, renderer=pydoc.plaintext)
    body = text.split("\n")[3:]
    assert max(len(line) for line in body) <= 80


def test_generation_is_idempotent():
    before = {n: _doc(n) for n in PUBLIC}
    twins = {n: getattr(REF, n).__doc__ for n in REF.__all__}
    _docs.attach(vars(fastloss))
    _docs.attach(vars(fastloss))
    assert {n: _doc(n) for n in PUBLIC} == before
    assert {n: getattr(REF, n).__doc__ for n in REF.__all__} == twins


@pytest.mark.parametrize("name", REF.__all__)
def test_reference_twins_point_to_the_public_docs(name):
    doc = getattr(REF, name).__doc__
    assert doc.splitlines()[0] == f"NumPy reference twin of fastloss.{name}."
    assert f"help(fastloss.{name})" in " ".join(doc.split())
    assert ">>>" not in doc and all(len(line) <= _docs.WIDTH for line in doc.splitlines())
    # the twin keeps the public signature
    assert inspect.signature(getattr(REF, name)) == inspect.signature(getattr(fastloss, name))


# ----------------------------------------------------------------- the examples run


def _run_examples(name):
    func = getattr(fastloss, name)
    tests = doctest.DocTestFinder().find(func, name, globs={})
    examples = [e for t in tests for e in t.examples]
    assert len(examples) >= 2 and any(e.want for e in examples), name  # shows a result
    runner = doctest.DocTestRunner()
    report = []
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_examples_on_every_simd_path(name, simd, compiled):
    _run_examples(name)


@pytest.mark.parametrize("name", LOSS_NAMES + ["evaluate"])
def test_examples_on_the_reference_backend(name):
    with fastloss.use_backend("reference"):
        _run_examples(name)


@pytest.mark.parametrize("name", OTHER_NAMES)
def test_config_and_evaluate_examples(name):
    """Outside any use_backend block (set_backend's example sets the process default, which
    an override would hide); the examples restore what they change."""
    old_backend, old_threads = _config._state["backend"], fastloss.get_num_threads()
    _run_examples(name)
    assert _config._state["backend"] == old_backend
    assert fastloss.get_num_threads() == old_threads
