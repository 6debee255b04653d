/*
 * Primitives of the AVX2 + FMA target, for one dtype (FL_PSD, FL_M256 from fl_isa.h).  Same
 * contract and two-pass inclusion as isa/fl_ops_generic.h.  No include guard on purpose.
 */
#ifndef FL_OPS_UNDEF

#define FL_HAS_EXP_TABLE     0
#define FL_HAS_F32_LOG_TABLE 0
#define FL_HAS_NORMAL_CHECK  0
#define FL_HAS_RCP14         0
#define FL_HAS_SCALEF        0
#define FL_HAS_SRA64         0
#define FL_HAS_MASK_REGS     0
#define FL_HAS_REG_TRANSPOSE 0
#define FL_HAS_RAW_TILES     0

#define FL_MM256(op) FL_CAT2(FL_CAT2(_mm256, op), FL_PSD)
/* vmaxps / vminps: a > b ? a : b and a < b ? a : b, b when either is NaN */
#define FL_MAX_OR_B(a, b) ((FL_VR)FL_MM256(max)((FL_M256)(a), (FL_M256)(b)))
#define FL_MIN_OR_B(a, b) ((FL_VR)FL_MM256(min)((FL_M256)(a), (FL_M256)(b)))
/* c * v, exactly 0 where c == 0 (NaN c stays NaN) */
#define FL_ZMUL(c, v) FN(vselect)((c) == 0, FN(vsplat)(0), (c) * (v))

#else /* FL_OPS_UNDEF */

#undef FL_HAS_EXP_TABLE
#undef FL_HAS_F32_LOG_TABLE
#undef FL_HAS_NORMAL_CHECK
#undef FL_HAS_RCP14
#undef FL_HAS_SCALEF
#undef FL_HAS_SRA64
#undef FL_HAS_MASK_REGS
#undef FL_HAS_REG_TRANSPOSE
#undef FL_HAS_RAW_TILES
#undef FL_MM256
#undef FL_MAX_OR_B
#undef FL_MIN_OR_B
#undef FL_ZMUL

#endif
