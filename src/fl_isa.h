/*
 * One ISA instantiation of every kernel, for float32 and float64.  Included once by each
 * isa/fl_isa_<name>.c with FL_ISA (base, wide, avx2, avx512), FL_VBYTES (vector width in bytes) and
 * FL_OPS_HEADER (the ISA's primitives, isa/fl_ops_*.h) defined, inside the matching
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

#define FL_REAL      float
#define FL_SUF       f32
#define FL_IS_F32    1
#define FL_VR        FL_CAT2(fl_vf32, FL_ISA)
#define FL_VI        FL_CAT2(fl_vi32, FL_ISA)
#define FL_VX        FL_CAT2(fl_vi32, FL_ISA)
#define FL_XLANE     int32_t
#define FL_LANES     (FL_VBYTES / 4)
#define FL_PSD       ps
#define FL_M256      __m256
#define FL_M512      __m512
#define FL_RAW_BOUND FL_RAW_BOUND_F32
#include "fl_isa_dtype.h"
#undef FL_REAL
#undef FL_SUF
#undef FL_IS_F32
#undef FL_VR
#undef FL_VI
#undef FL_VX
#undef FL_XLANE
#undef FL_LANES
#undef FL_PSD
#undef FL_M256
#undef FL_M512
#undef FL_RAW_BOUND

#define FL_REAL      double
#define FL_SUF       f64
#define FL_IS_F32    0
#define FL_VR        FL_CAT2(fl_vf64, FL_ISA)
#define FL_VI        FL_CAT2(fl_vi64, FL_ISA)
#define FL_VU        FL_CAT2(fl_vu64, FL_ISA)
#define FL_VX        FL_CAT2(fl_vf64, FL_ISA)
#define FL_XLANE     double
#define FL_LANES     (FL_VBYTES / 8)
#define FL_PSD       pd
#define FL_M256      __m256d
#define FL_M512      __m512d
#define FL_RAW_BOUND FL_RAW_BOUND_F64
#include "fl_isa_dtype.h"
#undef FL_REAL
#undef FL_SUF
#undef FL_IS_F32
#undef FL_VR
#undef FL_VI
#undef FL_VX
#undef FL_XLANE
#undef FL_LANES
#undef FL_PSD
#undef FL_M256
#undef FL_M512
#undef FL_RAW_BOUND
#undef FL_VU

#undef FN
