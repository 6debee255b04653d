/*
 * The "base" instantiation of every kernel: the compiler's default target (SSE2 on x86-64,
 * NEON on arm64, ...), 16-byte vectors, the generic primitives.  Exports fl_table_base, the
 * fallback the driver (fl_kernels.c) always has.  One translation unit per ISA, so that the
 * ISAs compile in parallel (setup.py).
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fl_table.h"

/* GCC 12's SLP vectorizer builds 64-bit vector selects that SSE2 cannot expand in some of the
 * float64 kernels (an internal compiler error in gimple-isel, which came and went with
 * unrelated code added to this unit); the kernels are vectorized by hand anyway */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("no-tree-slp-vectorize")
#endif
#define FL_ISA        base
#define FL_VBYTES     16
#define FL_OPS_HEADER "isa/fl_ops_generic.h"
#include "fl_isa.h"
#undef FL_OPS_HEADER
#undef FL_ISA
#undef FL_VBYTES
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

#define FL_TABLE_ISA base
const fl_table fl_table_base = FL_TABLE("baseline", 16);
#undef FL_TABLE_ISA
