/*
 * The "avx512" instantiation of every kernel: AVX-512 F/DQ/VL/BW + AVX2 + FMA, 64-byte
 * vectors, compiled inside a `#pragma GCC target` region (no per-file compiler flags), so
 * x86-64 with GCC only; elsewhere this translation unit is empty.  Exports fl_table_avx512.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fl_table.h"

#if FL_X86_DISPATCH
#include <immintrin.h>
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")
#define FL_ISA    avx512
#define FL_VBYTES 64
/* intrinsics where the vector extensions have no equivalent: vscalef (exp's 2^n scaling in
 * one instruction), two-source permutes (exp and log tables), in-lane and 128-bit-lane
 * shuffles and masked loads/stores (small-C tile transposes), mask-register compares with
 * merge- or zero-masked moves, adds and multiplies, maxps/minps (clamps) */
#define FL_OPS_HEADER "isa/fl_ops_avx512.h"
#include "fl_isa.h"
#undef FL_OPS_HEADER
#undef FL_ISA
#undef FL_VBYTES
#pragma GCC pop_options

#define FL_TABLE_ISA avx512
const fl_table fl_table_avx512 = FL_TABLE("avx512", 64);
#undef FL_TABLE_ISA
#else
typedef int fl_isa_avx512_unavailable; /* ISO C: no empty translation unit */
#endif
