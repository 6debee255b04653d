"""fastloss pytest-benchmark suite: ``pytest bench/ --benchmark-only`` (a few minutes).

One benchmark per public loss (and cross_entropy variants), forward and forward+backward
(allocating, and into a preallocated ``grad_out``), float32 and float64, at ~4M elements; the
memory floors (``np.copyto``, ``np.copy``, ``x.sum()``) of the same shapes sit in the same
benchmark groups for comparison.  Compare within one run only (docs/performance.md).
Elementwise losses are benchmarked when fastloss exports them.
"""

import os

import numpy as np
import pytest

pytest.importorskip("pytest_benchmark")

import fastloss  # noqa: E402
from fastloss.cli.bench import cases  # noqa: E402

_SCALE = float(os.environ.get("FASTLOSS_BENCH_SCALE", "1"))


def _shape(*dims):
    """Scale the first dimension by FASTLOSS_BENCH_SCALE (>= 1)."""
    return (max(1, int(dims[0] * _SCALE)),) + dims[1:]


CLASS = _shape(4096, 1000)  # ~4.1M elements, C = 1000
SMALL_C = _shape(409600, 10)  # ~4.1M elements, C = 10 (the small-class path)
FLAT = _shape(4194304)  # elementwise losses
DTYPES = ("float32", "float64")

# (id, function name, variant, kwargs, shapes); variant selects the target in conftest
_CLASS_CASES = [
    ("cross_entropy", "cross_entropy", "index", {}, (CLASS, SMALL_C)),
    ("cross_entropy_probs", "cross_entropy", "probs", {}, (CLASS,)),
    ("cross_entropy_smooth", "cross_entropy", "index", {"label_smoothing": 0.1}, (CLASS,)),
    ("nll_loss", "nll_loss", "index", {}, (CLASS,)),
    ("focal_loss", "focal_loss", "index", {"gamma": 2.0}, (CLASS, SMALL_C)),
]
_SOFTMAX_CASES = [(name, name) for name in ("log_softmax", "softmax", "logsumexp")]
_ELEMENTWISE_CASES = [
    (name, row) for name, row in cases.LOSSES.items() if row.kind == "elementwise"
]


def _exists(name):
    return name in fastloss.__all__ and hasattr(fastloss, name)


def _sid(shape):
    return "x".join(str(n) for n in shape)


def _params_with_grad():
    out = []
    for case_id, name, variant, kwargs, shapes in _CLASS_CASES:
        for shape in shapes:
            out.append(
                pytest.param(
                    name,
                    variant,
                    kwargs,
                    shape,
                    id=f"{case_id}-{_sid(shape)}",
                    marks=()
                    if _exists(name)
                    else pytest.mark.skip(reason=f"fastloss has no {name}"),
                )
            )
    for name, row in _ELEMENTWISE_CASES:
        out.append(
            pytest.param(
                name,
                "same",
                dict(row.kwargs),
                FLAT,
                id=f"{name}-{_sid(FLAT)}",
                marks=()
                if _exists(name)
                else pytest.mark.skip(reason=f"fastloss has no {name} yet"),
            )
        )
    return out


def _group(shape, dtype):
    return f"{_sid(shape)} {dtype}"


def _info(benchmark, x, target):
    benchmark.extra_info["elements"] = int(x.size)
    benchmark.extra_info["bytes_read"] = int(x.nbytes + (0 if target is None else target.nbytes))
    benchmark.extra_info["threads"] = fastloss.get_num_threads()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd", "grad_out"])
@pytest.mark.parametrize("name,variant,kwargs,shape", _params_with_grad())
def test_loss(benchmark, bench_inputs, name, variant, kwargs, shape, mode, dtype):
    x, target = bench_inputs.get(name, variant, shape, dtype)
    fn = getattr(fastloss, name)
    benchmark.group = _group(shape, dtype)
    _info(benchmark, x, target)
    if mode == "fwd":
        result = benchmark(fn, x, target, **kwargs)
        assert np.ndim(result) == 0
    elif mode == "fwd_bwd":
        loss, grad = benchmark(fn, x, target, return_grad=True, **kwargs)
        assert grad.shape == x.shape
    else:
        buf = np.empty_like(x)
        buf.fill(0)
        loss, grad = benchmark(fn, x, target, return_grad=True, grad_out=buf, **kwargs)
        assert grad is buf


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [CLASS, SMALL_C], ids=_sid)
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=() if _exists(n) else pytest.mark.skip(reason=f"fastloss has no {n}"))
        for _, n in _SOFTMAX_CASES
    ],
)
def test_softmax_family(benchmark, bench_inputs, name, shape, dtype):
    x, _ = bench_inputs.get(name, "none", shape, dtype)
    benchmark.group = _group(shape, dtype)
    _info(benchmark, x, None)
    out = benchmark(getattr(fastloss, name), x)
    assert out.shape[0] == x.shape[0]


_FLOORS = {
    "floor_copyto": lambda x, buf: np.copyto(buf, x),
    "floor_copy": lambda x, buf: np.copy(x),
    "floor_sum": lambda x, buf: x.sum(),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [CLASS, SMALL_C, FLAT], ids=_sid)
@pytest.mark.parametrize("floor", list(_FLOORS))
def test_floor(benchmark, bench_inputs, floor, shape, dtype):
    """The memory floors: np.copyto(buf, x) (grad_out), np.copy(x) (allocating fwd+bwd),
    x.sum() (loss only).  Elementwise losses also read a target: their floor is x1.5."""
    x, _ = bench_inputs.get("floor", "none", shape, dtype)
    buf = np.empty_like(x)
    np.copyto(buf, x)
    benchmark.group = _group(shape, dtype)
    _info(benchmark, x, None)
    benchmark(_FLOORS[floor], x, buf)
