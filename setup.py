"""Build of fastloss's compiled kernels.

OpenMP is probed: if the compiler accepts -fopenmp (or FASTLOSS_NO_OPENMP=1 is not set),
the kernels run their row chunks on several threads; otherwise they build single-threaded and
everything else works the same.  No -march=native (SIMD is dispatched at run time, see
src/fl_kernels.c) and no -ffast-math (it breaks inf/NaN semantics); only -fno-math-errno and
-fno-trapping-math, which change no result.

Environment variables read at build time:
  FASTLOSS_BUILD_WIDE=1    also compile the test-only "wide" SIMD path (src/isa/fl_isa_wide.c:
                           the AVX-512 code shape on the baseline ISA); CI and the sanitizer
                           build set it, a normal install leaves it out
  FASTLOSS_DEBUG=1         keep debug info (-g); otherwise -g0 follows Python's own -g
  FASTLOSS_NO_OPENMP=1     build single-threaded
  FASTLOSS_BUILD_JOBS=N    compile the extension's sources N at a time (default: CPU count)
  FASTLOSS_EXTRA_CFLAGS / FASTLOSS_EXTRA_LDFLAGS   appended last (.ci/sanitize uses them)
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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


def _flag(name):
    return os.environ.get(name, "").strip() not in ("", "0")


def openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or ([], []) when unavailable."""
    if _flag("FASTLOSS_NO_OPENMP"):
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
    # extra_compile_args come after Python's CFLAGS (which carry -g): -g0 there drops the debug
    # info (the .so shrinks from ~12 MB to ~1 MB; the code is the same).  FASTLOSS_EXTRA_CFLAGS
    # come later still, so a -g in them (.ci/sanitize) wins too.
    base_flags.append("-g" if _flag("FASTLOSS_DEBUG") else "-g0")
extra_compile = base_flags + omp_compile + os.environ.get("FASTLOSS_EXTRA_CFLAGS", "").split()
extra_link = omp_link + os.environ.get("FASTLOSS_EXTRA_LDFLAGS", "").split()

# One translation unit per ISA (src/isa/fl_isa_<name>.c), compiled in parallel by
# ParallelBuildExt.  "wide" is test-only: only with FASTLOSS_BUILD_WIDE=1.
build_wide = _flag("FASTLOSS_BUILD_WIDE")
# (neon: an empty unit off aarch64, as avx2 and avx512 are off x86-64)
isa_sources = [f"src/isa/fl_isa_{isa}.c" for isa in ("avx512", "avx2", "neon", "base")]
# the thread pool's order: longest compiles first (measured with gcc 12, -O3 -g0: wide 31 s,
# avx512 13 s, base 8 s, avx2 8 s, _kernels.c 1 s), the other sources after these
_compile_rank = {
    f"src/isa/fl_isa_{isa}.c": i for i, isa in enumerate(("wide", "avx512", "base", "avx2", "neon"))
}
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
if build_wide:
    isa_sources.append("src/isa/fl_isa_wide.c")
    macros.append(("FL_BUILD_WIDE", "1"))


class ParallelBuildExt(build_ext):
    """build_ext that compiles an extension's sources in a thread pool (plain setuptools
    compiles them one after the other; -j only runs whole extensions in parallel).  Jobs:
    FASTLOSS_BUILD_JOBS, else the CPU count.  Each job is the compiler's own compile() on one
    source, so flags, macros and dependency handling are unchanged.

    It also rebuilds when the build configuration changed (FASTLOSS_BUILD_WIDE, _NO_OPENMP,
    _DEBUG, extra flags, the numpy version): setuptools' up-to-date check compares file times
    only, so an unchanged tree would otherwise keep an extension built with other settings
    (pip builds in the source tree's build/, where an earlier build may have left one)."""

    def build_extensions(self):
        jobs = int(os.environ.get("FASTLOSS_BUILD_JOBS") or os.cpu_count() or 1)
        compile_one = self.compiler.compile

        def compile_all(sources, output_dir=None, **kwargs):
            if jobs <= 1 or len(sources) <= 1:
                return compile_one(sources, output_dir=output_dir, **kwargs)
            # the object directories first, so that no two threads create the same one
            for obj in self.compiler.object_filenames(sources, output_dir=output_dir):
                os.makedirs(os.path.dirname(obj) or ".", exist_ok=True)
            # longest compiles first (setuptools hands the sources over sorted by name)
            order = sorted(sources, key=lambda src: _compile_rank.get(src.replace(os.sep, "/"), 99))
            with ThreadPoolExecutor(max_workers=min(jobs, len(sources))) as pool:
                futures = {
                    src: pool.submit(compile_one, [src], output_dir=output_dir, **kwargs)
                    for src in order
                }
                return [obj for src in sources for obj in futures[src].result()]

        self.compiler.compile = compile_all
        stamp = os.path.join(self.build_temp, "fastloss-build-config.txt")
        config = repr(
            [
                (e.name, e.sources, e.define_macros, e.extra_compile_args, e.extra_link_args)
                for e in self.extensions
            ]
            + [np.__version__, getattr(self.compiler, "compiler_so", None)]
        )
        try:
            with open(stamp) as f:
                changed = f.read() != config
        except OSError:
            changed = True
        if changed:
            self.force = True
        # cythonize lists numpy's headers among the depends, at the path of pip's fresh
        # isolated environment (new files every install): the numpy version in the stamp
        # stands for them, so only the other files' times are compared
        numpy_dir = os.path.join(os.path.realpath(np.get_include()), "")
        for ext in self.extensions:
            ext.depends = [d for d in ext.depends if not os.path.realpath(d).startswith(numpy_dir)]
        super().build_extensions()
        os.makedirs(self.build_temp, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(config)


extensions = [
    Extension(
        "fastloss._kernels",
        sources=isa_sources + ["src/fl_kernels.c", "src/_kernels.pyx"],
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
        define_macros=macros,
    )
]


_CYTHON_METADATA = re.compile(rb"/\* BEGIN: Cython Metadata\n.*?\nEND: Cython Metadata \*/", re.S)


def cythonize_keeping_mtime(exts, **kwargs):
    """cythonize, but when a regenerated .c file has the same code as the one already there,
    put its old modification time back.  pip builds in a fresh isolated environment each time,
    so Cython's own .pxd files look new and Cython rewrites src/_kernels.c on every install
    (differing only in the metadata comment, which names that environment's numpy include
    directory); with its old time kept, an up-to-date extension in build/ is not compiled
    again.  (A different numpy version still rebuilds: see ParallelBuildExt.)"""

    def code(c_file):
        with open(c_file, "rb") as f:
            return _CYTHON_METADATA.sub(b"", f.read())

    old = {}
    for ext in exts:
        for src in ext.sources:
            c_file = os.path.splitext(src)[0] + ".c"
            if src.endswith(".pyx") and os.path.exists(c_file):
                old[c_file] = (code(c_file), os.stat(c_file).st_mtime_ns)
    result = cythonize(exts, **kwargs)
    for c_file, (data, mtime) in old.items():
        if code(c_file) == data:
            os.utime(c_file, ns=(mtime, mtime))
    return result


setup(
    cmdclass={"build_ext": ParallelBuildExt},
    ext_modules=cythonize_keeping_mtime(
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
