"""pytest fixtures of the fastloss test suite; the helper functions live in _helpers.py."""

import pytest

import fastloss
from fastloss import _config

from _helpers import (  # noqa: F401 (test_kernels_loaded imports available_simd)
    SIMD_PATHS,
    available_simd,
    simd_not_built_reason,
)


@pytest.fixture(params=SIMD_PATHS)
def simd(request):
    """Run the test on one SIMD path (skipped when the build does not have it, e.g. "wide"
    without FASTLOSS_BUILD_WIDE=1, or the CPU lacks it); restore afterwards."""
    K = _config._kernels
    if K is None:
        pytest.skip("compiled kernels not available")
    reason = simd_not_built_reason(request.param)
    if reason is not None:
        pytest.skip(reason)
    old = K.simd_name()
    try:
        K.set_simd(request.param)
    except ValueError:
        pytest.skip(f"CPU lacks {request.param}")
    assert K.simd_name() == request.param
    yield request.param
    K.set_simd(old)


@pytest.fixture
def restore_threads():
    old = fastloss.get_num_threads()
    yield
    fastloss.set_num_threads(old)


@pytest.fixture
def compiled():
    """Force the compiled backend for the test (skips when FASTLOSS_BACKEND=reference and no
    kernels were built)."""
    if _config._kernels is None:
        pytest.skip("compiled kernels not available")
    with fastloss.use_backend("compiled"):
        yield


@pytest.fixture(scope="module")
def torch_single_thread():
    """Tiny problems: torch's intra-op thread pool only adds latency (10x on 2 cores)."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def pytest_terminal_summary(terminalreporter):
    """One plain line per reason tests were skipped, with the count and how to run them
    (pytest's own -ra list names each test, not the cause)."""
    counts = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        if "could not import 'torch'" in reason:
            reason = (
                "torch is not installed: the torch parity and fastloss.torch tests need it "
                '(pip install "torch==2.13.0"; CPU builds: --index-url '
                "https://download.pytorch.org/whl/cpu)"
            )
        counts[reason] = counts.get(reason, 0) + 1
    if counts:
        terminalreporter.section("fastloss: skipped tests, by reason")
        for reason, n in sorted(counts.items(), key=lambda item: -item[1]):
            terminalreporter.line(f"{n:6d} skipped: {reason}")
