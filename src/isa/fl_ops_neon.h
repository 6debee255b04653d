/*
 * Primitives of the AArch64 Advanced SIMD ("neon") target, for one dtype (FL_IS_F32 picks the
 * f32 / f64 intrinsics).  Same contract and two-pass inclusion as isa/fl_ops_generic.h; the
 * vector extensions compile to plain q-register code here (fadd, fmul, fmla, fcmgt, bsl), so
 * intrinsics only where a rule must be spelled out.  No include guard on purpose.
 *
 * Not used (flags 0): table exp / log (no two-source permute of 16 lanes in one register
 * pair worth it at 4 lanes), the normal-number test, a 14-bit reciprocal (frecpe is 8 bits),
 * scalef, mask registers (comparisons give lane masks, as the vector extensions assume),
 * gathers, unshifted raw tiles.  The small-C tiles' transposes are zip1 / zip2
 * (isa/fl_ops_shuffle16.h), and "any lane" tests one umaxv.
 */
#ifndef FL_OPS_UNDEF

#define FL_HAS_EXP_TABLE       0
#define FL_HAS_F32_LOG_TABLE   0
#define FL_HAS_NORMAL_CHECK    0
#define FL_HAS_RCP14           0
#define FL_HAS_SCALEF          0
#define FL_HAS_SRA64           1 /* sshr on .2d: >> on 64-bit integer lanes is one instruction */
#define FL_HAS_MASK_REGS       0
#define FL_HAS_REG_TRANSPOSE   1
#define FL_HAS_FAST_MASK_LOADS 0
#define FL_HAS_RAW_TILES       0
#define FL_HAS_GATHER          0

#if FL_IS_F32
#define FL_NEON_VR  float32x4_t
#define FL_NEON(op) op##_f32
#else
#define FL_NEON_VR  float64x2_t
#define FL_NEON(op) op##_f64
#endif
/* a > b ? a : b and a < b ? a : b, b when either is NaN (the x86 maxps/minps rule, which the
 * kernels rely on: vmaxq / vminq would return the NaN): one compare, one bit select */
#define FL_MAX_OR_B(a, b)                                                                     \
    ((FL_VR)FL_NEON(vbslq)(FL_NEON(vcgtq)((FL_NEON_VR)(a), (FL_NEON_VR)(b)), (FL_NEON_VR)(a), \
                           (FL_NEON_VR)(b)))
#define FL_MIN_OR_B(a, b)                                                                     \
    ((FL_VR)FL_NEON(vbslq)(FL_NEON(vcltq)((FL_NEON_VR)(a), (FL_NEON_VR)(b)), (FL_NEON_VR)(a), \
                           (FL_NEON_VR)(b)))
/* c * v, exactly 0 where c == 0 (NaN c stays NaN) */
#define FL_ZMUL(c, v) FN(vselect)((c) == 0, FN(vsplat)(0), (c) * (v))
/* nonzero if a < b in any lane (ordered: NaN lanes do not count): the lane masks' maximum */
#if FL_IS_F32
#define FL_ANY_LT(a, b) vmaxvq_u32(vcltq_f32((FL_NEON_VR)(a), (FL_NEON_VR)(b)))
#else
#define FL_ANY_LT(a, b) \
    vmaxvq_u32(vreinterpretq_u32_u64(vcltq_f64((FL_NEON_VR)(a), (FL_NEON_VR)(b))))
#endif
#include "isa/fl_ops_shuffle16.h"

#else /* FL_OPS_UNDEF */

#include "isa/fl_ops_shuffle16.h"
#undef FL_NEON_VR
#undef FL_NEON

#endif
