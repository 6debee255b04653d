/*
 * Primitives of the AVX-512 F/DQ/VL/BW + AVX2 + FMA target, for one dtype (FL_PSD, FL_M512
 * from fl_isa.h): the intrinsics where GCC's vector extensions have no equivalent.  Same
 * contract and two-pass inclusion as isa/fl_ops_generic.h.  No include guard on purpose.
 *
 * Each capability flag set to 1 promises these ops:
 *   FL_HAS_EXP_TABLE      FL_EXP_TAB_REGS 2: FL_PERMUTE2 (32 float / 16 double entries), 1:
 *                         FL_PERMUTE1 (8 float entries); FL_FMA, FL_ANY_LT
 *   FL_HAS_F32_LOG_TABLE  FL_PERMUTE2, FL_ANY_NOT_NORMAL_POS, FL_FMA (float32 only)
 *   FL_HAS_NORMAL_CHECK   FL_ANY_NOT_NORMAL_POS
 *   FL_HAS_RCP14          FL_RCP14, FL_FMA
 *   FL_HAS_SCALEF         FL_SCALEF
 *   FL_HAS_SRA64          >> on 64-bit integer lanes is one instruction
 *   FL_HAS_MASK_REGS      FL_KMASK, FL_LANE_EQ, FL_KMOV, FL_KADD
 *   FL_HAS_REG_TRANSPOSE  FL_UNPACKLO/HI, FL_UNPACKLO64/HI64 (float), FL_MASK_LOAD/STORE, and
 *                         the 128-bit lane picks: FL_PERM128 (32-byte vectors), FL_SHUF128
 *                         (64-byte)
 *   FL_HAS_GATHER         FL_GATHER
 *   FL_HAS_FAST_MASK_LOADS  FL_MASK_LOAD as fast as a plain load (AVX2, AVX-512)
 *   FL_HAS_RAW_TILES      FL_ABSMAX, and everything of FL_HAS_EXP_TABLE and FL_HAS_MASK_REGS
 */
#ifndef FL_OPS_UNDEF

#define FL_HAS_EXP_TABLE       1
#define FL_EXP_TAB_REGS        2
#define FL_HAS_F32_LOG_TABLE   FL_IS_F32
#define FL_HAS_NORMAL_CHECK    1
#define FL_HAS_RCP14           1
#define FL_HAS_SCALEF          1
#define FL_HAS_SRA64           1
#define FL_HAS_MASK_REGS       1
#define FL_HAS_REG_TRANSPOSE   1
#define FL_HAS_FAST_MASK_LOADS 1
#define FL_HAS_RAW_TILES       1
#define FL_HAS_GATHER          0

#define FL_MM512(op) FL_CAT2(FL_CAT2(_mm512, op), FL_PSD)
/* a > b ? a : b and a < b ? a : b, b when either is NaN (the x86 rule) */
#define FL_MAX_OR_B(a, b) ((FL_VR)FL_MM512(max)((FL_M512)(a), (FL_M512)(b)))
#define FL_MIN_OR_B(a, b) ((FL_VR)FL_MM512(min)((FL_M512)(a), (FL_M512)(b)))
#define FL_SCALEF(p, n)   ((FL_VR)FL_MM512(scalef)((FL_M512)(p), (FL_M512)(n)))
#define FL_RCP14(v)       ((FL_VR)FL_MM512(rcp14)((FL_M512)(v)))
/* a * b + c rounded once, whatever the optimisation level (GCC only contracts a * b + c
 * into an FMA from -O2 on, and the log table's reduction must be exact) */
#define FL_FMA(a, b, c) ((FL_VR)FL_MM512(fmadd)((FL_M512)(a), (FL_M512)(b), (FL_M512)(c)))
#define FL_PERMUTE2(a, idx, b) \
    ((FL_VR)FL_MM512(permutex2var)((FL_M512)(a), (__m512i)(idx), (FL_M512)(b)))
/* the transpose network's shuffles: interleave within 128-bit lanes (of elements, and of
 * 64-bit pairs), and pick whole 128-bit lanes (imm: 2 bits per result lane, two from a and
 * two from b) */
#define FL_UNPACKLO(a, b)   ((FL_VR)FL_MM512(unpacklo)((FL_M512)(a), (FL_M512)(b)))
#define FL_UNPACKHI(a, b)   ((FL_VR)FL_MM512(unpackhi)((FL_M512)(a), (FL_M512)(b)))
#define FL_UNPACKLO64(a, b) ((FL_VR)_mm512_unpacklo_pd((__m512d)(a), (__m512d)(b)))
#define FL_UNPACKHI64(a, b) ((FL_VR)_mm512_unpackhi_pd((__m512d)(a), (__m512d)(b)))
#if FL_IS_F32
#define FL_SHUF128(a, b, imm) ((FL_VR)_mm512_shuffle_f32x4((__m512)(a), (__m512)(b), (imm)))
#else
#define FL_SHUF128(a, b, imm) ((FL_VR)_mm512_shuffle_f64x2((__m512d)(a), (__m512d)(b), (imm)))
#endif
/* c * v, exactly 0 where c == 0 (NaN c stays NaN): one compare and a zero-masked multiply */
#define FL_ZMUL(c, v)                                                                 \
    ((FL_VR)FL_MM512(maskz_mul)(                                                      \
        FL_CAT2(FL_MM512(cmp), mask)((FL_M512)(c), FL_MM512(setzero)(), _CMP_NEQ_UQ), \
        (FL_M512)(c), (FL_M512)(v)))
/* lane masks in mask registers: one compare, then merge-masked moves and adds (the vector
 * extensions' selects compile to compare, mask-to-vector and two logic operations) */
#if FL_IS_F32
#define FL_KMASK         __mmask16
#define FL_LANE_EQ(x, c) _mm512_cmpeq_epi32_mask((__m512i)(x), _mm512_set1_epi32((int)(c)))
#else
#define FL_KMASK         __mmask8
#define FL_LANE_EQ(x, c) _mm512_cmp_pd_mask((__m512d)(x), _mm512_set1_pd((double)(c)), _CMP_EQ_OQ)
#endif
#define FL_KMOV(src, k, a) ((FL_VR)FL_MM512(mask_mov)((FL_M512)(src), (k), (FL_M512)(a)))
#define FL_KADD(src, k, a, b) \
    ((FL_VR)FL_MM512(mask_add)((FL_M512)(src), (k), (FL_M512)(a), (FL_M512)(b)))
#define FL_MASK_LOAD(p, n)     ((FL_VR)FL_MM512(maskz_loadu)((1u << (n)) - 1, (p)))
#define FL_MASK_STORE(p, n, v) FL_MM512(mask_storeu)((p), (1u << (n)) - 1, (FL_M512)(v))
/* nonzero if a lane of u is not a normal positive finite number (0, subnormal, negative,
 * inf, NaN): its bits minus those of the least normal, as unsigned, reach the span */
#if FL_IS_F32
#define FL_ANY_NOT_NORMAL_POS(u)                                                           \
    _mm512_cmpge_epu32_mask(_mm512_sub_epi32((__m512i)(u), _mm512_set1_epi32(0x00800000)), \
                            _mm512_set1_epi32(0x7f000000))
#else
#define FL_ANY_NOT_NORMAL_POS(u)                                                          \
    _mm512_cmpge_epu64_mask(_mm512_sub_epi64((__m512i)(u), _mm512_set1_epi64(1LL << 52)), \
                            _mm512_set1_epi64(0x7fe0000000000000LL))
#endif
/* nonzero if a < b in any lane (ordered: NaN lanes do not count) */
#define FL_ANY_LT(a, b) FL_CAT2(FL_MM512(cmp), mask)((FL_M512)(a), (FL_M512)(b), _CMP_LT_OQ)
/* max(|a|, |b|) per lane in one instruction (vrange; a NaN operand yields the other one) */
#define FL_ABSMAX(a, b) ((FL_VR)FL_MM512(range)((FL_M512)(a), (FL_M512)(b), 0x0B))

#else /* FL_OPS_UNDEF */

#undef FL_EXP_TAB_REGS
#undef FL_MM512
#undef FL_SCALEF
#undef FL_RCP14
#undef FL_FMA
#undef FL_PERMUTE2
#undef FL_UNPACKLO
#undef FL_UNPACKHI
#undef FL_UNPACKLO64
#undef FL_UNPACKHI64
#undef FL_SHUF128
#undef FL_KMASK
#undef FL_LANE_EQ
#undef FL_KMOV
#undef FL_KADD
#undef FL_MASK_LOAD
#undef FL_MASK_STORE
#undef FL_ANY_NOT_NORMAL_POS
#undef FL_ABSMAX

#endif
