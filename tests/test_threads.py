"""Thread-count configuration, determinism across thread counts, concurrent Python threads,
and thread-local backend selection."""

import concurrent.futures
import dataclasses
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pytest

import fastloss
from fastloss._losses import LOSSES

from _helpers import assert_close, ref, registry


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None, True])
def test_set_num_threads_rejects_bad_values(restore_threads, bad):
    before = fastloss.get_num_threads()
    with pytest.raises((ValueError, TypeError), match="positive int"):
        fastloss.set_num_threads(bad)
    assert fastloss.get_num_threads() == before


def test_num_threads_default_and_roundtrip(restore_threads):
    assert isinstance(fastloss.get_num_threads(), int) and fastloss.get_num_threads() >= 1
    for n in (1, 3, 2):
        fastloss.set_num_threads(n)
        assert fastloss.get_num_threads() == n
        assert fastloss.config()["threads"] == n


def _problems(dtype):
    """Shapes large enough for several threads (FL_THREAD_CHUNKS chunks each), both layouts."""
    rng = np.random.default_rng(7 if dtype == np.float32 else 8)
    rows = (rng.standard_normal((60000, 9)) * 3).astype(dtype)
    cols = (rng.standard_normal((60, 9, 800)) * 3).astype(dtype)
    w = rng.integers(1, 25, size=9) / 8.0
    calls = []
    for x in (rows, cols):
        t = rng.integers(0, 9, size=(x.shape[0],) + x.shape[2:])
        t[rng.random(t.shape) < 0.2] = -100
        p = rng.random(x.shape).astype(dtype)
        for red in ("none", "mean", "sum"):
            calls += [
                ("cross_entropy", x, t, dict(weight=w, label_smoothing=0.1, reduction=red)),
                ("cross_entropy", x, p, dict(weight=w, label_smoothing=0.2, reduction=red)),
                ("focal_loss", x, t, dict(gamma=0.5, weight=w, reduction=red)),
                ("nll_loss", x, t, dict(weight=w, reduction=red)),
            ]
    return calls, (rows, cols)


def _run(name, x, t, kw):
    with fastloss.use_backend("compiled"):
        return getattr(fastloss, name)(x, t, return_grad=True, **kw)


def _bits(result):
    loss, grad = result
    return np.asarray(loss).tobytes() + grad.tobytes()


@pytest.fixture(params=[False, True], ids=["owned", "steal"])
def steal_test(request):
    """The thread driver as it runs (each thread starts on its own block of chunks), and with
    its test hook on (the first thread starts on the other blocks' chunks from their ends):
    either way every chunk must run exactly once and the results must not change."""
    from fastloss import _kernels

    _kernels.set_steal_test(request.param)
    _kernels.thread_guard("off")  # a busy test machine must not make the calls run solo
    yield request.param
    _kernels.set_steal_test(False)
    _kernels.thread_guard("reset")


def _elementwise_bits(dtype):
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(300001) * 4).astype(dtype)
    t = (rng.random(300001) < 0.5).astype(dtype)
    inputs = {"prob": (1 / (1 + np.exp(-x))).astype(dtype), "logprob": -np.abs(x)}
    out = []
    with fastloss.use_backend("compiled"):
        for i, spec in enumerate(registry("elementwise")):  # every row, reductions in turn
            reduction = ("sum", "mean", "none")[i % 3]
            xi = inputs.get(spec.input_domain, x)
            out.append(
                _bits(getattr(fastloss, spec.name)(xi, t, reduction=reduction, return_grad=True))
            )
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_identical_bits_for_any_thread_count(restore_threads, steal_test, dtype):
    calls, arrays = _problems(dtype)
    by_threads = {}
    from fastloss import _kernels

    for n in (1, 2, 3, 4):
        fastloss.set_num_threads(n)
        before = _kernels.thread_stats()
        by_threads[n] = [_bits(_run(*c)) for c in calls]
        started = _kernels.thread_stats()["parallel"] - before["parallel"]
        if _kernels.openmp_enabled():  # every class-loss call ran on several threads
            assert started >= (len(calls) if n > 1 else 0), (n, started)
        with fastloss.use_backend("compiled"):
            by_threads[n] += [
                getattr(fastloss, op)(a, axis=ax).tobytes()
                for a in arrays
                for ax in (0, 1, -1)
                for op in ("softmax", "log_softmax", "logsumexp")
            ]
        by_threads[n] += _elementwise_bits(dtype)
    for n in (2, 3, 4):
        for i, (a, b) in enumerate(zip(by_threads[1], by_threads[n])):
            assert a == b, f"call {i} differs between 1 and {n} threads"
    # and the (threaded) results are right
    name, x, t, kw = calls[4]  # mean CE on the rows layout
    assert_close(_run(name, x, t, kw)[0], ref(name, x, t, **kw), dtype)


def test_concurrent_python_threads_match_serial(restore_threads):
    fastloss.set_num_threads(2)
    calls = _problems(np.float32)[0][::2] + _problems(np.float64)[0][1::2]
    serial = [_bits(_run(*c)) for c in calls]
    work = calls * 3
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: _bits(_run(*c)), work))
    for i, r in enumerate(results):
        assert r == serial[i % len(calls)], f"call {i % len(calls)} differs under concurrency"


def test_concurrent_grad_out_buffers_stay_separate():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((5000, 13)) for _ in range(8)]
    t = rng.integers(0, 13, size=5000)
    expected = [fastloss.cross_entropy(x, t, return_grad=True)[1] for x in xs]

    def job(i):
        buf = np.empty_like(xs[i])
        out = fastloss.cross_entropy(xs[i], t, return_grad=True, grad_out=buf)[1]
        return out is buf, out

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for i, (same, g) in enumerate(pool.map(job, range(8))):
            assert same
            np.testing.assert_array_equal(g, expected[i])


def test_use_backend_is_thread_local(monkeypatch):
    """use_backend("reference") in one thread must neither change what another thread sees
    nor route the other thread's computations to the reference math."""
    if fastloss.get_backend() != "compiled":
        pytest.skip("the default backend is the reference (FASTLOSS_BACKEND=reference)")
    ref_calls = []
    spec = LOSSES["cross_entropy"]
    real_ce = spec.reference

    def spy(*a, **k):
        ref_calls.append(threading.get_ident())
        return real_ce(*a, **k)

    monkeypatch.setitem(LOSSES, "cross_entropy", dataclasses.replace(spec, reference=spy))
    inside = threading.Event()
    done = threading.Event()
    seen = {}
    x = np.random.default_rng(0).standard_normal((6, 4))
    t = np.arange(6) % 4

    def holder():
        with fastloss.use_backend("reference"):
            seen["holder"] = fastloss.get_backend()
            fastloss.cross_entropy(x, t)
            seen["holder_ident"] = threading.get_ident()
            inside.set()
            done.wait(10)
        seen["holder_after"] = fastloss.get_backend()

    def other():
        assert inside.wait(10)
        seen["other"] = fastloss.get_backend()
        fastloss.cross_entropy(x, t)
        seen["other_ident"] = threading.get_ident()

    th = threading.Thread(target=holder)
    to = threading.Thread(target=other)
    th.start()
    to.start()
    to.join(10)
    seen["main"] = fastloss.get_backend()
    done.set()
    th.join(10)
    assert seen["holder"] == "reference"
    assert seen["other"] == "compiled"
    assert seen["main"] == "compiled"
    assert seen["holder_after"] == "compiled"
    assert ref_calls == [seen["holder_ident"]], "only the holder thread may use the reference"


def test_use_backend_nests_and_restores():
    start = fastloss.get_backend()
    with fastloss.use_backend("reference"):
        assert fastloss.get_backend() == "reference"
        with fastloss.use_backend("compiled"):
            assert fastloss.get_backend() == "compiled"
        assert fastloss.get_backend() == "reference"
    assert fastloss.get_backend() == start
    with pytest.raises(RuntimeError):
        with fastloss.use_backend("reference"):
            raise RuntimeError("boom")
    assert fastloss.get_backend() == start


def test_set_backend_is_global_and_restorable():
    start = fastloss.get_backend()
    try:
        fastloss.set_backend("reference")
        assert fastloss.get_backend() == "reference"
        seen = []
        th = threading.Thread(target=lambda: seen.append(fastloss.get_backend()))
        th.start()
        th.join()
        assert seen == ["reference"]
    finally:
        fastloss.set_backend(start)
    assert fastloss.get_backend() == start


def test_contention_guard_runs_calls_on_one_thread_then_recovers(restore_threads):
    """The thread driver's guard (src/fl_config.h FL_GUARD_*): after a contended call (here:
    tripped by the test hook) the next calls run on one thread, with the same bits, until its
    back-off has passed; then several threads again."""
    from fastloss import _kernels

    if not _kernels.openmp_enabled():
        pytest.skip("built without OpenMP: one thread only")
    fastloss.set_num_threads(2)
    x = np.random.default_rng(4).standard_normal((40000, 30)).astype(np.float32)
    t = np.arange(40000) % 30
    try:
        _kernels.thread_guard("off")
        expected = _bits(fastloss.cross_entropy(x, t, return_grad=True))
        _kernels.thread_guard("reset")
        _kernels.thread_guard("trip")
        s0 = _kernels.thread_stats()
        assert s0["backoff_s"] * 1e3 == _kernels.TUNING["guard_backoff_ms"]
        assert _bits(fastloss.cross_entropy(x, t, return_grad=True)) == expected
        s1 = _kernels.thread_stats()
        assert s1["solo"] > s0["solo"] and s1["parallel"] == s0["parallel"]
        time.sleep(s0["backoff_s"] * 1.5)
        assert _bits(fastloss.cross_entropy(x, t, return_grad=True)) == expected
        assert _kernels.thread_stats()["parallel"] > s1["parallel"]
        _kernels.thread_guard("reset")
        _kernels.thread_guard("trip")
        _kernels.thread_guard("trip")  # repeated trips double the back-off
        assert _kernels.thread_stats()["backoff_s"] == 2 * s0["backoff_s"]
    finally:
        _kernels.thread_guard("reset")
    with pytest.raises(ValueError, match="mode"):
        _kernels.thread_guard("sometimes")


def test_threads_stay_off_for_short_calls(restore_threads):
    """Each thread gets at least FL_THREAD_CHUNKS chunks: shorter calls never start one."""
    from fastloss import _kernels

    fastloss.set_num_threads(2)
    tuning = _kernels.TUNING
    n_short = tuning["chunk_elems"] * (2 * tuning["thread_chunks"] - 1)
    before = _kernels.thread_stats()
    fastloss.mse_loss(np.ones(n_short), np.zeros(n_short), return_grad=True)
    assert _kernels.thread_stats() == before
    if _kernels.openmp_enabled():
        n_long = tuning["chunk_elems"] * 2 * tuning["thread_chunks"]
        fastloss.mse_loss(np.ones(n_long), np.zeros(n_long), return_grad=True)
        after = _kernels.thread_stats()
        assert after["parallel"] + after["solo"] == before["parallel"] + before["solo"] + 1


def _import_in_child(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    prog = (
        "import os, fastloss; print(fastloss.config()['openmp_wait']); "
        "print('GOMP_SPINCOUNT' in os.environ, os.environ.get('OMP_WAIT_POLICY'))"
    )
    # outside the source folder: CI imports the installed package (the checkout's fastloss/
    # has no compiled kernels there)
    out = subprocess.run(
        [sys.executable, "-c", prog],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_openmp_wait_is_short_spin_unless_the_user_chose(restore_threads):
    """fastloss sets a short GOMP_SPINCOUNT only while its libgomp loads, and restores the
    environment; the user's OMP_WAIT_POLICY / GOMP_SPINCOUNT win."""
    from fastloss import _kernels

    if not _kernels.openmp_enabled():
        pytest.skip("built without OpenMP")
    wait, leaked = _import_in_child({})
    assert wait.startswith("GOMP_SPINCOUNT=") and leaked == "False None"
    wait, leaked = _import_in_child({"OMP_WAIT_POLICY": "passive"})
    assert wait == "from the environment" and leaked == "False passive"
