/*
 * The "avx2" instantiation of every kernel: AVX2 + FMA, 32-byte vectors, compiled inside a
 * `#pragma GCC target` region (no per-file compiler flags), so x86-64 with GCC only; elsewhere
 * this translation unit is empty.  Exports fl_table_avx2.
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
#pragma GCC target("avx2,fma")
#define FL_ISA        avx2
#define FL_VBYTES     32
#define FL_OPS_HEADER "isa/fl_ops_avx2.h" /* vmaxps/vminps */
#include "fl_isa.h"
#undef FL_OPS_HEADER
#undef FL_ISA
#undef FL_VBYTES
#pragma GCC pop_options

#define FL_TABLE_ISA avx2
const fl_table fl_table_avx2 = FL_TABLE("avx2", 32);
#undef FL_TABLE_ISA
#else
typedef int fl_isa_avx2_unavailable; /* ISO C: no empty translation unit */
#endif
