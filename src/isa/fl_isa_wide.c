/*
 * "wide": the AVX-512 code shape (64-byte vectors: 16 float / 8 double lanes) compiled for the
 * baseline ISA with the generic primitives.  Never picked automatically; the tests select it so
 * that every lane count the AVX-512 path uses is exercised on machines without AVX-512.
 * Test-only: setup.py compiles this file (and defines FL_BUILD_WIDE) only when
 * FASTLOSS_BUILD_WIDE=1 is set at build time.  Exports fl_table_wide.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fl_table.h"

#define FL_ISA        wide
#define FL_VBYTES     64
#define FL_OPS_HEADER "isa/fl_ops_generic.h"
#include "fl_isa.h"
#undef FL_OPS_HEADER
#undef FL_ISA
#undef FL_VBYTES

#define FL_TABLE_ISA wide
const fl_table fl_table_wide = FL_TABLE("wide", 64);
#undef FL_TABLE_ISA
