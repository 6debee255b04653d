/*
 * One ISA instantiation of every kernel, for float32 and float64.  Included by fl_kernels.c
 * once per ISA with FL_ISA defined (base, avx2, avx512), inside the matching
 * `#pragma GCC target` region.  No include guard on purpose.
 */
#define FN(name) FL_CAT3(name, FL_SUF, FL_ISA)

/* Vector types of this ISA's native width FL_VBYTES.  Lane-index vectors (FL_VX) are int32
 * for float lanes and double for double lanes: both compare natively on SSE2 and AVX2,
 * whereas 64-bit integer compares and arithmetic shifts do not exist there. */
typedef float FL_CAT2(fl_vf32, FL_ISA) __attribute__((vector_size(FL_VBYTES)));
typedef int32_t FL_CAT2(fl_vi32, FL_ISA) __attribute__((vector_size(FL_VBYTES)));
typedef double FL_CAT2(fl_vf64, FL_ISA) __attribute__((vector_size(FL_VBYTES)));
typedef int64_t FL_CAT2(fl_vi64, FL_ISA) __attribute__((vector_size(FL_VBYTES)));
typedef uint64_t FL_CAT2(fl_vu64, FL_ISA) __attribute__((vector_size(FL_VBYTES)));

#define FL_REAL float
#define FL_SUF f32
#define FL_IS_F32 1
#define FL_VR FL_CAT2(fl_vf32, FL_ISA)
#define FL_VI FL_CAT2(fl_vi32, FL_ISA)
#define FL_VX FL_CAT2(fl_vi32, FL_ISA)
#define FL_XLANE int32_t
#define FL_LANES (FL_VBYTES / 4)
#if defined(FL_AVX512_BUILTINS)
#define FL_MAX_OR_B(a, b) ((FL_VR)_mm512_max_ps((__m512)(a), (__m512)(b)))
#define FL_MIN_OR_B(a, b) ((FL_VR)_mm512_min_ps((__m512)(a), (__m512)(b)))
#elif defined(FL_AVX2_BUILTINS)
#define FL_MAX_OR_B(a, b) ((FL_VR)_mm256_max_ps((__m256)(a), (__m256)(b)))
#define FL_MIN_OR_B(a, b) ((FL_VR)_mm256_min_ps((__m256)(a), (__m256)(b)))
#endif
#ifdef FL_AVX512_BUILTINS
#define FL_SCALEF(p, n) ((FL_VR)_mm512_scalef_ps((__m512)(p), (__m512)(n)))
#define FL_RCP14(v) ((FL_VR)_mm512_rcp14_ps((__m512)(v)))
#define FL_PERMUTE2(a, idx, b) \
    ((FL_VR)_mm512_permutex2var_ps((__m512)(a), (__m512i)(idx), (__m512)(b)))
#define FL_MASK_LOAD(p, n) ((FL_VR)_mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1), (p)))
#define FL_MASK_STORE(p, n, v) _mm512_mask_storeu_ps((p), (__mmask16)((1u << (n)) - 1), (__m512)(v))
#endif
#include "fl_vecmath_impl.h"
#include "fl_softmax_impl.h"
#include "fl_elementwise_impl.h"
#undef FL_REAL
#undef FL_SUF
#undef FL_IS_F32
#undef FL_VR
#undef FL_VI
#undef FL_XLANE
#undef FL_VX
#undef FL_LANES
#undef FL_SCALEF
#undef FL_RCP14
#undef FL_MAX_OR_B
#undef FL_MIN_OR_B
#undef FL_PERMUTE2
#undef FL_MASK_LOAD
#undef FL_MASK_STORE

#define FL_REAL double
#define FL_SUF f64
#define FL_IS_F32 0
#define FL_VR FL_CAT2(fl_vf64, FL_ISA)
#define FL_VI FL_CAT2(fl_vi64, FL_ISA)
#define FL_VU FL_CAT2(fl_vu64, FL_ISA)
#define FL_VX FL_CAT2(fl_vf64, FL_ISA)
#define FL_XLANE double
#define FL_LANES (FL_VBYTES / 8)
#if defined(FL_AVX512_BUILTINS)
#define FL_MAX_OR_B(a, b) ((FL_VR)_mm512_max_pd((__m512d)(a), (__m512d)(b)))
#define FL_MIN_OR_B(a, b) ((FL_VR)_mm512_min_pd((__m512d)(a), (__m512d)(b)))
#elif defined(FL_AVX2_BUILTINS)
#define FL_MAX_OR_B(a, b) ((FL_VR)_mm256_max_pd((__m256d)(a), (__m256d)(b)))
#define FL_MIN_OR_B(a, b) ((FL_VR)_mm256_min_pd((__m256d)(a), (__m256d)(b)))
#endif
#ifdef FL_AVX512_BUILTINS
#define FL_SCALEF(p, n) ((FL_VR)_mm512_scalef_pd((__m512d)(p), (__m512d)(n)))
#define FL_RCP14(v) ((FL_VR)_mm512_rcp14_pd((__m512d)(v)))
#define FL_PERMUTE2(a, idx, b) \
    ((FL_VR)_mm512_permutex2var_pd((__m512d)(a), (__m512i)(idx), (__m512d)(b)))
#define FL_MASK_LOAD(p, n) ((FL_VR)_mm512_maskz_loadu_pd((__mmask8)((1u << (n)) - 1), (p)))
#define FL_MASK_STORE(p, n, v) _mm512_mask_storeu_pd((p), (__mmask8)((1u << (n)) - 1), (__m512d)(v))
#endif
#include "fl_vecmath_impl.h"
#include "fl_softmax_impl.h"
#include "fl_elementwise_impl.h"
#undef FL_REAL
#undef FL_SUF
#undef FL_IS_F32
#undef FL_VR
#undef FL_VI
#undef FL_XLANE
#undef FL_VX
#undef FL_LANES
#undef FL_SCALEF
#undef FL_RCP14
#undef FL_MAX_OR_B
#undef FL_MIN_OR_B
#undef FL_PERMUTE2
#undef FL_MASK_LOAD
#undef FL_MASK_STORE
#undef FL_VU

#undef FN
