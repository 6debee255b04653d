#!/usr/bin/env bash
# The NEON path without aarch64 hardware: tests/c/kernel_check.c and the kernels
# (src/fl_kernels.c, src/isa/*.c) cross-compiled with aarch64-linux-gnu-gcc and run under
# qemu-user on the cases of tests/c/make_cases.py (NumPy reference values, made on the host).
# First the same driver natively (host gcc), so that a driver bug is told from an aarch64 one.
# Asserts that fl_init picks "neon" by default on aarch64.  Needs: a built fastloss (the case
# generator runs it on the host), gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user.
# Usage: bash tests/c/run_aarch64.sh [--no-native]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
# setup.py's flags (the shipped build)
FLAGS=(-O3 -fno-math-errno -fno-trapping-math -std=gnu11 -Wall -Wno-psabi -Wno-unused-function
       -Isrc)
# every ISA unit but the test-only "wide" (its 64-byte shape is no aarch64 path)
SOURCES=(src/fl_kernels.c src/isa/fl_isa_base.c src/isa/fl_isa_neon.c src/isa/fl_isa_avx2.c
         src/isa/fl_isa_avx512.c tests/c/kernel_check.c)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

# compiles SOURCES with compiler $1 and flags $3.. into executable $2, one process per file
build() {
    local cc=$1 exe=$2 dir
    shift 2
    dir=$(mktemp -d -p "$OUT")
    local pids=()
    for src in "${SOURCES[@]}"; do
        "$cc" "${FLAGS[@]}" "$@" -c "$src" -o "$dir/$(basename "${src%.c}").o" & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    "$cc" "$@" "$dir"/*.o -lm -o "$exe"
}

SECONDS=0
# the installed fastloss if it has its kernels (CI), else this checkout's in-place build
if (cd "$OUT" && "$PY" -c "import fastloss._kernels") 2>/dev/null; then
    "$PY" tests/c/make_cases.py "$OUT/cases.bin"
else
    PYTHONPATH=. "$PY" tests/c/make_cases.py "$OUT/cases.bin"
fi
echo "cases: ${SECONDS}s"

if [ "${1:-}" != "--no-native" ]; then
    echo "== native $(uname -m) (gcc): the driver itself"
    build "${CC:-gcc}" "$OUT/check_native" -fopenmp
    "$OUT/check_native" "$OUT/cases.bin" | tail -n 1
    echo "native: ${SECONDS}s"
fi

echo "== aarch64 (aarch64-linux-gnu-gcc, qemu-aarch64), OpenMP, $OMP_NUM_THREADS threads"
QEMU=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
build aarch64-linux-gnu-gcc "$OUT/check_arm" -fopenmp
echo "cross-compiled: ${SECONDS}s"
"${QEMU[@]}" "$OUT/check_arm" "$OUT/cases.bin" | tee "$OUT/arm.log"
# fl_init's choice on aarch64, as show_config() prints it
grep -qx '       simd: neon' "$OUT/arm.log" || { echo "fl_init did not pick neon"; exit 1; }
grep -q "^neon " "$OUT/arm.log" || { echo "the neon path did not run"; exit 1; }
echo "qemu run: ${SECONDS}s"

echo "== aarch64 without OpenMP, -O2: the neon path"
FLAGS[0]=-O2
build aarch64-linux-gnu-gcc "$OUT/check_arm_serial"
"${QEMU[@]}" "$OUT/check_arm_serial" "$OUT/cases.bin" neon | tail -n 1
echo "aarch64 total: ${SECONDS}s"
