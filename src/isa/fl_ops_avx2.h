/*
 * Primitives of the AVX2 + FMA target, for one dtype (FL_PSD, FL_M256 from fl_isa.h).  Same
 * contract and two-pass inclusion as isa/fl_ops_generic.h.  No include guard on purpose.
 */
#ifndef FL_OPS_UNDEF

#define FL_HAS_EXP_TABLE       FL_IS_F32 /* 8 entries: FL_EXP_TAB_REGS 1 */
#define FL_EXP_TAB_REGS        1
#define FL_HAS_F32_LOG_TABLE   0
#define FL_HAS_NORMAL_CHECK    0
#define FL_HAS_RCP14           0
#define FL_HAS_SCALEF          0
#define FL_HAS_SRA64           0
#define FL_HAS_MASK_REGS       0
#define FL_HAS_REG_TRANSPOSE   1
#define FL_HAS_FAST_MASK_LOADS 1
#define FL_HAS_RAW_TILES       0
#define FL_HAS_GATHER          1

#define FL_MM256(op) FL_CAT2(FL_CAT2(_mm256, op), FL_PSD)
/* vmaxps / vminps: a > b ? a : b and a < b ? a : b, b when either is NaN */
#define FL_MAX_OR_B(a, b) ((FL_VR)FL_MM256(max)((FL_M256)(a), (FL_M256)(b)))
#define FL_MIN_OR_B(a, b) ((FL_VR)FL_MM256(min)((FL_M256)(a), (FL_M256)(b)))
/* c * v, exactly 0 where c == 0 (NaN c stays NaN) */
#define FL_ZMUL(c, v) FN(vselect)((c) == 0, FN(vsplat)(0), (c) * (v))
/* a * b + c rounded once, whatever the optimisation level */
#define FL_FMA(a, b, c) ((FL_VR)FL_MM256(fmadd)((FL_M256)(a), (FL_M256)(b), (FL_M256)(c)))
/* the float exp table's lookup: t[idx & 7] (vpermps) */
#define FL_PERMUTE1(t, idx) ((FL_VR)_mm256_permutevar8x32_ps((__m256)(t), (__m256i)(idx)))
/* nonzero if a < b in any lane (ordered: NaN lanes do not count) */
#define FL_ANY_LT(a, b) FL_MM256(movemask)(FL_MM256(cmp)((FL_M256)(a), (FL_M256)(b), _CMP_LT_OQ))
/* per lane: base[idx] where mask is set (idx: FL_VX lane values, integers below 2^31), src
 * elsewhere (vgatherdps / vgatherdpd) */
#if FL_IS_F32
#define FL_GATHER(src, base, idx, mask) \
    ((FL_VR)_mm256_mask_i32gather_ps((__m256)(src), (base), (__m256i)(idx), (__m256)(mask), 4))
#else
#define FL_GATHER(src, base, idx, mask)                                                           \
    ((FL_VR)_mm256_mask_i32gather_pd((__m256d)(src), (base), _mm256_cvttpd_epi32((__m256d)(idx)), \
                                     (__m256d)(mask), 8))
#endif
/* the transpose network (tiles-inl.h): interleaves within 128-bit lanes (of elements, and of
 * 64-bit pairs), a pick of one 128-bit lane of a and one of b (imm 0x20: both low lanes,
 * 0x31: both high lanes), and masked loads/stores of the first n lanes (vmaskmov) */
#define FL_UNPACKLO(a, b)      ((FL_VR)FL_MM256(unpacklo)((FL_M256)(a), (FL_M256)(b)))
#define FL_UNPACKHI(a, b)      ((FL_VR)FL_MM256(unpackhi)((FL_M256)(a), (FL_M256)(b)))
#define FL_UNPACKLO64(a, b)    ((FL_VR)_mm256_unpacklo_pd((__m256d)(a), (__m256d)(b)))
#define FL_UNPACKHI64(a, b)    ((FL_VR)_mm256_unpackhi_pd((__m256d)(a), (__m256d)(b)))
#define FL_PERM128(a, b, imm)  ((FL_VR)FL_MM256(permute2f128)((FL_M256)(a), (FL_M256)(b), (imm)))
#define FL_LANE_MASK(n)        ((__m256i)(FN(viota)() < (FL_XLANE)(n)))
#define FL_MASK_LOAD(p, n)     ((FL_VR)FL_MM256(maskload)((p), FL_LANE_MASK(n)))
#define FL_MASK_STORE(p, n, v) FL_MM256(maskstore)((p), FL_LANE_MASK(n), (FL_M256)(v))

#else /* FL_OPS_UNDEF */

#undef FL_EXP_TAB_REGS
#undef FL_FMA
#undef FL_PERMUTE1
#undef FL_GATHER
#undef FL_MM256
#undef FL_UNPACKLO
#undef FL_UNPACKHI
#undef FL_UNPACKLO64
#undef FL_UNPACKHI64
#undef FL_PERM128
#undef FL_LANE_MASK
#undef FL_MASK_LOAD
#undef FL_MASK_STORE

#endif
