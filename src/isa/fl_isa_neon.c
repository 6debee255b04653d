/*
 * The "neon" instantiation of every kernel: AArch64 Advanced SIMD (mandatory in ARMv8-A, so
 * no target pragma and no run-time check), 16-byte vectors, the vector extensions plus the
 * <arm_neon.h> intrinsics of isa/fl_ops_neon.h.  AArch64 with GCC or clang only; elsewhere
 * this translation unit is empty.  Exports fl_table_neon.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fl_table.h"

#if FL_NEON_DISPATCH
#include <arm_neon.h>
#define FL_ISA        neon
#define FL_VBYTES     16
#define FL_OPS_HEADER "isa/fl_ops_neon.h" /* fcmgt + bsl max/min, sshr .2d */
#include "fl_isa.h"
#undef FL_OPS_HEADER
#undef FL_ISA
#undef FL_VBYTES

#define FL_TABLE_ISA neon
const fl_table fl_table_neon = FL_TABLE("neon", 16);
#undef FL_TABLE_ISA
#else
typedef int fl_isa_neon_unavailable; /* ISO C: no empty translation unit */
#endif
