/*
 * Primitives of the generic vector-extension targets (baseline, and the test-only "wide":
 * the AVX-512 code shape on the baseline ISA), for one dtype.  Included by fl_isa_dtype.h
 * through FL_OPS_HEADER: once before the kernels, and once more with FL_OPS_UNDEF defined
 * after them, which undefines what the first pass defined.  No include guard on purpose.
 *
 * An ISA header (this one is the template for a new ISA, e.g. NEON) defines:
 *  - every FL_HAS_* capability flag, to 0 or 1 (the kernels test `#if FL_HAS_...`);
 *  - the ops every ISA provides: FL_MAX_OR_B, FL_MIN_OR_B, FL_ZMUL, FL_ANY_LT;
 *  - the ops each flag set to 1 promises (listed with the flags in isa/fl_ops_avx512.h).
 * fl_isa_dtype.h checks that the flags and the common ops exist and undefines them after the
 * kernels; the header's second pass (FL_OPS_UNDEF) undefines only its other macros.
 */
#ifndef FL_OPS_UNDEF

/* capabilities: none beyond the vector extensions */
#define FL_HAS_EXP_TABLE     0     /* two-source permute + mask compares: table-driven exp */
#define FL_HAS_F32_LOG_TABLE 0 /* the same, plus a normal-number test: table-driven float log */
#define FL_HAS_NORMAL_CHECK  0  /* one-compare test for normal positive finite lanes */
#define FL_HAS_RCP14         0         /* 14-bit reciprocal estimate */
#define FL_HAS_SCALEF        0        /* p * 2^n in one instruction */
#define FL_HAS_SRA64         0         /* 64-bit arithmetic shifts */
#define FL_HAS_MASK_REGS     0     /* mask-register compares, merge-masked moves and adds */
/* in-lane / 128-bit-lane shuffles and masked loads: tile transposes in registers; here for
 * 16-byte vectors (baseline, NEON), whose transpose is all in-lane two-source shuffles */
#define FL_HAS_REG_TRANSPOSE   (FL_VBYTES == 16)
#define FL_HAS_FAST_MASK_LOADS 0 /* masked loads as fast as plain ones */
#define FL_HAS_RAW_TILES       0     /* vrange bound check: unshifted small-C tiles */
#define FL_HAS_GATHER          0 /* masked gathers of lane indices (FL_GATHER) */

/* a > b ? a : b and a < b ? a : b, b when either is NaN (the x86 rule) */
#define FL_MAX_OR_B(a, b) FN(vselect)((a) > (b), (a), (b))
#define FL_MIN_OR_B(a, b) FN(vselect)((a) < (b), (a), (b))
/* c * v, exactly 0 where c == 0 (NaN c stays NaN) */
#define FL_ZMUL(c, v) FN(vselect)((c) == 0, FN(vsplat)(0), (c) * (v))
/* nonzero if a < b in any lane (ordered: NaN lanes do not count) */
#define FL_ANY_LT(a, b) FN(vany)((a) < (b))
#if FL_VBYTES == 16
#include "isa/fl_ops_shuffle16.h" /* the transposes' ops */
#endif

#else /* FL_OPS_UNDEF */

#include "isa/fl_ops_shuffle16.h"

#endif
