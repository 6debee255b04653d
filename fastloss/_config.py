"""Runtime configuration: threads, backend (compiled kernels or NumPy reference), SIMD path."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

__all__ = [
    "set_num_threads",
    "get_num_threads",
    "set_backend",
    "get_backend",
    "use_backend",
    "show_config",
    "config",
]

_BACKENDS = ("compiled", "reference")
_MAX_THREADS = 4096


def _usable_cpus():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_backend():
    value = os.environ.get("FASTLOSS_BACKEND", "compiled").strip().lower() or "compiled"
    if value not in _BACKENDS:
        raise ValueError(f"FASTLOSS_BACKEND must be one of {_BACKENDS}, got {value!r}")
    return value


_state = {"threads": _usable_cpus(), "backend": _env_backend()}
# per-thread/-task override set by use_backend() and by the fastloss.reference twins
_override = contextvars.ContextVar("fastloss_backend", default=None)


def _kernels_import_error(exc):
    """The ImportError to raise when the compiled kernels do not load, saying why."""
    package = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(package)
    in_source_tree = os.path.isfile(os.path.join(checkout, "setup.py")) and os.path.isfile(
        os.path.join(checkout, "src", "_kernels.pyx")
    )
    built = any(
        f.startswith("_kernels.") and f.endswith((".so", ".pyd")) for f in os.listdir(package)
    )
    if in_source_tree and not built:
        return ImportError(
            f"fastloss is being imported from its source folder {package}, which has no "
            "compiled kernels: Python looks in the current directory (or PYTHONPATH) first, so "
            "this folder hides an installed fastloss. Run Python from another directory to "
            "use the installed package, or build the kernels into the source folder with "
            "`pip install -e .` (or `python setup.py build_ext --inplace`)."
        )
    return ImportError(
        f"fastloss's compiled kernels (fastloss._kernels) failed to import: {exc}. Reinstall "
        "with `pip install .`, or set FASTLOSS_BACKEND=reference to run on the NumPy "
        "reference implementation."
    )


# GNU OpenMP's idle threads spin about 300000 iterations (milliseconds) before they sleep,
# and on a machine where another process keeps a CPU busy a call then waits for a thread that
# shares its CPU with the spinner: 13-190x slower than one thread (docs/performance.md,
# "Threads on a busy machine").  A short spin keeps the idle machine's two-thread speed and
# lets the waiting threads sleep under contention.  libgomp reads its environment once, when
# it is loaded, so fastloss sets the spin only for that moment and only when neither the user
# nor an earlier load decided it; the environment is restored at once (child processes and
# other OpenMP runtimes, e.g. torch's own libgomp, do not see it).
_GOMP_SPIN = "1000"
_OMP_WAIT_VARS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def _libgomp_loaded():
    try:
        with open("/proc/self/maps") as maps:
            return any("/libgomp.so" in line for line in maps)
    except OSError:
        return False


def _import_kernels():
    if any(v in os.environ for v in _OMP_WAIT_VARS):
        _state["openmp_wait"] = "from the environment"
    elif _libgomp_loaded():
        _state["openmp_wait"] = "libgomp already loaded: its default"
    else:
        _state["openmp_wait"] = f"GOMP_SPINCOUNT={_GOMP_SPIN} (fastloss's default)"
        os.environ["GOMP_SPINCOUNT"] = _GOMP_SPIN
        try:
            from . import _kernels as kernels
        finally:
            del os.environ["GOMP_SPINCOUNT"]
        return kernels
    from . import _kernels as kernels

    return kernels


try:
    _kernels = _import_kernels()
except ImportError as exc:  # no silent fallback: only an explicit request runs without kernels
    if _state["backend"] != "reference":
        raise _kernels_import_error(exc) from exc
    _kernels = None

if _kernels is not None and os.environ.get("FASTLOSS_SIMD"):
    _kernels.set_simd(os.environ["FASTLOSS_SIMD"].strip().lower())


def _after_fork_in_child():
    # GNU OpenMP's thread pool does not survive fork(): a child that starts a parallel region
    # the parent already used would wait forever.  Children run single-threaded (no OpenMP
    # call at all) unless they call set_num_threads() again.
    _state["threads"] = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def set_num_threads(n: int) -> None:
    """Set the number of threads the kernels may use (default: the usable CPUs).

    In a process forked from one that already ran fastloss on several threads, only 1 is safe
    with GNU OpenMP (use the "spawn" or "forkserver" start method for multi-threaded workers);
    forked children therefore start at 1."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _MAX_THREADS:
        raise ValueError(
            f"set_num_threads: n must be a positive int (at most {_MAX_THREADS}), got {n!r}"
        )
    _state["threads"] = n


def get_num_threads() -> int:
    """Number of threads the kernels may use. Inputs below ~32k elements always use one."""
    return _state["threads"]


def set_backend(name: str) -> None:
    """Select "compiled" (default) or "reference" (the NumPy twins) for the public API."""
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    if name == "compiled" and _kernels is None:
        raise RuntimeError("the compiled kernels are not available in this installation")
    _state["backend"] = name


def get_backend() -> str:
    """The backend the public API runs on in the current thread/context."""
    return _override.get() or _state["backend"]


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: run the public API on `name` ("compiled" or "reference") inside.

    The override is local to the current thread (a contextvars.ContextVar)."""
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {name!r}")
    if name == "compiled" and _kernels is None:
        raise RuntimeError("the compiled kernels are not available in this installation")
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)


def config() -> dict:
    """Build/runtime facts as a dict (what show_config prints)."""
    import numpy as np

    from . import __version__

    info = {
        "version": __version__,
        "backend": get_backend(),
        "kernels": None if _kernels is None else _kernels.__file__,
        "openmp": bool(_kernels is not None and _kernels.openmp_enabled()),
        "threads": _state["threads"],
        # how the OpenMP threads wait between calls (see _import_kernels)
        "openmp_wait": _state.get("openmp_wait"),
        "simd": None if _kernels is None else _kernels.simd_name(),
        # the SIMD paths compiled in ("wide" only with FASTLOSS_BUILD_WIDE=1 at build time)
        "simd_built": None if _kernels is None else _kernels.BUILT_SIMD,
        "numpy": np.__version__,
    }
    return info


def show_config() -> None:
    """Print version, backend, OpenMP, thread count and the SIMD path in use."""
    for key, value in config().items():
        print(f"{key:>11}: {value}")
