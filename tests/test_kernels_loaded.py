"""The suite must exercise the compiled kernels of the package under test, not a fallback."""

import importlib
import io
import math
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

import fastloss
from fastloss import _config

REFERENCE_REQUESTED = os.environ.get("FASTLOSS_BACKEND", "").strip().lower() == "reference"


def test_kernels_importable():
    K = importlib.import_module("fastloss._kernels")
    assert K is _config._kernels
    for name in ("class_loss", "elementwise", "softmax", "set_simd", "simd_name"):
        assert callable(getattr(K, name)), name


def test_backend_is_compiled():
    if REFERENCE_REQUESTED:
        pytest.skip("FASTLOSS_BACKEND=reference explicitly set")
    assert fastloss.get_backend() == "compiled"
    assert fastloss.config()["backend"] == "compiled"


def test_kernels_live_in_the_imported_package():
    K = importlib.import_module("fastloss._kernels")
    pkg_dir = Path(fastloss.__file__).resolve().parent
    kernels_file = Path(K.__file__).resolve()
    assert kernels_file.parent == pkg_dir, (kernels_file, pkg_dir)
    assert kernels_file.suffix in (".so", ".pyd"), kernels_file
    assert fastloss.config()["kernels"] == K.__file__


def test_show_config_and_config():
    info = fastloss.config()
    for key in (
        "version",
        "backend",
        "kernels",
        "openmp",
        "threads",
        "simd",
        "simd_built",
        "numpy",
    ):
        assert key in info
    assert info["simd_built"] == _config._kernels.BUILT_SIMD
    assert info["simd"] in info["simd_built"]
    assert info["version"] == fastloss.__version__
    assert info["threads"] == fastloss.get_num_threads() >= 1
    assert info["simd"] == _config._kernels.simd_name()
    assert isinstance(info["openmp"], bool)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert fastloss.show_config() is None
    text = buf.getvalue()
    assert info["simd"] in text and str(info["threads"]) in text and info["backend"] in text


def test_direct_kernel_call_gives_hand_computed_values():
    """Call fastloss._kernels directly once: logits [0, log 3] (p = [1/4, 3/4]), target 1."""
    K = _config._kernels
    x = np.array([[0.0, math.log(3.0)], [math.log(3.0), 0.0]])
    t = np.array([1, 1], dtype=np.int64)
    grad = np.full_like(x, np.nan)
    rows = np.full(2, np.nan)
    kind, none, total_ = K.CLASS_OPS["cross_entropy"], K.REDUCTIONS["none"], K.REDUCTIONS["sum"]
    assert K.class_loss(
        kind, x, 2, 2, 1, t, None, None, -100, 0.0, 0.0, none, 1.0, grad, rows, 1
    ) == (None, -1)
    expected_rows = [-math.log(0.75), -math.log(0.25)]
    np.testing.assert_allclose(rows, expected_rows, rtol=1e-15)
    np.testing.assert_allclose(grad, [[0.25, -0.25], [0.75, -0.75]], rtol=1e-15, atol=1e-16)
    total, bad = K.class_loss(
        kind, x, 2, 2, 1, t, None, None, -100, 0.0, 0.0, total_, 1.0, None, None, 1
    )
    assert bad == -1
    np.testing.assert_allclose(total, sum(expected_rows), rtol=1e-15)
    # a bad target is reported by position, before anything is written
    bad_t = np.array([1, 7], dtype=np.int64)
    assert K.class_loss(
        kind, x, 2, 2, 1, bad_t, None, None, -100, 0.0, 0.0, total_, 1.0, None, None, 1
    ) == (None, 1)
    # the public API routes to the kernels: same bits as the direct call
    with fastloss.use_backend("compiled"):
        loss, g = fastloss.cross_entropy(x, t, reduction="none", return_grad=True)
    assert np.array_equal(loss, rows) and np.array_equal(g, grad)
    out = np.empty_like(x)
    K.softmax(x, 2, 2, 1, out, K.SOFTMAX_OPS["softmax"], 1)
    np.testing.assert_allclose(out, [[0.25, 0.75], [0.75, 0.25]], rtol=1e-15)


def test_compiled_backend_does_not_touch_reference_math(monkeypatch):
    """With the compiled backend, the NumPy oracle must never run (no silent fallback)."""
    from fastloss.reference import _math as M

    def boom(*a, **k):
        raise AssertionError("reference math called under the compiled backend")

    for name in ("cross_entropy", "nll_loss", "focal_loss", "softmax", "log_softmax", "logsumexp"):
        monkeypatch.setattr(M, name, boom)
    x = np.array([[0.0, math.log(3.0)]])
    t = np.array([1])
    with fastloss.use_backend("compiled"):
        np.testing.assert_allclose(fastloss.cross_entropy(x, t), -math.log(0.75), rtol=1e-14)
        np.testing.assert_allclose(
            fastloss.focal_loss(x, t, gamma=1.0), -0.25 * math.log(0.75), rtol=1e-14
        )
        np.testing.assert_allclose(fastloss.nll_loss(x, t), -math.log(3.0), rtol=1e-14)
        np.testing.assert_allclose(fastloss.softmax(x), [[0.25, 0.75]], rtol=1e-14)
        np.testing.assert_allclose(fastloss.logsumexp(x), [math.log(4.0)], rtol=1e-14)
        np.testing.assert_allclose(fastloss.log_softmax(x), np.log([[0.25, 0.75]]), rtol=1e-14)


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_set_simd_switches_and_rejects():
    K = _config._kernels
    old = K.simd_name()
    assert old in ("baseline", "avx2", "avx512", "neon", "wide")
    try:
        with pytest.raises(ValueError, match="bogus"):
            K.set_simd("bogus")
        assert K.simd_name() == old
        K.set_simd("baseline")
        assert K.simd_name() == "baseline"
        flags = _cpu_flags()
        if flags is not None and "avx2" in flags and os.uname().machine == "x86_64":
            K.set_simd("avx2")
            assert K.simd_name() == "avx2"
        if flags is not None and os.uname().machine == "x86_64":
            need = {"avx512f", "avx512dq", "avx512vl", "avx512bw", "avx2", "fma"}
            if need <= flags:
                K.set_simd("avx512")
                assert K.simd_name() == "avx512"
            else:
                with pytest.raises(ValueError, match="avx512"):
                    K.set_simd("avx512")
    finally:
        K.set_simd(old)
    assert K.simd_name() == old


def test_built_simd_and_unbuilt_wide():
    """BUILT_SIMD lists the compiled paths (baseline always; wide only with
    FASTLOSS_BUILD_WIDE=1); asking for an unbuilt wide says how to build it."""
    K = _config._kernels
    built = K.BUILT_SIMD
    assert isinstance(built, tuple) and "baseline" in built
    assert set(built) <= {"baseline", "avx2", "avx512", "neon", "wide"}
    assert len(set(built)) == len(built)
    # neon: built exactly on aarch64 (Advanced SIMD is mandatory there, so it is the default)
    assert ("neon" in built) == (os.uname().machine in ("aarch64", "arm64"))
    if os.uname().machine == "x86_64" and "avx2" not in built:
        pytest.skip("a build without the x86 paths (not GCC)")
    old = K.simd_name()
    try:
        if "wide" in built:
            K.set_simd("wide")
            assert K.simd_name() == "wide"
        else:
            with pytest.raises(ValueError, match="not built.*FASTLOSS_BUILD_WIDE=1"):
                K.set_simd("wide")
            assert K.simd_name() == old
    finally:
        K.set_simd(old)


def _run_python(code, **env):
    full_env = dict(os.environ)
    full_env.pop("FASTLOSS_SIMD", None)
    full_env.pop("FASTLOSS_BACKEND", None)
    full_env.update(env)
    root = str(Path(fastloss.__file__).resolve().parent.parent)
    full_env["PYTHONPATH"] = root + os.pathsep + full_env.get("PYTHONPATH", "")
    # cwd = the directory holding the package under test: `-c` puts the cwd first on sys.path,
    # and a source checkout there (without the built extension) must not shadow it
    res = subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_env_simd_forces_path_at_import():
    from conftest import available_simd

    names = available_simd()
    code = (
        "import fastloss, numpy as np; from fastloss import _config as c; "
        "print(c._kernels.simd_name(), fastloss.cross_entropy(np.eye(3) * 2, "
        "np.arange(3), reduction='sum'))"
    )
    for name in names:
        out = _run_python(code, FASTLOSS_SIMD=name)
        simd, value = out.split()
        assert simd == name
        expected = 3 * (-2.0 + math.log(math.exp(2.0) + 2.0))
        assert math.isclose(float(value), expected, rel_tol=1e-12)


def test_env_backend_reference_and_default_threads():
    code = "import fastloss; print(fastloss.get_backend(), fastloss.get_num_threads())"
    backend, threads = _run_python(code, FASTLOSS_BACKEND="reference").split()
    assert backend == "reference" and int(threads) >= 1
    backend, threads = _run_python(code).split()
    assert backend == "compiled" and int(threads) >= 1


def test_op_lists_come_from_c():
    """The op dictionaries are read from the C lists (fl_kernel_list.h): expected keys,
    codes 0..n-1 in list order, no name used twice within a list, positive tuning ints."""
    K = _config._kernels
    from fastloss._losses import losses

    def kernels(*families):  # the registry rows' kernel names, switch targets included
        rows = losses(*families)
        return {s.kernel for s in rows} | {s.kernel_switch[1] for s in rows if s.kernel_switch}

    for attr, families in (
        ("ELEMENTWISE_OPS", ("elementwise", "pair")),  # pair: the elementwise loop's PAIR ops
        ("CLASS_OPS", ("class",)),
        ("EMBEDDING_OPS", ("embedding", "margin", "box")),  # margin, box: row kernels too
        ("SOFTMAX_OPS", ("axis",)),
    ):
        assert set(getattr(K, attr)) == kernels(*families), attr
    expected = {
        "ELEMENTWISE_OPS": list(K.ELEMENTWISE_OPS),
        "CLASS_OPS": ["cross_entropy", "focal", "nll"],
        "SOFTMAX_OPS": ["log_softmax", "softmax", "logsumexp"],
        "REDUCTIONS": ["none", "mean", "sum"],
        "VECTOR_MATH_OPS": ["exp", "log", "log1p", "log1p_unit", "log1p_nonneg"],
    }
    for attr, names in expected.items():
        ops = getattr(K, attr)
        assert list(ops) == names, attr
        assert list(ops.values()) == list(range(len(names))), attr
    kernel_names = [
        n
        for attr in ("ELEMENTWISE_OPS", "CLASS_OPS", "EMBEDDING_OPS", "SOFTMAX_OPS")
        for n in getattr(K, attr)
    ]
    assert len(kernel_names) == len(set(kernel_names))
    for name in ("LOG_SOFTMAX", "SOFTMAX", "LOGSUMEXP", "CLASS_LOSS_KINDS"):
        assert not hasattr(K, name), name


def test_tuning_constants_exported():
    K = _config._kernels
    assert {"chunk_elems", "small_c", "flush", "nll_block"} <= set(K.TUNING)
    for name, value in K.TUNING.items():
        assert isinstance(value, int) and value > 0, (name, value)
    assert K.TUNING["chunk_elems"] == 32768 and K.TUNING["small_c"] == 48


def test_small_c_is_the_tile_path_boundary():
    """TUNING["small_c"] is the kernels' boundary: both sides agree with the reference."""
    c = _config._kernels.TUNING["small_c"]
    rng = np.random.default_rng(0)
    for C in (c, c + 1):
        x = rng.standard_normal((64, C))
        t = rng.integers(0, C, 64)
        with fastloss.use_backend("compiled"):
            got = fastloss.cross_entropy(x, t, reduction="sum")
        with fastloss.use_backend("reference"):
            ref = fastloss.cross_entropy(x, t, reduction="sum")
        np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("checkout", [True, False], ids=["source-folder", "broken-install"])
def test_missing_kernels_message_says_why(tmp_path, checkout):
    """Importing fastloss from a source folder without compiled kernels (Python from the repo
    root after `pip install .`) names the shadowing, not a reinstall; elsewhere the message
    says the kernels failed to load."""
    import shutil
    import sys
    from pathlib import Path

    package = Path(fastloss.__file__).parent
    shutil.copytree(package, tmp_path / "fastloss", ignore=shutil.ignore_patterns("*.so", "*.pyd"))
    if checkout:
        (tmp_path / "setup.py").write_text("")
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "_kernels.pyx").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASTLOSS_BACKEND")}
    proc = subprocess.run(
        [sys.executable, "-c", "import fastloss"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    if checkout:
        assert "source folder" in proc.stderr and "hides an installed fastloss" in proc.stderr
    else:
        assert "failed to import" in proc.stderr and "source folder" not in proc.stderr
