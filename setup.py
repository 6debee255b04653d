"""Build of fastloss's compiled kernels.

OpenMP is probed: if the compiler accepts -fopenmp (or FASTLOSS_NO_OPENMP=1 is not set),
the kernels run their row chunks on several threads; otherwise they build single-threaded and
everything else works the same.  No -march=native (SIMD is dispatched at run time, see
src/fl_kernels.c) and no -ffast-math (it breaks inf/NaN semantics); only -fno-math-errno and
-fno-trapping-math, which change no result.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def _compiler():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return cc.split()


def openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or ([], []) when unavailable."""
    if os.environ.get("FASTLOSS_NO_OPENMP", "") not in ("", "0"):
        return [], []
    if sys.platform == "win32":
        return ["/openmp"], []
    flags = ["-fopenmp"]
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        cmd = _compiler() + flags + [src, "-o", os.path.join(tmp, "probe")]
        ok = (
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            == 0
        )
    except OSError:
        ok = False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return (flags, flags) if ok else ([], [])


omp_compile, omp_link = openmp_flags()
if sys.platform == "win32":
    base_flags = ["/O2"]
    libraries = []
else:
    base_flags = [
        "-O3",
        "-fno-math-errno",
        "-fno-trapping-math",
        "-std=gnu11",
        "-Wno-psabi",
        "-Wno-unused-function",
    ]
    libraries = ["m"]
extra_compile = base_flags + omp_compile + os.environ.get("FASTLOSS_EXTRA_CFLAGS", "").split()
extra_link = omp_link + os.environ.get("FASTLOSS_EXTRA_LDFLAGS", "").split()

extensions = [
    Extension(
        "fastloss._kernels",
        sources=["src/_kernels.pyx", "src/fl_kernels.c"],
        include_dirs=[np.get_include(), "src"],
        depends=[
            os.path.join(d, f)
            for d in ("src", "src/isa", "src/kernels")
            for f in sorted(os.listdir(d))
            if f.endswith((".h", ".pxd"))
        ],
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
        libraries=libraries,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
